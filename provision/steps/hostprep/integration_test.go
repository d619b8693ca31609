//go:build integration

package hostprep_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	sshx "github.com/clusterctl/clusterctl/provision/transport/ssh"
)

const (
	itNet    = "172.31.4"
	itPrefix = "ct4"
	debCache = "/var/cache/clusterctl/debs-test"
	rootfs   = "/var/cache/clusterctl/testhosts/rootfs-bookworm"
)

// bundlePackages are what a node needs from the bundle; their dependencies
// missing from the test hosts' rootfs are added by apt's resolver.
var bundlePackages = []string{"containerd", "runc", "containernetworking-plugins", "conntrack", "socat", "ethtool", "ipset", "systemd-timesyncd"}

// buildBundle resolves bundlePackages against the test-host rootfs's dpkg
// status (so exactly the missing dependencies come along), downloads the
// .debs once into debCache, and writes a bundle directory with a manifest.
func buildBundle(t *testing.T) *bundle.Bundle {
	t.Helper()
	resolve := func() ([]string, error) {
		args := append([]string{"-s", "-o", "Dir::State::status=" + rootfs + "/var/lib/dpkg/status", "--no-install-recommends", "install"}, bundlePackages...)
		out, err := exec.Command("apt-get", args...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("apt-get -s: %v: %s", err, out)
		}
		var pins []string
		for _, m := range regexp.MustCompile(`(?m)^Inst (\S+) \((\S+) `).FindAllStringSubmatch(string(out), -1) {
			pins = append(pins, m[1]+"="+m[2])
		}
		return pins, nil
	}
	pins, err := resolve()
	if err != nil || len(pins) == 0 {
		// Empty package lists on a fresh machine: refresh them once.
		if out, err := exec.Command("apt-get", "update", "-q").CombinedOutput(); err != nil {
			t.Fatalf("apt-get update: %v: %s", err, out)
		}
		if pins, err = resolve(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(debCache, 0o755); err != nil {
		t.Fatal(err)
	}
	cached := map[string]string{} // "name=version" -> file
	debInfo := func(p string) (string, string) {
		out, err := exec.Command("dpkg-deb", "-f", p, "Package", "Version").Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s: %v", p, err)
		}
		var name, ver string
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "Package: "); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(l, "Version: "); ok {
				ver = v
			}
		}
		return name, ver
	}
	scan := func() {
		debs, _ := filepath.Glob(filepath.Join(debCache, "*.deb"))
		for _, p := range debs {
			n, v := debInfo(p)
			cached[n+"="+v] = p
		}
	}
	scan()
	var missing []string
	for _, p := range pins {
		if cached[p] == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		cmd := exec.Command("apt-get", append([]string{"download", "-q"}, missing...)...)
		cmd.Dir = debCache
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get download %v: %v: %s", missing, err, out)
		}
		scan()
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := bundle.Manifest{FormatVersion: bundle.FormatVersion}
	for _, p := range pins {
		src := cached[p]
		if src == "" {
			t.Fatalf("%s not downloaded", p)
		}
		rel := "debs/" + filepath.Base(src)
		if err := os.Symlink(src, filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
		sum, size := hashFile(t, src)
		name, ver, _ := strings.Cut(p, "=")
		m.Files = append(m.Files, bundle.File{Path: rel, Kind: bundle.KindDeb, SHA256: sum, Size: size, Package: name, Version: ver})
	}
	raw, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestName), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}
	t.Logf("bundle: %d debs: %v", len(pins), pins)
	return b
}

func hashFile(t *testing.T, p string) (string, int64) {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// node is one test host as the steps see it.
type node struct {
	i    int
	name string // node-i
	user string
	h    host.Host
	ops  []step.Op
}

func (n *node) target(f *facts.Facts, b *bundle.Bundle) step.Target {
	return step.Target{Host: n.h, Facts: f, Bundle: b}
}

func gather(t *testing.T, n *node) *facts.Facts {
	t.Helper()
	f, err := facts.Gather(context.Background(), n.h, needs(n.ops))
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	return f
}

// checkAll runs every op's Check and returns the changed ones by kind.
func checkAll(t *testing.T, n *node, f *facts.Facts, b *bundle.Bundle) map[string]step.Change {
	t.Helper()
	changed := map[string]step.Change{}
	for _, op := range n.ops {
		ch, err := op.Check(context.Background(), n.target(f, b))
		if err != nil {
			t.Errorf("%s: check %s: %v", n.name, op.Kind(), err)
			continue
		}
		if ch.Action != step.ActionNone {
			changed[op.Kind()] = ch
		}
	}
	return changed
}

func applyAll(t *testing.T, n *node, f *facts.Facts, b *bundle.Bundle, only map[string]step.Change) time.Duration {
	t.Helper()
	t0 := time.Now()
	for _, op := range n.ops {
		if only != nil {
			if _, ok := only[op.Kind()]; !ok {
				continue
			}
		}
		ts := time.Now()
		if err := op.Apply(context.Background(), n.target(f, b)); err != nil {
			t.Fatalf("%s: apply %s: %v", n.name, op.Kind(), err)
		}
		t.Logf("%s: apply %s: %v", n.name, op.Kind(), time.Since(ts).Round(time.Millisecond))
	}
	return time.Since(t0)
}

func kinds(m map[string]step.Change) []string { return facts.Sorted(m) }

func execOut(t *testing.T, c *testhosts.Cluster, i int, script string) string {
	t.Helper()
	out, err := c.Exec(context.Background(), i, script)
	if err != nil {
		t.Fatalf("h%d: %s: %v\n%s", i, script, err, out)
	}
	return strings.TrimSpace(out)
}

// verify checks every setting on host i with independent commands run
// through nsenter, not through the steps or SSH.
func verify(t *testing.T, c *testhosts.Cluster, n *node) {
	t.Helper()
	i := n.i
	expect := func(script, want string) {
		t.Helper()
		if got := execOut(t, c, i, script); got != want {
			t.Errorf("h%d: %s:\n got %q\nwant %q", i, script, got, want)
		}
	}
	contains := func(script string, want ...string) {
		t.Helper()
		got := execOut(t, c, i, script)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("h%d: %s: %q lacks %q", i, script, got, w)
			}
		}
	}
	// hostname and /etc/hosts
	expect("hostname", n.name)
	expect("cat /etc/hostname", n.name)
	expect("sed -n '/^# BEGIN clusterctl/,/^# END clusterctl/p' /etc/hosts",
		"# BEGIN clusterctl managed block\n"+
			itNet+".11\tnode-1\t# clusterctl\n"+itNet+".12\tnode-2\t# clusterctl\n"+itNet+".13\tnode-3\t# clusterctl\n"+
			"# END clusterctl managed block")
	expect(fmt.Sprintf("grep -c '^%s.1%d h%d$' /etc/hosts", itNet, i, i), "1") // the user's line is untouched
	expect("getent hosts node-2 | awk '{print $1}'", itNet+".12")
	// swap
	expect("grep -c '^#clusterctl# /swapfile none swap sw 0 0$' /etc/fstab", "1")
	expect("grep -v '^[[:space:]]*#' /etc/fstab | awk '$3 == \"swap\"' | wc -l", "0")
	expect("grep -c '^/swapfile none swap sw 0 0$' /etc/fstab.clusterctl.bak", "1")
	expect("swapon --show --noheadings | wc -l", "0")
	// sysctl
	expect("sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables | tr '\\n' ' '", "1 1 1")
	contains("cat "+hostprep.DefaultSysctlFile, "net.ipv4.ip_forward = 1", "net.bridge.bridge-nf-call-iptables = 1")
	expect("stat -c '%a %U %G' "+hostprep.DefaultSysctlFile, "644 root root")
	// modules
	expect("grep -v '^#' "+hostprep.DefaultModulesFile+" | tr '\\n' ' '", "overlay br_netfilter ip_vs")
	expect("grep -qw overlay /proc/filesystems && test -d /proc/sys/net/bridge && echo ok", "ok")
	// packages
	expect("dpkg-query -W -f='${db:Status-Abbrev}\\n' containerd runc containernetworking-plugins conntrack socat ethtool ipset systemd-timesyncd | sort -u", "ii")
	expect("ls /var/tmp | grep -c clusterctl-packages || true", "0")
	expect("ls -A "+hostprep.StagingDir+"/packages | wc -l; stat -c %a "+hostprep.StagingDir+"/packages", "0\n700")
	// time sync: configured and enabled; systemd skips it in a container
	expect("cat /etc/systemd/timesyncd.conf.d/clusterctl.conf | grep ^NTP=", "NTP=ntp1.example.net 10.0.0.1")
	expect("systemctl is-enabled systemd-timesyncd", "enabled")
	// containerd
	contains("cat /etc/containerd/config.toml", "version = 2", "restrict_oom_score_adj = true", "SystemdCgroup = true",
		`sandbox_image = "registry.k8s.io/pause:3.10.1"`, `config_path = "/etc/containerd/certs.d"`, `bin_dir = "/opt/cni/bin"`)
	contains("cat /etc/containerd/certs.d/docker.io/hosts.toml", `server = "https://registry-1.docker.io"`, `[host."https://mirror.local:5000"]`)
	contains("cat '/etc/containerd/certs.d/registry.local:5000/hosts.toml'", "skip_verify = true")
	expect("readlink /opt/cni/bin/bridge", "/usr/lib/cni/bridge")
	expect("test -d /etc/cni/net.d && echo ok", "ok")
	expect("systemctl is-active containerd; systemctl is-enabled containerd", "active\nenabled")
	contains("ctr version", "Server:", "Version:")
	// the CRI plugin loaded the config (restrict_oom_score_adj and the cgroup driver)
	contains("ctr plugins ls | grep cri", "ok")
	// hosts.toml parses and sends docker.io pulls to the mirror (which does
	// not exist here: the error names it)
	contains("timeout 20 ctr images pull --hosts-dir /etc/containerd/certs.d docker.io/library/busybox:1 2>&1; true", "mirror.local")
}

func TestIntegrationHostPrep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("test hosts need root")
	}
	tStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	b := buildBundle(t)
	t.Logf("bundle ready in %v", time.Since(tStart).Round(time.Millisecond))

	// Debian 12 stays in the matrix here: host preparation from Debian's own
	// containerd packages, on the release every cluster made so far runs.
	c, err := testhosts.Start(ctx, testhosts.Options{Net: itNet, Count: 3, Prefix: itPrefix, Release: "bookworm", Logf: t.Logf})
	if err != nil {
		t.Fatalf("start test hosts: %v", err)
	}
	defer c.Close()
	pool := sshx.NewPool()
	defer pool.Close()

	// h1, h2 as root; h3 as the sudo user tester, for everything.
	var nodes []*node
	for i := 1; i <= 3; i++ {
		th, _ := c.Host(i)
		user := "root"
		if i == 3 {
			user = "tester"
		}
		red := host.NewRedactor()
		h := pool.Host(sshx.Config{Name: th.Name, Address: th.Addr, User: user, IdentityFiles: []string{c.KeyFile},
			KnownHostsFile: c.KnownHosts, Redactor: red, DialTimeout: 5 * time.Second})
		if user != "root" {
			h = host.WithSudo(h, host.SudoOptions{Redactor: red})
		}
		name := fmt.Sprintf("node-%d", i)
		nodes = append(nodes, &node{i: i, name: name, user: user, h: h, ops: nodeOps(itNet, name, "bundle")})
		// A swap line to comment out (never swapon: there is no swap here).
		execOut(t, c, i, "echo '/swapfile none swap sw 0 0' >> /etc/fstab")
	}
	fstabBefore := map[int]string{}
	for _, n := range nodes {
		fstabBefore[n.i] = execOut(t, c, n.i, "cat /etc/fstab")
	}

	parallel := func(name string, fn func(t *testing.T, n *node)) {
		t.Run(name, func(t *testing.T) {
			for _, n := range nodes {
				t.Run(fmt.Sprintf("h%d-%s", n.i, n.user), func(t *testing.T) {
					t.Parallel()
					fn(t, n)
				})
			}
		})
	}

	// ip_vs is missing on this kernel: the ipvs proxy mode's error path.
	t.Run("missing-module-error", func(t *testing.T) {
		n := nodes[0]
		f := gather(t, n)
		op := hostprep.KernelModules{Modules: []string{"overlay", "ip_vs"}, Required: map[string]string{"ip_vs": `network.kubeProxyMode "ipvs"`}}
		_, err := op.Check(ctx, n.target(f, b))
		if !errors.Is(err, hostprep.ErrModuleMissing) || !strings.Contains(err.Error(), "ip_vs") ||
			!strings.Contains(err.Error(), `network.kubeProxyMode "ipvs"`) || !strings.Contains(err.Error(), `"iptables"`) {
			t.Errorf("check without ignore = %v, want the missing-module error naming ip_vs and the setting", err)
		}
	})

	freshApply := map[int]time.Duration{}
	noopApply := map[int]time.Duration{}
	var mu sync.Mutex
	parallel("fresh", func(t *testing.T, n *node) {
		f := gather(t, n)
		changed := checkAll(t, n, f, b)
		want := []string{"hostprep/etc-hosts", "hostprep/hostname", "hostprep/kernel-modules", "hostprep/packages", "hostprep/swap",
			"hostprep/sysctl", "hostprep/time-sync", "runtime/containerd"}
		if got := kinds(changed); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: fresh host changes %v, want %v", n.name, got, want)
		}
		for _, k := range want {
			if a := changed[k].Action; a != step.ActionCreate && a != step.ActionUpdate {
				t.Errorf("%s: %s: action %s", n.name, k, a)
			}
		}
		d := applyAll(t, n, f, b, nil)
		mu.Lock()
		freshApply[n.i] = d
		mu.Unlock()
	})
	parallel("verify", func(t *testing.T, n *node) { verify(t, c, n) })

	startedAt := map[int]string{}
	parallel("converged", func(t *testing.T, n *node) {
		f := gather(t, n)
		changed := checkAll(t, n, f, b)
		for k, ch := range changed {
			t.Errorf("%s: %s after apply: %s %+v %s", n.name, k, ch.Action, ch.Diff, ch.Note)
		}
		// Notes the plan shows for what cannot run here.
		for _, op := range n.ops {
			ch, _ := op.Check(ctx, n.target(f, b))
			if ch.Note != "" {
				t.Logf("%s: %s: note: %s", n.name, op.Kind(), ch.Note)
			}
		}
		mu.Lock()
		startedAt[n.i] = execOut(t, c, n.i, "systemctl show -p ExecMainStartTimestampMonotonic containerd")
		mu.Unlock()
		// Applying again changes nothing and restarts nothing.
		d := applyAll(t, n, f, b, nil)
		mu.Lock()
		noopApply[n.i] = d
		mu.Unlock()
		if got := execOut(t, c, n.i, "systemctl show -p ExecMainStartTimestampMonotonic containerd"); got != startedAt[n.i] {
			t.Errorf("%s: containerd restarted by a no-op apply (%s -> %s)", n.name, startedAt[n.i], got)
		}
		if got := execOut(t, c, n.i, "cat /etc/fstab.clusterctl.bak"); got != fstabBefore[n.i] {
			t.Errorf("%s: fstab backup changed:\n%s", n.name, got)
		}
		if os.Getenv("CLUSTERCTL_RECORD") != "" && n.i == 1 {
			recordProbe(t, n)
		}
	})

	// Tamper: a swap line back on, the sysctl file edited by hand,
	// containerd stopped. Exactly those ops change, then converge.
	parallel("tamper", func(t *testing.T, n *node) {
		execOut(t, c, n.i, "sed -i 's/^#clusterctl# //' /etc/fstab && echo '# edited by hand' >> "+hostprep.DefaultSysctlFile+" && systemctl stop containerd")
		f := gather(t, n)
		changed := checkAll(t, n, f, b)
		want := []string{"hostprep/swap", "hostprep/sysctl", "runtime/containerd"}
		if got := kinds(changed); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: after tampering changes %v, want %v", n.name, got, want)
		}
		for _, k := range want {
			t.Logf("%s: %s: %+v", n.name, k, changed[k].Diff)
		}
		// Record the commands: containerd's config did not change, so it
		// must be started, not restarted.
		rec := hosttest.NewFake(t, n.name)
		rec.Backend = n.h
		rn := *n
		rn.h = rec
		applyAll(t, &rn, f, b, changed)
		tr := rec.Transcript()
		if !strings.Contains(tr, "systemctl start containerd.service") || strings.Contains(tr, "restart containerd") {
			t.Errorf("%s: containerd should be started, not restarted:\n%s", n.name, tr)
		}
		f = gather(t, n)
		if changed := checkAll(t, n, f, b); len(changed) != 0 {
			t.Errorf("%s: not converged after repair: %v", n.name, kinds(changed))
		}
		if got := execOut(t, c, n.i, "cat /etc/fstab.clusterctl.bak"); got != fstabBefore[n.i] {
			t.Errorf("%s: fstab backup overwritten:\n%s", n.name, got)
		}
	})
	parallel("verify-again", func(t *testing.T, n *node) { verify(t, c, n) })

	for _, n := range nodes {
		t.Logf("h%d (%s): apply fresh %v, no-op %v", n.i, n.user, freshApply[n.i].Round(time.Millisecond), noopApply[n.i].Round(time.Millisecond))
	}
	t.Logf("integration wall time %v", time.Since(tStart).Round(time.Millisecond))
}

// recordProbe saves the raw probe output of a converged host for the unit
// tests' fixtures (CLUSTERCTL_RECORD=1).
func recordProbe(t *testing.T, n *node) {
	script, err := os.ReadFile("../../facts/probe.sh")
	if err != nil {
		t.Fatal(err)
	}
	req := needs(n.ops)
	args := []string{"sh", "-s", "--"}
	args = append(append(args, req.Sysctls...), "--")
	args = append(append(args, req.Modules...), "--")
	args = append(append(args, req.Packages...), "--")
	args = append(args, req.Files...)
	var out bytes.Buffer
	if err := n.h.Run(context.Background(), host.Cmd{Line: host.Join(args...), Stdin: bytes.NewReader(script), Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/debian-converged.probe", out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
