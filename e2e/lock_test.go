//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
)

// lockedBuffer collects a running process's output for polling.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLockTwoMachines: two operators whose laptops come from one image
// (the same user@hostname) but have different machine IDs run apply
// against one cluster at once: exactly one proceeds. Each client runs in
// its own mount namespace with its own /etc/machine-id bound over the
// machine's; the second also in its own PID namespace, so, as on another
// laptop, the first one's PID runs nothing there (the old rule took such a
// lock over). The first holds the lock at apply's confirmation prompt (on
// a pseudo-terminal) while the second tries.
func TestLockTwoMachines(t *testing.T) {
	for _, tool := range []string{"unshare", "script", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	hosts, err := testhosts.Start(ctx, testhosts.Options{Net: "172.31.50", Count: 1, Prefix: "sr1", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hosts.Close() })
	e := &env{t: t, hosts: hosts, spec: t.TempDir(), kubeconfig: filepath.Join(t.TempDir(), "kube", "config")}
	if err := hosts.WriteInventory(filepath.Join(e.spec, "cluster.cue"), testhosts.InventoryOptions{Name: "e2e"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	client := filepath.Join(dir, "client.sh")
	// client.sh MACHINE_ID_FILE ARGS...: clusterctl as on a machine with
	// that ID (run inside a new mount namespace).
	script := "#!/bin/sh\nset -e\nmount --bind \"$1\" /etc/machine-id\nshift\nexec \"$CLUSTERCTL\" \"$@\"\n"
	if err := os.WriteFile(client, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, name := range []string{"a", "b"} {
		ids[name] = filepath.Join(dir, "machine-id-"+name)
		id := strings.Repeat(name, 32) + "\n"
		if err := os.WriteFile(ids[name], []byte(id), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	only := "--only=hostprep/sysctl" // one cheap step with a change on a fresh host
	environ := append(os.Environ(), "CLUSTERCTL="+clusterctl, "KUBECONFIG="+e.kubeconfig)

	// A: on a pseudo-terminal, it plans, locks and asks for confirmation.
	line := strings.Join([]string{"unshare", "-m", client, ids["a"], "apply", only, e.spec}, " ")
	a := exec.CommandContext(ctx, "script", "-qefc", line, "/dev/null")
	a.Env = environ
	answer, err := a.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var aOut lockedBuffer
	a.Stdout, a.Stderr = &aOut, &aOut
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Process.Kill()
	Eventually(t, "the first client at its confirmation prompt", 2*time.Minute, func() error {
		if strings.Contains(aOut.String(), "Apply these changes?") {
			return nil
		}
		return fmt.Errorf("output so far:\n%s", aOut.String())
	})
	holder := e.sh(1, "cat /var/lib/clusterctl/lock.json")
	t.Logf("lock held by the first client: %s", holder)

	// B: same user@hostname, another machine ID, its own PID namespace.
	b := exec.CommandContext(ctx, "unshare", "-m", "-p", "-f", "--mount-proc", client, ids["b"], "apply", "--yes", only, e.spec)
	b.Env = environ
	bOut, err := b.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	hostname, _ := os.Hostname()
	if code != 1 || !strings.Contains(string(bOut), "the cluster is locked by root@"+hostname+" (pid ") || !strings.Contains(string(bOut), "wait for it to finish") {
		t.Errorf("second client: exit %d, want 1 and the lock refused:\n%s", code, bOut)
	}
	if strings.Contains(string(bOut), "took over lock") {
		t.Errorf("the second client took the first one's live lock:\n%s", bOut)
	}
	if now := e.sh(1, "cat /var/lib/clusterctl/lock.json"); now != holder {
		t.Errorf("the lock changed while the first client held it:\n%s\nnow\n%s", holder, now)
	}

	// A goes on and finishes, then releases the lock.
	if _, err := io.WriteString(answer, "yes\n"); err != nil {
		t.Fatal(err)
	}
	answer.Close()
	if err := a.Wait(); err != nil {
		t.Fatalf("first client: %v\n%s", err, aOut.String())
	}
	if strings.Contains(aOut.String(), "released by someone else") {
		t.Errorf("the first client lost its lock:\n%s", aOut.String())
	}
	if got := e.sh(1, "test -e /var/lib/clusterctl/lock.json && echo held || echo free"); got != "free" {
		t.Errorf("lock after the first client: %s", got)
	}
}
