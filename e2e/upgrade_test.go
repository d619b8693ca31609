//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// helloPDB keeps two of the three hello replicas up while nodes drain.
const helloPDB = `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: hello, namespace: default}
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: hello}
`

// TestUpgrade: a 1 control plane + 2 worker kubeadm cluster made at
// v1.36.3 on Debian's containerd 1.6 (as clusterctl made clusters before it
// built containerd 2) first moves to the bundle's containerd 2: re-bundled
// with the runtime, the plan shows h1, h2, h3's kube/migrate-runtime in
// that order, and the apply moves them one at a time (drain, swap,
// uncordon) while this machine sends a request every 100 ms round-robin to
// the NodePort of every node, counting failures. Then it is upgraded to
// v1.37.2 by changing kubernetes.version and re-bundling. The plan shows the etcd
// snapshot, then h1, h2, h3 in that order. The roll runs under the same
// load: a first apply stops at h2's drain (a
// PodDisruptionBudget patched to allow no eviction), leaving h2 uncordoned
// at v1.36.3 and h3 untouched; with the budget back, a second apply
// continues (snapshot and h1 unchanged). Afterwards every node and the API
// server run v1.37.2, the cluster is healthy, a snapshot with its sha256
// is on h1, a third apply changes nothing, and a downgrade is refused by
// plan with the skew policy's error. Budget: about 15 min under load.
func TestUpgrade(t *testing.T) {
	skipWithoutKubernetes(t)
	t.Parallel() // each scenario has its own hosts, net and kubeconfig
	const net, prefix = "172.31.15", "ct15"
	c := &cluster{t: t, mark: time.Now()}
	oldArt := BuildArtifactsVersion(t, "v1.36.3")
	newArt := BuildArtifactsVersion(t, "v1.37.2")
	c.phase("artifacts v1.36.3 and v1.37.2 (e2e/artifacts/build.sh)")
	c.kubectl = filepath.Join(newArt, "bin", "kubectl")

	// Debian 12, where every cluster clusterctl made so far runs.
	e := newEnvRelease(t, 3, net, prefix, "root", "bookworm")
	c.e = e
	setVersion(t, e, "1.36.3")
	e.writeSpec("kubernetes.cue", strings.ReplaceAll(clusterSpec, "NET", net))
	e.writeSpec("pdb.cue", `cluster: manifests: "hello-pdb": {path: "manifests/hello-pdb.yaml", namespace: "default"}`)
	// iptables: in nftables mode this roll leaves ClusterIP and NodePort
	// traffic on upgraded nodes refused (kube-proxy's rules listed but not
	// applied), which plan warns about; the cause is still open (issue 13).
	e.writeSpec("proxy.cue", `cluster: network: kubeProxyMode: "iptables"`)
	hello, err := os.ReadFile("../inventories/local/manifests/hello.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A drained pod keeps serving for a few seconds after its eviction,
	// until kube-proxy on every node has dropped it from the Service: what
	// a workload that must not lose requests during drains does anyway.
	const preStop = "        imagePullPolicy: Never\n        lifecycle: {preStop: {sleep: {seconds: 5}}}\n"
	drainFriendly := strings.Replace(string(hello), "        imagePullPolicy: Never\n", preStop, 1)
	if drainFriendly == string(hello) {
		t.Fatal("hello.yaml: no imagePullPolicy line to add the preStop hook after")
	}
	if err := os.MkdirAll(filepath.Join(e.spec, "manifests"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.spec, "manifests", "hello.yaml"), []byte(drainFriendly), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.spec, "manifests", "hello-pdb.yaml"), []byte(helloPDB), 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian's containerd, runc and CNI plugins as packages, and the
	// v1.36.3 build without its own runtime.
	legacy := filepath.Join(t.TempDir(), "legacy")
	run(t, "bash", "node-debs.sh", legacy, "bookworm", "containerd", "runc", "containernetworking-plugins")
	e.clusterctl(0, "bundle", e.spec, "--from", legacy, "--from", withoutRuntime(t, oldArt))
	c.phase("3 hosts booted, node debs, v1.36.3 bundle with Debian's containerd")

	c.kubeconfig = filepath.Join(t.TempDir(), "kube", "config")
	c.e.kubeconfig = c.kubeconfig
	out := e.clusterctl(0, "apply", "--yes", "-o", "json", e.spec)
	failedSteps(t, ApplyEvents(out))
	c.phase("apply: bare hosts -> healthy v1.36.3 cluster on containerd 1.6")
	c.checkVersions("v1.36.3")
	c.checkRuntimes("containerd://1.6.")

	// The move to containerd 2: the same version's bundle, with the runtime.
	e.clusterctl(0, "bundle", e.spec, "--from", filepath.Join(e.spec, "artifacts"), "--from", oldArt)
	plan := e.clusterctl(0, "plan", e.spec)
	t.Logf("runtime migration plan:\n%s", plan)
	inOrder(t, plan, "  ~  h1/kube/migrate-runtime", "containerd: 1.6.", " (distribution package) -> 2.4.2 (bundle)",
		"  ~  h2/kube/migrate-runtime", "  ~  h3/kube/migrate-runtime")
	load := startLoad(net)
	start := time.Now()
	out = e.clusterctl(0, "apply", "--yes", "-o", "json", e.spec)
	migrated := time.Since(start)
	total, failed, byNode, samples := load.stop()
	evs := ApplyEvents(out)
	failedSteps(t, evs)
	c.phase("apply: containerd 1.6 -> 2.4.2, one node at a time")
	t.Logf("migration apply in %s:\n%s", migrated.Round(100*time.Millisecond), stepDurations(evs, "kube/migrate-runtime"))
	t.Logf("requests during the runtime migration (%s): %d sent, %d failed (%.2f%%); per node: %s",
		time.Since(load.started).Round(time.Second), total, failed, 100*float64(failed)/float64(max(total, 1)), byNode)
	for _, s := range samples {
		t.Logf("  failed: %s", s)
	}
	if total < 100 || failed*20 > total {
		t.Errorf("%d of %d requests failed during the runtime migration: the cluster did not keep serving", failed, total)
	}
	c.checkRuntimes("containerd://2.4.2")
	c.checkVersions("v1.36.3")
	if got := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "nodes", "-o", "jsonpath={.items[*].spec.unschedulable}"); strings.TrimSpace(got) != "" {
		t.Errorf("nodes left cordoned after the migration: %q", got)
	}
	mustContain(t, e.clusterctl(0, "apply", "--yes", e.spec), "No changes.")
	c.phase("no-op apply on containerd 2")

	// The upgrade: the spec's version and the bundle change together.
	setVersion(t, e, "1.37.2")
	e.clusterctl(0, "bundle", e.spec, "--from", filepath.Join(e.spec, "artifacts"), "--from", newArt)
	plan = e.clusterctl(0, "plan", e.spec)
	c.phase("re-bundle at v1.37.2, plan")
	t.Logf("upgrade plan:\n%s", plan)
	inOrder(t, plan, "  +  cluster/kube/etcd-snapshot  (on h1)", "  ~  h1/kube/upgrade", "control plane: 1.36.3 -> 1.37.2 (kubeadm upgrade plan, then kubeadm upgrade apply v1.37.2)",
		"  ~  h2/kube/upgrade", "  ~  h3/kube/upgrade", "  <= cluster/addons/health")
	for _, bad := range []string{"kubelet: 1.36.3 -> 1.37.2 (bundle)\n        kubeadm", "  ~  h1/kube/install"} {
		if strings.Contains(plan, bad) {
			t.Errorf("the plan swaps binaries outside the upgrade (%q):\n%s", bad, plan)
		}
	}

	// The roll, under load, in two applies: the first with a
	// PodDisruptionBudget no eviction can satisfy (patched out of band)
	// and a short drain timeout stops at h2's drain, h2 uncordoned at its
	// old version and h3 untouched, the cluster serving; the second, with
	// the budget back, continues from there.
	load = startLoad(net)
	Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "-n", "default", "patch", "pdb", "hello", "--type=merge", "-p", `{"spec":{"minAvailable":3}}`)
	e.writeSpec("drain.cue", `cluster: kubernetes: upgrade: drainTimeout: "40s"`)
	start = time.Now()
	out = e.clusterctl(1, "apply", "--yes", "-o", "json", e.spec)
	stopped := time.Since(start)
	total1, failed1, byNode1, _ := load.counts()
	evs = ApplyEvents(out)
	c.phase("apply: upgrade stopped by a drain that cannot evict")
	t.Logf("stopped apply in %s:\n%s", stopped.Round(100*time.Millisecond), stepDurations(evs, "kube/etcd-snapshot", "kube/upgrade"))
	status := map[string]ApplyEvent{}
	for _, ev := range evs {
		if ev.Type == "done" || ev.Type == "failed" || ev.Type == "skipped" {
			status[ev.Step] = ev
		}
	}
	for id, want := range map[string]string{"cluster/kube/etcd-snapshot": "done", "h1/kube/upgrade": "done", "h2/kube/upgrade": "failed",
		"h3/kube/upgrade": "skipped", "cluster/addons/health": "skipped"} {
		if status[id].Type != want {
			t.Errorf("%s: %s (%s), want %s", id, status[id].Type, status[id].Error, want)
		}
	}
	if msg := status["h2/kube/upgrade"].Error; !strings.Contains(msg, "drain h2") || !strings.Contains(msg, "h2 was uncordoned and still runs 1.36.3") {
		t.Errorf("h2's failure: %s", msg)
	} else {
		t.Logf("the stopped roll's error: %s", lastLines(msg, 3))
	}
	nodes := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "nodes", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion} {.spec.unschedulable}{"\n"}{end}`)
	if want := "h1 v1.37.2 \nh2 v1.36.3 \nh3 v1.36.3 \n"; nodes != want {
		t.Errorf("after the stopped roll, nodes (name kubelet unschedulable):\n%s\nwant:\n%s", nodes, want)
	}

	Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "-n", "default", "patch", "pdb", "hello", "--type=merge", "-p", `{"spec":{"minAvailable":2}}`)
	if err := os.Remove(filepath.Join(e.spec, "drain.cue")); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	out = e.clusterctl(0, "apply", "--yes", "-o", "json", e.spec)
	resumed := time.Since(start)
	total, failed, byNode, samples = load.stop()
	evs = ApplyEvents(out)
	failedSteps(t, evs)
	c.phase("apply: the roll resumed and finished")
	t.Logf("resumed apply in %s, per phase:\n%s", resumed.Round(100*time.Millisecond), PhaseTable(evs))
	t.Logf("resumed apply's steps:\n%s", stepDurations(evs, "kube/etcd-snapshot", "kube/upgrade"))
	for id, want := range map[string]string{"cluster/kube/etcd-snapshot": "unchanged", "h1/kube/upgrade": "unchanged", "h2/kube/upgrade": "changed", "h3/kube/upgrade": "changed"} {
		for _, ev := range evs {
			if ev.Step == id && ev.Type == "done" && ev.Status != want {
				t.Errorf("resumed %s: %s, want %s", id, ev.Status, want)
			}
		}
	}
	t.Logf("requests while the stopped apply ran: %d sent, %d failed; per node: %s", total1, failed1, byNode1)
	t.Logf("requests during the whole roll (both applies, %s): %d sent, %d failed (%.2f%%); per node: %s",
		time.Since(load.started).Round(time.Second), total, failed, 100*float64(failed)/float64(max(total, 1)), byNode)
	for _, s := range samples {
		t.Logf("  failed: %s", s)
	}
	if total < 100 {
		t.Errorf("only %d requests were sent during the roll", total)
	}
	// The bound only catches an outage (a minute without answers is about
	// 20% of a five-minute roll); the figures above are the measurement.
	if failed*20 > total {
		t.Errorf("%d of %d requests failed during the roll: the cluster did not keep serving", failed, total)
	}

	c.checkVersions("v1.37.2")
	var v struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "version", "-o", "json")), &v); err != nil || v.ServerVersion.GitVersion != "v1.37.2" {
		t.Errorf("API server version %q (%v), want v1.37.2", v.ServerVersion.GitVersion, err)
	}
	c.verify(1, 3)
	if got := e.sh(1, "cd /var/lib/clusterctl/backups && ls etcd-before-v1.37.2-*.db | wc -l && sha256sum -c --status etcd-before-v1.37.2-*.db.sha256 && echo sha256-ok && stat -c %a ."); !strings.HasPrefix(got, "1\nsha256-ok\n700") {
		t.Errorf("etcd snapshot on h1: %q, want one snapshot whose sha256 matches, in a 0700 directory", got)
	}
	if got := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "nodes", "-o", "jsonpath={.items[*].spec.unschedulable}{.items[*].metadata.annotations.clusterctl\\.dev/upgrade-cordoned}"); strings.TrimSpace(got) != "" {
		t.Errorf("nodes left cordoned: %q", got)
	}

	out = e.clusterctl(0, "apply", "--yes", e.spec)
	mustContain(t, out, "No changes.", "\n0 changed, ", " 0 failed, ")
	e.clusterctl(0, "plan", "--detailed-exitcode", e.spec)
	c.phase("second apply (no changes)")

	// A downgrade is refused by plan, with the skew policy's words.
	setVersion(t, e, "1.36.3")
	out = e.clusterctl(1, "plan", e.spec)
	mustContain(t, out, "downgrade 1.37.2 -> 1.36.3 is not supported", "kube/upgrade", "kube/etcd-snapshot")
	t.Logf("plan of a downgrade:\n%s", lastLines(out, 8))
	setVersion(t, e, "1.37.2")
	c.phase("downgrade refused by plan")
	c.report()
}

// withoutRuntime is a Kubernetes build without its container runtime
// (containerd, its shim, ctr, runc, the CNI plugins), hard-linked into a
// temporary directory: a bundle of it leaves the runtime to packages.
func withoutRuntime(t *testing.T, art string) string {
	t.Helper()
	dir := t.TempDir()
	runtime := map[string]bool{"containerd": true, "containerd-shim-runc-v2": true, "ctr": true, "runc": true}
	for _, sub := range []string{"bin", "images"} {
		entries, err := os.ReadDir(filepath.Join(art, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !runtime[e.Name()] || sub != "bin" {
				linkOrCopy(t, filepath.Join(art, sub, e.Name()), filepath.Join(dir, sub, e.Name()))
			}
		}
	}
	return dir
}

// checkRuntimes checks every node's container runtime version starts with prefix.
func (c *cluster) checkRuntimes(prefix string) {
	c.t.Helper()
	got := Kubectl(c.t, c.kubectl, c.kubeconfig, "e2e", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.containerRuntimeVersion}{"\n"}{end}`)
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if f := strings.Fields(l); len(f) != 2 || !strings.HasPrefix(f[1], prefix) {
			c.t.Errorf("node runtime %q, want %s*", l, prefix)
		}
	}
	c.t.Logf("node runtimes:\n%s", got)
}

// setVersion rewrites kubernetes.version in the inventory newEnv wrote.
func setVersion(t *testing.T, e *env, v string) {
	t.Helper()
	p := filepath.Join(e.spec, "cluster.cue")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "kubernetes: {version: \"")
	if i < 0 {
		t.Fatalf("no kubernetes.version in %s:\n%s", p, s)
	}
	j := i + len("kubernetes: {version: \"")
	k := strings.IndexByte(s[j:], '"')
	s = s[:j] + v + s[j+k:]
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func failedSteps(t *testing.T, evs []ApplyEvent) {
	t.Helper()
	for _, ev := range evs {
		if ev.Type == "failed" || ev.Type == "skipped" {
			t.Errorf("%s %s: %s", ev.Step, ev.Type, ev.Error)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// inOrder checks that each want appears in out after the one before.
func inOrder(t *testing.T, out string, wants ...string) {
	t.Helper()
	rest := out
	for _, w := range wants {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("output lacks %q after the earlier parts (or out of order):\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
}

// stepDurations lists the finished steps of the given kinds with their
// durations, in the order they finished.
func stepDurations(evs []ApplyEvent, kinds ...string) string {
	var b strings.Builder
	for _, e := range evs {
		if e.Type != "done" && e.Type != "failed" {
			continue
		}
		for _, k := range kinds {
			if Phase(e.Step) == k {
				fmt.Fprintf(&b, "  %-28s %-9s %7.1fs  (done at %s)\n", e.Step, e.Status, e.DurationMS/1000, e.Time.Format("15:04:05"))
			}
		}
	}
	return b.String()
}

// checkVersions: every node Ready with its kubelet at version.
func (c *cluster) checkVersions(version string) {
	t := c.t
	out := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "nodes", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("nodes:\n%s", out)
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) != 3 || f[1] != version || f[2] != "True" {
			t.Errorf("node %q, want Ready at %s", l, version)
		}
	}
	t.Logf("nodes:\n%s", out)
}

// load sends GET http://NET.1N:30080/ every 100 ms, round-robin over the
// three nodes, each on a new connection (so every request goes through
// kube-proxy's rules of the node it reaches) with a 2 s timeout.
type load struct {
	mu       sync.Mutex
	total    int
	failed   int
	perNode  map[string][2]int // sent, failed
	samples  []string
	cancel   context.CancelFunc
	finished chan struct{}
	started  time.Time
}

func startLoad(net string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{perNode: map[string][2]int{}, cancel: cancel, finished: make(chan struct{}), started: time.Now()}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(l.finished)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var wg sync.WaitGroup
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case <-tick.C:
			}
			node := fmt.Sprintf("h%d", i%3+1)
			url := fmt.Sprintf("http://%s.1%d:30080/", net, i%3+1)
			wg.Add(1)
			go func() { // a slow answer does not hold up the next request
				defer wg.Done()
				err := get(client, url)
				l.mu.Lock()
				defer l.mu.Unlock()
				n := l.perNode[node]
				n[0]++
				l.total++
				if err != nil {
					n[1]++
					l.failed++
					if len(l.samples) < 30 {
						l.samples = append(l.samples, time.Now().Format("15:04:05.000")+" "+node+": "+err.Error())
					}
				}
				l.perNode[node] = n
			}()
		}
	}()
	return l
}

func get(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "hello from hello-") {
		return fmt.Errorf("%s: %d %q", url, resp.StatusCode, body)
	}
	return nil
}

// stop ends the load and returns its counts.
func (l *load) stop() (total, failed int, perNode string, samples []string) {
	l.cancel()
	<-l.finished
	return l.counts()
}

// counts are the figures so far.
func (l *load) counts() (total, failed int, perNode string, samples []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.perNode))
	for n := range l.perNode {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d/%d failed", n, l.perNode[n][1], l.perNode[n][0]))
	}
	return l.total, l.failed, strings.Join(parts, ", "), l.samples
}
