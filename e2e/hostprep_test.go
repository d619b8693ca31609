//go:build e2e

// Package e2e runs the clusterctl binary against real namespace test hosts
// (e2e/testhosts): what a user does, checked on the hosts by independent
// commands run through nsenter, not by clusterctl's own checks.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
)

var clusterctl string // the binary under test, built once

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clusterctl-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clusterctl = filepath.Join(dir, "clusterctl")
	build := exec.Command("go", "build", "-o", clusterctl, "../cmd/clusterctl")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build clusterctl:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one scenario's hosts, spec directory and bundle.
type env struct {
	t     *testing.T
	hosts *testhosts.Cluster
	spec  string // spec directory
	// kubeconfig is the operator's kubeconfig clusterctl merges into
	// ($KUBECONFIG of every clusterctl run): one per scenario, so
	// scenarios can run in parallel and never touch ~/.kube/config.
	kubeconfig string
}

// newEnv boots n hosts and writes a spec for them with an air-gapped bundle
// of the node packages and the container runtime. user is the SSH user
// (root, tester).
func newEnv(t *testing.T, n int, net, prefix, user string) *env {
	t.Helper()
	return newEnvRelease(t, n, net, prefix, user, defaultRelease)
}

// defaultRelease is the test hosts' Debian release (13); the upgrade
// scenario and TestHostPrepBookworm keep Debian 12 in the matrix.
const defaultRelease = "trixie"

// newEnvRelease is newEnv on hosts of a Debian release (bookworm, trixie),
// with that release's node packages.
func newEnvRelease(t *testing.T, n int, net, prefix, user, release string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := testhosts.Start(ctx, testhosts.Options{Net: net, Count: n, Prefix: prefix, Release: release, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e := &env{t: t, hosts: c, spec: t.TempDir()}
	e.kubeconfig = filepath.Join(t.TempDir(), "kube", "config")
	if err := c.WriteInventory(filepath.Join(e.spec, "cluster.cue"), testhosts.InventoryOptions{Name: "e2e", User: user, ControlPlanes: 1}); err != nil {
		t.Fatal(err)
	}
	artifacts := filepath.Join(e.spec, "artifacts")
	run(t, "bash", "node-debs.sh", artifacts, release)
	addRuntime(t, BuildArtifacts(t), artifacts)
	e.writeSpec("bundle.cue", `cluster: artifacts: {mode: "bundle", bundleDir: "bundle"}`)
	e.clusterctl(0, "bundle", e.spec, "--from", artifacts)
	return e
}

// containerdVersion is what `containerd --version` says on every host:
// e2e/artifacts/build.sh's CONTAINERD_VERSION.
const containerdVersion = "v2.4.2"

// addRuntime links the artifact build's container runtime (containerd,
// its shim, ctr, runc and the CNI plugins, built from Go modules) into dir.
func addRuntime(t *testing.T, art, dir string) {
	t.Helper()
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc"} {
		linkOrCopy(t, filepath.Join(art, "bin", b), filepath.Join(dir, "bin", b))
	}
	plugins, err := os.ReadDir(filepath.Join(art, "cni"))
	if err != nil || len(plugins) == 0 {
		t.Fatalf("no CNI plugins in %s: %v", art, err)
	}
	for _, p := range plugins {
		linkOrCopy(t, filepath.Join(art, "cni", p.Name()), filepath.Join(dir, "cni", p.Name()))
	}
}

func (e *env) writeSpec(name, body string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.spec, name), []byte("package clusterctl\n\n"+body+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// clusterctl runs the binary and checks its exit code; it returns stdout
// and stderr together.
func (e *env) clusterctl(want int, args ...string) string {
	e.t.Helper()
	cmd := e.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("clusterctl %s: %v", strings.Join(args, " "), err)
	}
	if code != want {
		e.t.Fatalf("clusterctl %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out.String())
	}
	return out.String()
}

// command is a clusterctl run of this scenario (its own $KUBECONFIG).
func (e *env) command(args ...string) *exec.Cmd {
	cmd := exec.Command(clusterctl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
	return cmd
}

// sh runs a script inside host i through nsenter and returns its output.
func (e *env) sh(i int, script string) string {
	e.t.Helper()
	out, err := e.hosts.Exec(context.Background(), i, script)
	if err != nil {
		e.t.Fatalf("h%d: %s: %v\n%s", i, script, err, out)
	}
	return strings.TrimSpace(out)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

// verifyPrepared checks every host-preparation setting with independent
// commands on every host.
func (e *env) verifyPrepared(sysctlValues map[string]string) {
	e.t.Helper()
	for _, h := range e.hosts.Hosts {
		i := h.Index
		checks := map[string][2]string{
			"hostname":             {"cat /proc/sys/kernel/hostname", h.Name},
			"hosts block":          {"sed -n '/BEGIN clusterctl/,/END clusterctl/p' /etc/hosts | grep -c '# clusterctl$'", fmt.Sprint(len(e.hosts.Hosts))},
			"fstab swap":           {"grep -Ec '^[^#].*[[:space:]]swap[[:space:]]' /etc/fstab || true", "0"},
			"swap devices":         {"tail -n +2 /proc/swaps | wc -l", "0"},
			"modules file":         {"cat /etc/modules-load.d/kubernetes.conf | grep -v '^#' | tr '\\n' ' '", "overlay br_netfilter nf_tables"}, // nf_tables: kube-proxy's default nftables mode
			"containerd active":    {"systemctl is-active containerd", "active"},
			"containerd enabled":   {"systemctl is-enabled containerd", "enabled"},
			"ctr version":          {"ctr version >/dev/null 2>&1 && echo ok", "ok"},
			"oom score restricted": {"grep -c 'restrict_oom_score_adj = true' /etc/containerd/config.toml", "1"},
			"containerd 2":         {"containerd --version | cut -d' ' -f3; runc --version | head -n 1", containerdVersion + "\nrunc version 1.5.3"},
			"config version 3":     {"grep -c '^version = 3$' /etc/containerd/config.toml", "1"},
			"CNI bridge plugin":    {"/opt/cni/bin/bridge --version 2>&1 | head -n 1", "CNI bridge plugin v1.10.0"},
			"conntrack installed":  {"dpkg-query -W -f='${db:Status-Abbrev}' conntrack", "ii"},
			"no temp files left":   {"find /etc /usr/local -name '*clusterctl-tmp*' -o -name '.*.clusterctl-*' | wc -l", "0"},
		}
		for k, v := range sysctlValues {
			checks["sysctl "+k] = [2]string{"sysctl -n " + k, v}
			checks["sysctl file "+k] = [2]string{"grep -c '^" + k + " = " + v + "$' /etc/sysctl.d/99-kubernetes.conf", "1"}
		}
		for name, c := range checks {
			if got := e.sh(i, c[0]); got != c[1] {
				e.t.Errorf("%s: %s = %q, want %q", h.Name, name, got, c[1])
			}
		}
	}
	if e.t.Failed() {
		e.t.FailNow()
	}
}

// hostPrepOnly limits these scenarios to host preparation and the runtime:
// their bundle carries node packages, not Kubernetes.
const hostPrepOnly = "--only=hostprep,runtime"

var k8sSysctls = map[string]string{
	"net.ipv4.ip_forward":                 "1",
	"net.bridge.bridge-nf-call-iptables":  "1",
	"net.bridge.bridge-nf-call-ip6tables": "1",
}

// TestHostPrep: fresh hosts -> apply -> verified on the hosts; a second
// apply changes nothing; one sysctl changed in the spec is exactly one
// change; hand-made drift is seen and repaired; a saved plan goes stale.
func TestHostPrep(t *testing.T) {
	e := newEnv(t, 3, "172.31.7", "ct7", "root")

	start := time.Now()
	out := e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec)
	t.Logf("fresh apply of 3 hosts: %s", time.Since(start).Round(time.Millisecond))
	mustContain(t, out, "0 failed, 0 skipped", "Critical path")
	e.verifyPrepared(k8sSysctls)

	start = time.Now()
	out = e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec)
	t.Logf("no-op apply of 3 hosts: %s", time.Since(start).Round(time.Millisecond))
	mustContain(t, out, "No changes.")
	e.clusterctl(0, "plan", "--detailed-exitcode", hostPrepOnly, e.spec)

	// One sysctl changed in the spec: exactly one step changes, per host.
	e.writeSpec("tuning.cue", `cluster: hostPrep: sysctl: "net.ipv4.tcp_keepalive_time": "600"`)
	out = e.clusterctl(2, "plan", "--detailed-exitcode", hostPrepOnly, e.spec)
	mustContain(t, out, "Plan: 0 to add, 3 to change, 0 to remove", "~  h1/hostprep/sysctl", "net.ipv4.tcp_keepalive_time: 7200 -> 600")
	e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec)
	want := map[string]string{"net.ipv4.tcp_keepalive_time": "600"}
	for k, v := range k8sSysctls {
		want[k] = v
	}
	e.verifyPrepared(want)
	mustContain(t, e.clusterctl(0, "plan", hostPrepOnly, e.spec), "No changes.")

	// Drift by hand: a swap line back in fstab on h1, the sysctl file edited
	// on h2, containerd stopped on h3. The plan shows exactly those.
	e.sh(1, "echo '/swapfile none swap sw 0 0' >> /etc/fstab")
	e.sh(2, "sed -i 's/^net.ipv4.ip_forward = 1$/net.ipv4.ip_forward = 0/' /etc/sysctl.d/99-kubernetes.conf")
	e.sh(3, "systemctl stop containerd")
	out = e.clusterctl(2, "plan", "--detailed-exitcode", hostPrepOnly, e.spec)
	mustContain(t, out, "h1/hostprep/swap", "h2/hostprep/sysctl", "h3/runtime/containerd", "3 to change")
	for _, s := range []string{"h1/hostprep/sysctl", "h2/hostprep/swap", "h1/runtime/containerd"} {
		if strings.Contains(out, s+"\n") {
			t.Errorf("plan shows %s, which did not drift:\n%s", s, out)
		}
	}

	// A saved plan is refused once a host changed after it was made.
	planFile := filepath.Join(t.TempDir(), "plan.json")
	e.clusterctl(2, "plan", "--detailed-exitcode", hostPrepOnly, "--out", planFile, e.spec)
	e.sh(1, "sysctl -qw net.ipv4.tcp_keepalive_time=601")
	mustContain(t, e.clusterctl(1, "apply", hostPrepOnly, planFile), "the plan is stale: host h1 changed")

	e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec)
	e.verifyPrepared(want)
	mustContain(t, e.clusterctl(0, "plan", hostPrepOnly, e.spec), "No changes.")
	// A fresh saved plan applies.
	e.sh(3, "systemctl stop containerd")
	e.clusterctl(2, "plan", "--detailed-exitcode", hostPrepOnly, "--out", planFile, e.spec)
	mustContain(t, e.clusterctl(0, "apply", hostPrepOnly, planFile), "1 changed")
	e.verifyPrepared(want)
}

// TestHostPrepBookworm: host preparation on Debian 12 (bookworm) hosts,
// the release of every cluster clusterctl made before Debian 13 became the
// default, with bookworm's packages and the bundle's containerd 2: fresh
// apply, verified on the hosts, then a no-op. Budget: about 1 min.
func TestHostPrepBookworm(t *testing.T) {
	e := newEnvRelease(t, 2, "172.31.24", "ct24", "root", "bookworm")
	if got := e.sh(1, ". /etc/os-release && echo $VERSION_CODENAME $VERSION_ID"); got != "bookworm 12" {
		t.Fatalf("h1 runs %q, want bookworm 12", got)
	}
	out := e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec)
	mustContain(t, out, "0 failed, 0 skipped")
	e.verifyPrepared(k8sSysctls)
	if got := e.sh(2, "containerd --version | cut -d' ' -f3; dpkg-query -W containerd 2>/dev/null || echo no-package"); got != containerdVersion+"\nno-package" {
		t.Errorf("h2 containerd %q, want the bundle's %s and no Debian package", got, containerdVersion)
	}
	mustContain(t, e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec), "No changes.")
}

// TestHostPrepAsSudoUser: everything works as a non-root user with sudo.
func TestHostPrepAsSudoUser(t *testing.T) {
	e := newEnv(t, 2, "172.31.8", "ct8", "tester")
	out := e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec)
	mustContain(t, out, "0 failed")
	e.verifyPrepared(k8sSysctls)
	mustContain(t, e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec), "No changes.")
}

// TestHostPrepKilledMidway: clusterctl SIGKILLed in the middle of an apply
// leaves no half-written file, and a re-run converges.
func TestHostPrepKilledMidway(t *testing.T) {
	e := newEnv(t, 3, "172.31.9", "ct9", "root")
	cmd := e.command("apply", "--yes", hostPrepOnly, e.spec)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once the package uploads are under way.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "hostprep/packages  applying") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	t.Logf("killed after:\n%s", lastLines(out.String(), 5))
	for _, h := range e.hosts.Hosts {
		// Files clusterctl writes are either absent or complete: a config
		// that exists must parse.
		if got := e.sh(h.Index, "f=/etc/containerd/config.toml; [ ! -e $f ] || grep -c '^version = 3' $f || true"); got != "" && got != "1" {
			t.Errorf("%s: half-written containerd config", h.Name)
		}
	}
	// The killed run's lock is left on h1; its process is gone, so this
	// machine's next run takes the lock over (a live or remote holder's
	// lock would refuse it).
	if got := e.sh(1, "test -e /var/lib/clusterctl/lock.json && echo left || echo none"); got != "left" {
		t.Errorf("the killed run's lock on h1: %s", got)
	}
	staged := map[string]string{}
	for _, h := range e.hosts.Hosts {
		staged[h.Name] = e.sh(h.Index, "ls -A /var/lib/clusterctl/staging/packages 2>/dev/null | wc -l")
	}
	t.Logf("files staged on the hosts when the run was killed: %v", staged)
	out2 := e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec)
	mustContain(t, out2, "0 failed", "took over lock ", "is no longer running")
	e.verifyPrepared(k8sSysctls)
	for _, h := range e.hosts.Hosts {
		// The re-run installed what the killed one had staged (sending only
		// what was missing) and removed it, half-written uploads included.
		if got := e.sh(h.Index, "ls -A /var/lib/clusterctl/staging/packages | wc -l; ls -d /var/tmp/clusterctl-* 2>/dev/null | wc -l"); got != "0\n0" {
			t.Errorf("%s: staged or temporary files left after the re-run (staging, /var/tmp): %q", h.Name, got)
		}
	}
	mustContain(t, e.clusterctl(0, "apply", "--yes", hostPrepOnly, e.spec), "No changes.")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// syncBuffer is read while the child process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
