package kube

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

// The wait helpers' error messages interpolate the node name into the
// remote shell: it must go through host.Quote, not rely on the name having
// been validated elsewhere. Run on this machine with a kubectl that always
// fails, a name carrying a command substitution must not run it.
func TestWaitQuotesNodeName(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "kubectl"), []byte("#!/bin/sh\necho kube-system/p Pending false\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	for name, wait := range map[string]func(context.Context, *hosttest.Local, string) error{
		"waitNodeAt": func(ctx context.Context, h *hosttest.Local, node string) error {
			return waitNodeAt(ctx, h, node, "1.34.10", 0)
		},
		"waitNodePods": func(ctx context.Context, h *hosttest.Local, node string) error { return waitNodePods(ctx, h, node, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			h := hosttest.NewLocal("h1", dir, nil)
			if err := wait(context.Background(), h, `h1'$(touch pwned)'`); err == nil {
				t.Fatal("wait succeeded with a pod not ready")
			}
			if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
				t.Fatal("the node name ran as a command")
			}
		})
	}
}
