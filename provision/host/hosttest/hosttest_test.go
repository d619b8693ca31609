package hosttest_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

func TestConformanceLocal(t *testing.T) {
	hosttest.RunConformance(t, func(t *testing.T) host.Host {
		return hosttest.NewLocal("local", t.TempDir(), nil)
	})
}

// The fake, passing through to a local shell, must keep the same contract.
func TestConformanceFake(t *testing.T) {
	hosttest.RunConformance(t, func(t *testing.T) host.Host {
		f := hosttest.NewFake(t, "fake")
		f.Backend = hosttest.NewLocal("fake", t.TempDir(), nil)
		return f
	})
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

func TestFakeStrict(t *testing.T) {
	rec := &recorder{TB: t}
	f := hosttest.NewFake(rec, "node-1")
	f.Expect("systemctl is-active containerd").Stdout("active\n")
	f.Expect("never-run")
	err := f.Run(context.Background(), host.Cmd{Line: "rm -rf /"})
	var ee *host.ExitError
	if !errors.As(err, &ee) || ee.Code != 127 {
		t.Fatalf("unexpected command returned %v", err)
	}
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "rm -rf /") || !strings.Contains(rec.errs[0], "systemctl is-active containerd") {
		t.Fatalf("failure does not name the command and the pending list: %q", rec.errs)
	}
}

func TestFakeCannedAnswersAndFiles(t *testing.T) {
	f := hosttest.NewFake(t, "node-1")
	f.Expect("cat /proc/version").Stdout("Linux 6.1\n").AnyTimes()
	f.Expect("modprobe ip_vs").Stderr("modprobe: FATAL: Module ip_vs not found\n").Exit(1)
	f.ExpectFunc("sysctl -w ...", func(l string) bool { return strings.HasPrefix(l, "sysctl -w ") }).Times(2)
	ctx := context.Background()
	var out strings.Builder
	for range 3 {
		out.Reset()
		if err := f.Run(ctx, host.Cmd{Line: "cat /proc/version", Stdout: &out}); err != nil || out.String() != "Linux 6.1\n" {
			t.Fatalf("%v %q", err, out.String())
		}
	}
	err := f.Run(ctx, host.Cmd{Line: "modprobe ip_vs"})
	var ee *host.ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(ee.Stderr, "ip_vs") {
		t.Fatalf("modprobe: %v", err)
	}
	for _, l := range []string{"sysctl -w net.ipv4.ip_forward=1", "sysctl -w " + host.Quote("a b=1")} {
		if err := f.Run(ctx, host.Cmd{Line: l}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Upload(ctx, strings.NewReader("net.ipv4.ip_forward = 1\n"), "/etc/sysctl.d/99-k8s.conf", host.FileOptions{Mode: 0o644, Owner: "root"}); err != nil {
		t.Fatal(err)
	}
	got, err := f.ReadFile(ctx, "/etc/sysctl.d/99-k8s.conf")
	if err != nil || string(got) != "net.ipv4.ip_forward = 1\n" {
		t.Fatalf("%v %q", err, got)
	}
	if _, err := f.ReadFile(ctx, "/etc/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	if err := f.Run(ctx, host.Cmd{Line: "true\x00"}); !errors.Is(err, host.ErrInvalidCommand) {
		t.Fatalf("NUL: %v", err)
	}
	hosttest.AssertGolden(t, "testdata/fake-transcript.golden", f.Transcript())
}
