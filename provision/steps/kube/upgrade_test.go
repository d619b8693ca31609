package kube_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// fakeCluster is what the first control plane's kubectl answers, changed
// by the commands the upgrade sends (cordon, restart, ...); log records
// the commands of every host in the order they ran.
type fakeCluster struct {
	mu         sync.Mutex
	kubelets   map[string]string // reported by the nodes
	apiServers map[string]string
	config     string
	unsched    map[string]bool
	cordoned   map[string]string
	log        []string
}

func newFakeCluster(version string, nodes ...string) *fakeCluster {
	fc := &fakeCluster{kubelets: map[string]string{}, apiServers: map[string]string{"h1": version}, config: version,
		unsched: map[string]bool{}, cordoned: map[string]string{}}
	for _, n := range nodes {
		fc.kubelets[n] = version
	}
	return fc
}

func (fc *fakeCluster) record(s string) {
	fc.mu.Lock()
	fc.log = append(fc.log, s)
	fc.mu.Unlock()
}

func (fc *fakeCluster) probeOutput() string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var b strings.Builder
	names := make([]string, 0, len(fc.kubelets))
	for n := range fc.kubelets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		unsched := ""
		if fc.unsched[n] {
			unsched = "true"
		}
		fmt.Fprintf(&b, "node|%s|v%s|%s|%s\n", n, fc.kubelets[n], unsched, fc.cordoned[n])
	}
	for n, v := range fc.apiServers {
		fmt.Fprintf(&b, "apiserver|%s|registry.local/k8s/kube-apiserver:v%s\n", n, v)
	}
	fmt.Fprintf(&b, "config|v%s\n", fc.config)
	return b.String()
}

func isClusterProbe(l string) bool {
	return strings.HasPrefix(l, "if [ ! -e /etc/kubernetes/admin.conf ]; then echo @@no-cluster; exit 0; fi;")
}

func isNodeProbe(l string) bool { return strings.HasPrefix(l, `echo "kubelet=$(kubelet --version`) }

// serveCluster makes cp answer the cluster probe and the kubectl commands
// an upgrade sends through it; drainErr fails drains.
func serveCluster(cp *hosttest.Fake, fc *fakeCluster, drainErr bool) {
	cp.ExpectFunc("cluster probe", isClusterProbe).Do(func(_ context.Context, cmd host.Cmd) error {
		fmt.Fprint(cmd.Stdout, fc.probeOutput())
		return nil
	}).AnyTimes()
	nodeOf := func(l, verb string) string {
		_, rest, _ := strings.Cut(l, " "+verb+" ")
		return strings.TrimRight(strings.Fields(rest)[0], ";'")
	}
	cp.ExpectFunc("cordon", func(l string) bool {
		return strings.Contains(l, " annotate node --overwrite ") && strings.Contains(l, " cordon ")
	}).Do(
		func(_ context.Context, cmd host.Cmd) error {
			n := nodeOf(cmd.Line, "cordon")
			fc.mu.Lock()
			fc.unsched[n], fc.cordoned[n] = true, "v1.34.10"
			fc.mu.Unlock()
			fc.record("h1: cordon " + n)
			return nil
		}).AnyTimes()
	drain := cp.ExpectFunc("drain", func(l string) bool { return strings.Contains(l, " drain ") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			fc.record("h1: drain " + nodeOf(cmd.Line, "drain"))
			if drainErr {
				return &host.ExitError{Host: "h1", Command: cmd.Line, Code: 1, Stderr: "error when evicting pods/\"hello-1\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."}
			}
			return nil
		}).AnyTimes()
	_ = drain
	cp.ExpectFunc("restart kube-proxy", func(l string) bool { return strings.Contains(l, "delete pod -l k8s-app=kube-proxy") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			_, n, _ := strings.Cut(cmd.Line, "spec.nodeName=")
			fc.record("h1: restart kube-proxy on " + strings.Trim(strings.Fields(n)[0], "'"))
			return nil
		}).AnyTimes()
	cp.ExpectFunc("uncordon", func(l string) bool { return strings.Contains(l, " uncordon ") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			n := nodeOf(cmd.Line, "uncordon")
			fc.mu.Lock()
			fc.unsched[n] = false
			delete(fc.cordoned, n)
			fc.mu.Unlock()
			fc.record("h1: uncordon " + n)
			return nil
		}).AnyTimes()
	cp.ExpectFunc("wait node", func(l string) bool { return strings.Contains(l, "get node ") && strings.Contains(l, "kubeletVersion") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			n := nodeOf(cmd.Line, "node")
			fc.mu.Lock()
			v := fc.kubelets[n]
			fc.mu.Unlock()
			fc.record("h1: wait for " + n + " Ready at v" + v)
			if !strings.Contains(cmd.Line, "'v"+v+" True'") {
				return &host.ExitError{Host: "h1", Command: cmd.Line, Code: 1, Stderr: "node " + n + ": v" + v + " True"}
			}
			return nil
		}).AnyTimes()
	cp.ExpectFunc("wait pods", func(l string) bool { return strings.Contains(l, "--field-selector") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			fc.record("h1: wait for the pods on " + strings.TrimSuffix(strings.Fields(strings.SplitAfter(cmd.Line, "spec.nodeName=")[1])[0], "'"))
			return nil
		}).AnyTimes()
}

// node is a member at version with its binaries installed (old content);
// restarting the kubelet makes it report what is installed.
type fakeNode struct {
	*hosttest.Fake
	kubelet, kubeadm, kubectl, apiServer string
}

func newMember(t *testing.T, fc *fakeCluster, name, version string, controlPlane bool) *fakeNode {
	n := &fakeNode{Fake: newNode(t, name), kubelet: version, kubeadm: version, kubectl: version}
	if controlPlane {
		n.apiServer = version
	}
	for _, b := range []string{"kubelet", "kubeadm", "kubectl"} {
		n.SetFile("/usr/bin/"+b, []byte(b+" "+version+"\n"), 0o755)
	}
	n.ExpectFunc("node probe", isNodeProbe).Do(func(_ context.Context, cmd host.Cmd) error {
		fmt.Fprintf(cmd.Stdout, "kubelet=v%s\nkubeadm=v%s\nkubectl=v%s\nmember=yes\n", n.kubelet, n.kubeadm, n.kubectl)
		if n.apiServer != "" {
			fmt.Fprintf(cmd.Stdout, "apiserver=registry.local/k8s/kube-apiserver:v%s\n", n.apiServer)
		}
		return nil
	}).AnyTimes()
	n.ExpectFunc("kubeadm version", func(l string) bool { return l == "kubeadm version -o short" }).Do(func(_ context.Context, cmd host.Cmd) error {
		n.kubeadm = "1.34.10"
		fmt.Fprintln(cmd.Stdout, "v1.34.10")
		return nil
	}).AnyTimes()
	n.ExpectFunc("kubeadm upgrade", func(l string) bool { return strings.Contains(l, " kubeadm upgrade ") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			_, rest, _ := strings.Cut(cmd.Line, " kubeadm upgrade ")
			verb := strings.Fields(rest)[0]
			fc.record(name + ": kubeadm upgrade " + verb)
			if verb == "apply" {
				fc.mu.Lock()
				fc.config, fc.apiServers[name] = "1.34.10", "1.34.10"
				fc.mu.Unlock()
				n.apiServer = "1.34.10"
			}
			if verb == "node" && controlPlane {
				fc.mu.Lock()
				fc.apiServers[name] = "1.34.10"
				fc.mu.Unlock()
				n.apiServer = "1.34.10"
			}
			return nil
		}).AnyTimes()
	n.ExpectFunc("restart kubelet", func(l string) bool { return l == "systemctl daemon-reload && systemctl restart kubelet.service" }).Do(
		func(_ context.Context, _ host.Cmd) error {
			n.kubelet, n.kubectl = "1.34.10", "1.34.10"
			fc.mu.Lock()
			fc.kubelets[name] = "1.34.10"
			fc.mu.Unlock()
			fc.record(name + ": restart kubelet")
			return nil
		}).AnyTimes()
	n.ExpectFunc("wait API", func(l string) bool {
		return strings.HasPrefix(l, "{ end=$(( $(date +%s) + 300 )); until kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=5s get --raw=/readyz")
	}).AnyTimes()
	n.ExpectFunc("wait API stable", func(l string) bool {
		return strings.HasPrefix(l, "ok=0; end=$(( $(date +%s) + 180 )); while [ $ok -lt 10 ]; do if kubectl")
	}).Do(
		func(_ context.Context, _ host.Cmd) error {
			fc.record(name + ": wait for a steady API server")
			return nil
		}).AnyTimes()
	return n
}

// workerUpgrade: worker h2 at 1.33.13 in a cluster whose control plane h1
// is at 1.34.10, and the op that upgrades it.
func workerUpgrade(t *testing.T) (*fakeCluster, *hosttest.Fake, *fakeNode, kube.UpgradeNode, step.Target) {
	fc := newFakeCluster("1.34.10", "h1")
	fc.kubelets["h2"] = "1.33.13"
	cp := newNode(t, "h1")
	serveCluster(cp, fc, false)
	h := newMember(t, fc, "h2", "1.33.13", false)
	tg := step.Target{Host: h, Facts: freshFacts("h2"), Bundle: testBundle(t), Peers: map[string]host.Host{"h1": cp, "h2": h}}
	return fc, cp, h, upgradeOp("h2", kube.RoleWorker), tg
}

func upgradeOp(node, role string) kube.UpgradeNode {
	return kube.UpgradeNode{Cluster: cluster, Node: node, Role: role, Via: "h1", DrainTimeout: "2m", WaitTimeout: "3m"}
}

// TestUpgradeWorker: a worker at 1.33.13 in a cluster whose control plane
// is at 1.34.10 is cordoned and drained, gets `kubeadm upgrade node`, the
// new kubelet and kubectl, a restart, and is uncordoned once Ready at the
// version with its pods running; a second Apply does nothing.
func TestUpgradeWorker(t *testing.T) {
	ctx := context.Background()
	fc, cp, h, op, tg := workerUpgrade(t)
	ch, err := op.Check(ctx, tg)
	if err != nil || ch.Action != step.ActionUpdate {
		t.Fatalf("Check: %s", steptest.Report(op, ch, err))
	}
	if err := op.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	want := []string{"h1: cordon h2", "h1: drain h2", "h2: kubeadm upgrade node", "h2: restart kubelet",
		"h1: wait for h2 Ready at v1.34.10", "h1: wait for the pods on h2", "h1: uncordon h2"}
	if got := strings.Join(fc.log, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("order of the upgrade:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	for _, b := range []string{"kubelet", "kubeadm", "kubectl"} {
		if f, _ := h.File("/usr/bin/" + b); string(f.Content) != "fake bin/"+b+"\n" || f.Mode.Perm() != 0o755 {
			t.Errorf("/usr/bin/%s: %q %v, want the bundle's", b, f.Content, f.Mode)
		}
	}
	first := h.Transcript()
	ch2, err := op.Check(ctx, tg)
	if err != nil || ch2.Action != step.ActionNone {
		t.Errorf("after the upgrade: %s", steptest.Report(op, ch2, err))
	}
	if err := op.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if again := strings.TrimPrefix(h.Transcript(), first); strings.Count(again, "run: ") != 2 {
		t.Errorf("second Check and Apply did more than probe:\n%s", again)
	}
	steptest.Golden(t, "upgrade-worker", steptest.Section("check", steptest.Report(op, ch, nil)),
		steptest.Section("transcript h2", first), steptest.Section("transcript h1", cp.Transcript()))
}

// TestUpgradeWorkerNftables: in nftables mode the node's kube-proxy pod is
// replaced once the node is Ready at the version, before its pods are
// waited for (kube-proxy refused traffic after upgrades in e2e until then).
func TestUpgradeWorkerNftables(t *testing.T) {
	ctx := context.Background()
	fc, _, _, op, tg := workerUpgrade(t)
	op.Cluster.ProxyMode = "nftables"
	if err := op.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	want := []string{"h1: cordon h2", "h1: drain h2", "h2: kubeadm upgrade node", "h2: restart kubelet",
		"h1: wait for h2 Ready at v1.34.10", "h1: restart kube-proxy on h2", "h1: wait for the pods on h2", "h1: uncordon h2"}
	if got := strings.Join(fc.log, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("order of the upgrade:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// TestUpgradeFirstControlPlane: `kubeadm upgrade plan` and `apply` with the
// new kubeadm, then drain, kubelet swap, restart, waits and uncordon.
func TestUpgradeFirstControlPlane(t *testing.T) {
	ctx := context.Background()
	fc := newFakeCluster("1.33.13", "h1", "h2")
	cp := newMember(t, fc, "h1", "1.33.13", true)
	serveCluster(cp.Fake, fc, false)
	op := upgradeOp("h1", kube.RoleFirstControlPlane)
	tg := step.Target{Host: cp, Facts: freshFacts("h1"), Bundle: testBundle(t), Peers: map[string]host.Host{"h1": cp}}
	ch, err := op.Check(ctx, tg)
	if err != nil || ch.Action != step.ActionUpdate {
		t.Fatalf("Check: %s", steptest.Report(op, ch, err))
	}
	if err := op.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	want := []string{"h1: kubeadm upgrade plan", "h1: kubeadm upgrade apply", "h1: cordon h1", "h1: drain h1", "h1: restart kubelet",
		"h1: wait for h1 Ready at v1.34.10", "h1: wait for a steady API server", "h1: wait for the pods on h1", "h1: uncordon h1"}
	if got := strings.Join(fc.log, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("order of the upgrade:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if ch, err := op.Check(ctx, tg); err != nil || ch.Action != step.ActionNone {
		t.Errorf("after the upgrade: %s", steptest.Report(op, ch, err))
	}
	steptest.Golden(t, "upgrade-first-control-plane", steptest.Section("check", steptest.Report(op, ch, nil)),
		steptest.Section("transcript h1", cp.Transcript()))
}

// TestUpgradeOtherControlPlane runs `kubeadm upgrade node` once the first
// control plane moved kubeadm-config, and refuses before.
func TestUpgradeOtherControlPlane(t *testing.T) {
	ctx := context.Background()
	fc := newFakeCluster("1.33.13", "h1", "h4")
	cp := newNode(t, "h1")
	serveCluster(cp, fc, false)
	h := newMember(t, fc, "h4", "1.33.13", true)
	op := upgradeOp("h4", kube.RoleControlPlane)
	tg := step.Target{Host: h, Facts: freshFacts("h4"), Bundle: testBundle(t), Peers: map[string]host.Host{"h1": cp, "h4": h}}
	if err := op.Apply(ctx, tg); !errors.Is(err, kube.ErrSkew) || !strings.Contains(err.Error(), "the first control plane's kube/upgrade (kubeadm upgrade apply v1.34.10) must succeed before h4 upgrades") {
		t.Fatalf("before the first control plane: %v", err)
	}
	fc.config, fc.apiServers["h1"], fc.kubelets["h1"] = "1.34.10", "1.34.10", "1.34.10"
	if err := op.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	want := []string{"h4: kubeadm upgrade node", "h1: cordon h4", "h1: drain h4", "h4: restart kubelet",
		"h1: wait for h4 Ready at v1.34.10", "h4: wait for a steady API server", "h1: wait for the pods on h4", "h1: uncordon h4"}
	if got := strings.Join(fc.log, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("order of the upgrade:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// TestUpgradeCheck: what Check says for each state of a node.
func TestUpgradeCheck(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		op       kube.UpgradeNode
		node     string // version the node runs ("" = not a member)
		cluster  string // version of the API server and kubeadm-config
		cordoned bool
		target   string // the spec's version, when not 1.34.10
		bundle   string // the bundle's kubernetes version
		action   step.Action
		err      string
	}{
		{name: "fresh host", op: upgradeOp("h2", kube.RoleWorker), cluster: "1.33.13", action: step.ActionNone},
		{name: "converged", op: upgradeOp("h2", kube.RoleWorker), node: "1.34.10", cluster: "1.34.10", action: step.ActionNone},
		{name: "left cordoned", op: upgradeOp("h2", kube.RoleWorker), node: "1.34.10", cluster: "1.34.10", cordoned: true, action: step.ActionUpdate},
		{name: "patch", op: upgradeOp("h2", kube.RoleWorker), node: "1.34.9", cluster: "1.34.10", action: step.ActionUpdate},
		{name: "worker before control planes", op: upgradeOp("h2", kube.RoleWorker), node: "1.33.13", cluster: "1.33.13", action: step.ActionUpdate},
		{name: "downgrade", op: upgradeOp("h2", kube.RoleWorker), node: "1.34.10", cluster: "1.34.10",
			target: "1.33.13", err: "downgrade 1.34.10 -> 1.33.13 is not supported"},
		{name: "skipped minor", op: upgradeOp("h2", kube.RoleWorker), node: "1.32.5", cluster: "1.32.5",
			err: "upgrade 1.32.5 -> 1.34.10 skips a minor: upgrade to 1.33.x first"},
		{name: "bundle of another version", op: upgradeOp("h2", kube.RoleWorker), node: "1.33.13", cluster: "1.34.10", bundle: "1.33.13",
			err: "holds Kubernetes 1.33.13, the spec asks for 1.34.10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := tc.op
			if tc.target != "" {
				op.Cluster.Version = tc.target
			}
			fc := newFakeCluster(tc.cluster, "h1")
			cp := newNode(t, "h1")
			serveCluster(cp, fc, false)
			h := newNode(t, "h2")
			if tc.node == "" {
				h.ExpectFunc("node probe", isNodeProbe).Stdout("kubelet=v1.33.13\nkubeadm=v1.33.13\nkubectl=\n")
			} else {
				fc.kubelets["h2"] = tc.node
				if tc.cordoned {
					fc.unsched["h2"], fc.cordoned["h2"] = true, "v1.34.10"
				}
				h.ExpectFunc("node probe", isNodeProbe).Stdout(fmt.Sprintf("kubelet=v%s\nkubeadm=v%s\nkubectl=v%s\nmember=yes\n", tc.node, tc.node, tc.node))
			}
			b := testBundle(t)
			if tc.bundle != "" {
				b.Manifest.Versions = map[string]string{"kubernetes": tc.bundle}
			}
			ch, err := op.Check(ctx, step.Target{Host: h, Facts: freshFacts("h2"), Bundle: b, Peers: map[string]host.Host{"h1": cp}})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Check: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || ch.Action != tc.action {
				t.Fatalf("Check: %s, want %s", steptest.Report(op, ch, err), tc.action)
			}
		})
	}
}

// TestUpgradeWorkerRefusedBeforeControlPlanes: kubelet never newer than
// its API server, even when a selection left the control planes out.
func TestUpgradeWorkerRefusedBeforeControlPlanes(t *testing.T) {
	ctx := context.Background()
	fc := newFakeCluster("1.33.13", "h1", "h2")
	cp := newNode(t, "h1")
	serveCluster(cp, fc, false)
	h := newMember(t, fc, "h2", "1.33.13", false)
	op := upgradeOp("h2", kube.RoleWorker)
	err := op.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h2"), Bundle: testBundle(t), Peers: map[string]host.Host{"h1": cp}})
	if !errors.Is(err, kube.ErrSkew) || !strings.Contains(err.Error(), "kubelet 1.34.10 would be newer than the API server 1.33.13") {
		t.Fatalf("Apply: %v", err)
	}
	if len(fc.log) != 0 {
		t.Errorf("the refused upgrade did: %v", fc.log)
	}
}

// TestUpgradeDrainFails: a drain that cannot evict (a PodDisruptionBudget)
// stops the upgrade with the node uncordoned at its old version.
func TestUpgradeDrainFails(t *testing.T) {
	ctx := context.Background()
	fc := newFakeCluster("1.34.10", "h1")
	fc.kubelets["h2"] = "1.33.13"
	cp := newNode(t, "h1")
	serveCluster(cp, fc, true)
	h := newMember(t, fc, "h2", "1.33.13", false)
	op := upgradeOp("h2", kube.RoleWorker)
	err := op.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h2"), Bundle: testBundle(t), Peers: map[string]host.Host{"h1": cp}})
	if err == nil || !strings.Contains(err.Error(), "drain h2 (PodDisruptionBudgets may block evictions)") ||
		!strings.Contains(err.Error(), "h2 was uncordoned and still runs 1.33.13") {
		t.Fatalf("Apply: %v", err)
	}
	if got := strings.Join(fc.log, ", "); got != "h1: cordon h2, h1: drain h2, h1: uncordon h2" {
		t.Errorf("did: %s", got)
	}
	if f, _ := h.File("/usr/bin/kubelet"); string(f.Content) != "kubelet 1.33.13\n" {
		t.Errorf("kubelet replaced after a failed drain: %q", f.Content)
	}
}

// TestUpgradeOffline: a blank host has nothing to upgrade.
func TestUpgradeOffline(t *testing.T) {
	for _, op := range []interface {
		step.OfflineChecker
		step.Op
	}{upgradeOp("h2", kube.RoleWorker), kube.EtcdSnapshot{Cluster: cluster, Node: "h1", Dir: kube.BackupDir}} {
		if ch := op.CheckOffline(); ch.Action != step.ActionNone {
			t.Errorf("%T offline: %s", op, ch.Action)
		}
		if ch, err := op.Check(context.Background(), step.Target{}); err != nil || ch.Action != step.ActionNone {
			t.Errorf("%T without facts: %v %v", op, ch.Action, err)
		}
	}
}

var snapshotOp = kube.EtcdSnapshot{Cluster: cluster, Node: "h1", Dir: kube.BackupDir}

func isSnapshotLookup(l string) bool {
	return strings.HasPrefix(l, "cd /var/lib/clusterctl/backups 2>/dev/null || exit 0; for f in etcd-before-v1.34.10-*.db;")
}

// TestEtcdSnapshot: a cluster behind the spec's version gets one snapshot,
// saved by the etcd pod's etcdctl, checked with etcdutl and moved with its
// sha256 into the backup directory; one found for this target (a re-run)
// or a cluster at the version needs none; a downgrade is refused.
func TestEtcdSnapshot(t *testing.T) {
	ctx := context.Background()
	fc := newFakeCluster("1.33.13", "h1", "h2")
	cp := newNode(t, "h1")
	serveCluster(cp, fc, false)
	cp.ExpectFunc("earlier snapshot", isSnapshotLookup).Times(2)
	cp.ExpectFunc("save", func(l string) bool {
		return strings.HasPrefix(l, "set -e; umask 077; install -d -m 0700 -- /var/lib/clusterctl/backups;")
	}).
		Stdout("+----------+----------+------------+------------+\n|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n+----------+----------+------------+------------+\n| 5e3a7f0c |     1834 |        925 |     3.1 MB |\n+----------+----------+------------+------------+\nsaved /var/lib/clusterctl/backups/etcd-before-v1.34.10-20260101T120000Z.db\n")
	tg := step.Target{Host: cp, Facts: freshFacts("h1"), Peers: map[string]host.Host{"h1": cp}}
	ch, err := snapshotOp.Check(ctx, tg)
	if err != nil || ch.Action != step.ActionCreate {
		t.Fatalf("Check: %s", steptest.Report(snapshotOp, ch, err))
	}
	if err := snapshotOp.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "upgrade-etcd-snapshot", steptest.Section("check", steptest.Report(snapshotOp, ch, nil)), steptest.Section("transcript h1", cp.Transcript()))
	save := cp.Transcript()
	for _, want := range []string{
		"kubectl --kubeconfig=/etc/kubernetes/admin.conf -n kube-system exec etcd-h1 -- etcdctl '--endpoints=https://127.0.0.1:2379' '--cacert=/etc/kubernetes/pki/etcd/ca.crt' '--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt' '--key=/etc/kubernetes/pki/etcd/healthcheck-client.key' snapshot save /var/lib/etcd/clusterctl-snapshot.db.part",
		"exec etcd-h1 -- etcdutl snapshot status /var/lib/etcd/clusterctl-snapshot.db.part -w table",
		`sha256sum "$name" > "$name.sha256"`,
	} {
		if !strings.Contains(save, want) {
			t.Errorf("snapshot commands lack %q", want)
		}
	}

	// A re-run after an interrupted roll finds the snapshot.
	cp.ExpectFunc("found", isSnapshotLookup).Stdout("etcd-before-v1.34.10-20260101T120000Z.db\n")
	if ch, err := snapshotOp.Check(ctx, tg); err != nil || ch.Action != step.ActionNone {
		t.Errorf("with a snapshot: %s", steptest.Report(snapshotOp, ch, err))
	}
	// Every node at the version: nothing to protect.
	fc.apiServers["h1"], fc.kubelets["h1"], fc.kubelets["h2"] = "1.34.10", "1.34.10", "1.34.10"
	if ch, err := snapshotOp.Check(ctx, tg); err != nil || ch.Action != step.ActionNone {
		t.Errorf("at the version: %s", steptest.Report(snapshotOp, ch, err))
	}
	down := snapshotOp
	down.Cluster.Version = "1.33.13"
	if _, err := down.Check(ctx, tg); !errors.Is(err, kube.ErrSkew) || !strings.Contains(err.Error(), "downgrade 1.34.10 -> 1.33.13") {
		t.Errorf("downgrade: %v", err)
	}
	// No cluster yet (a fresh build): nothing.
	fresh := newNode(t, "h1")
	fresh.ExpectFunc("cluster probe", isClusterProbe).Stdout("@@no-cluster\n")
	if ch, err := snapshotOp.Check(ctx, step.Target{Host: fresh, Facts: freshFacts("h1")}); err != nil || ch.Action != step.ActionNone {
		t.Errorf("fresh: %s", steptest.Report(snapshotOp, ch, err))
	}
}

// TestInstallLeavesMemberToUpgrade: on a node that joined, Install does not
// swap a kubelet, kubeadm or kubectl of another version (kube/upgrade
// does, in order); it still manages the unit files.
func TestInstallLeavesMemberToUpgrade(t *testing.T) {
	ctx := context.Background()
	b := testBundle(t)
	h := newNode(t, "h2")
	for _, bin := range []string{"kubelet", "kubeadm", "kubectl"} {
		h.SetFile("/usr/bin/"+bin, []byte(bin+" 1.33.13\n"), 0o755)
	}
	f := freshFacts("h2")
	f.Kubelet, f.Kubeadm = "1.33.13", "1.33.13"
	f.Files[kube.KubeletConf] = "0123abcd"
	f.Services["kubelet"] = "enabled/active"
	expectProbe(h, "1.33.13", publicResolv, false).Times(2)
	ch, err := install.Check(ctx, step.Target{Host: h, Facts: f, Bundle: b})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ch.Diff {
		if d.Key == "kubelet" || d.Key == "kubeadm" || d.Key == "kubectl" {
			t.Errorf("Install plans %s on a member: %+v", d.Key, d)
		}
	}
	h.ExpectFunc("systemctl", func(l string) bool { return strings.HasPrefix(l, "systemctl ") })
	if err := install.Apply(ctx, step.Target{Host: h, Facts: f, Bundle: b}); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"kubelet", "kubeadm", "kubectl"} {
		if got, _ := h.File("/usr/bin/" + bin); string(got.Content) != bin+" 1.33.13\n" {
			t.Errorf("%s replaced on a member: %q", bin, got.Content)
		}
	}
	if got, _ := h.File(kube.FlannelCNI); string(got.Content) != "fake bin/flannel-cni\n" {
		t.Errorf("flannel CNI plugin not installed: %q", got.Content)
	}
	if strings.Contains(h.Transcript(), "upload: /usr/bin/kube") {
		t.Errorf("binaries uploaded:\n%s", h.Transcript())
	}
}
