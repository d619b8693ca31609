//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// scaleSpec is TestScale's Kubernetes part: probes only on the hosts that
// stay in the cluster the whole time (h1 and h3; h2 leaves, h4 joins).
const scaleSpec = `cluster: {
	kubernetes: {
		imageRepository: "registry.local/k8s"
		kubelet: {
			evictionHard: {"imagefs.available": "2%", "nodefs.available": "2%"}
			imageGCHighThresholdPercent: 100
			imageGCLowThresholdPercent:  99
		} // the shared disk, as clusterSpec says
	}
	network: {cni: "flannel", kubeProxyMode: "iptables"} // the other scenarios run nftables
	manifests: hello: {path: "manifests/hello.yaml", namespace: "default"}
	health: {
		timeout: "5m"
		probes: {
			"hello-h1": {url: "http://NET.11:30080/"}
			"hello-h3": {url: "http://NET.13:30080/"}
		}
	}
}`

// TestScale: the cluster's record of its last apply and its lock, then
// scaling up and down through the spec in git.
//   - after an apply, kube-system/clusterctl-state records the spec digest,
//     the git commit (clean), versions and hosts; plan reports it;
//   - a stale lock (a dead holder) refuses apply, naming its ID and
//     force-unlock; force-unlock releases it; a live apply's lock refuses a
//     second apply, naming the holder;
//   - a host added to the spec is prepared and joined, and nothing else on
//     the other hosts changes but their /etc/hosts;
//   - a host removed from the spec is left alone (plan warns, apply
//     refuses) until named with --remove-hosts; then it is drained,
//     deleted, reset, and the workload keeps answering; the record
//     forgets it.
func TestScale(t *testing.T) {
	skipWithoutKubernetes(t)
	t.Parallel() // each scenario has its own hosts, net and kubeconfig
	const net = "172.31.19"
	art := BuildArtifacts(t)
	kubectl := filepath.Join(art, "bin", "kubectl")
	e := newEnv(t, 4, net, "ct19", "root")
	inv, err := os.ReadFile(filepath.Join(e.spec, "cluster.cue"))
	if err != nil {
		t.Fatal(err)
	}
	full := string(inv)
	h4Line := regexp.MustCompile(`(?m)^\s*h4: \{[^\n]*\}\n`)
	h2Line := regexp.MustCompile(`(?m)^\s*h2: \{[^\n]*\}\n`)
	if !h4Line.MatchString(full) || !h2Line.MatchString(full) {
		t.Fatalf("inventory has no one-line h2/h4 entries:\n%s", full)
	}
	writeInv := func(s string) {
		if err := os.WriteFile(filepath.Join(e.spec, "cluster.cue"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeInv(h4Line.ReplaceAllString(full, ""))
	e.writeSpec("kubernetes.cue", strings.ReplaceAll(scaleSpec, "NET", net))
	CopyFile(t, "../inventories/local/manifests/hello.yaml", filepath.Join(e.spec, "manifests", "hello.yaml"))
	e.clusterctl(0, "bundle", e.spec, "--from", filepath.Join(e.spec, "artifacts"), "--from", art)
	kubeconfig := filepath.Join(t.TempDir(), "kube", "config")
	e.kubeconfig = kubeconfig
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", e.spec, "-c", "user.name=e2e", "-c", "user.email=e2e@example.org"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	if err := os.WriteFile(filepath.Join(e.spec, ".gitignore"), []byte("artifacts/\nbundle/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", ".")
	git("commit", "-q", "-m", "three hosts")

	start := time.Now()
	e.clusterctl(0, "apply", "--yes", e.spec)
	t.Logf("fresh apply (3 hosts): %s", time.Since(start).Round(time.Second))

	// The record.
	rec := record(t, kubectl, kubeconfig)
	if rec.Git == nil || rec.Git.Commit != git("rev-parse", "HEAD") || rec.Git.Dirty {
		t.Errorf("recorded git %+v, want HEAD %s, clean", rec.Git, git("rev-parse", "HEAD"))
	}
	if got := hostNames(rec); got != "h1 h2 h3" || rec.KubernetesVersion != "1.37.2" || rec.Distribution != "kubeadm" || len(rec.SpecDigest) != 64 {
		t.Errorf("record %+v", rec)
	}
	out := e.clusterctl(0, "plan", e.spec)
	mustContain(t, out, "Last applied ", "from commit "+rec.Git.Commit[:12], "The spec is unchanged since.")
	out = e.clusterctl(0, "status", e.spec)
	mustContain(t, out, "from commit "+rec.Git.Commit[:12], "the spec here is the one applied")

	// A dead holder's lock: refused as stale, released by ID.
	dead := `{"id":"deadbeefdeadbeef","owner":"ci@runner-7","pid":4242,"command":"apply","host":"h1","started":"2026-01-01T00:00:00Z","heartbeat":"2026-01-01T00:00:00Z"}`
	// The heartbeat is the file's modification time: stopped on New Year's Day.
	e.sh(1, "mkdir -p /var/lib/clusterctl && printf '%s\\n' '"+dead+"' > /var/lib/clusterctl/lock.json && touch -d @1767225600 /var/lib/clusterctl/lock.json")
	out = e.clusterctl(1, "apply", "--yes", e.spec)
	mustContain(t, out, "the cluster is locked by ci@runner-7 (pid 4242", "STALE", "clusterctl force-unlock deadbeefdeadbeef")
	out = e.clusterctl(0, "status", e.spec)
	mustContain(t, out, "Locked by ci@runner-7 (pid 4242", "lock ID deadbeefdeadbeef (STALE")
	e.clusterctl(1, "force-unlock", "0123456789abcdef", e.spec)
	out = e.clusterctl(0, "force-unlock", "deadbeefdeadbeef", e.spec)
	mustContain(t, out, "Released lock deadbeefdeadbeef held by ci@runner-7")
	e.clusterctl(0, "apply", "--yes", e.spec)

	// Scale up: h4 joins. The plan touches h4, and the others' /etc/hosts.
	writeInv(full)
	git("commit", "-q", "-am", "add h4")
	out = e.clusterctl(0, "plan", e.spec)
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || (f[0] != "+" && f[0] != "~" && f[0] != "-") {
			continue
		}
		if !strings.HasPrefix(f[1], "h4/") && !strings.HasSuffix(f[1], "/hostprep/etc-hosts") {
			t.Errorf("adding h4 changes %s", f[1])
		}
	}
	mustContain(t, out, "The spec changed since", "+  h4/kube/join-worker")

	// While that apply runs, a second one is refused, naming the first.
	cmd := e.command("apply", "--yes", e.spec)
	var first bytes.Buffer
	cmd.Stdout, cmd.Stderr = &first, &first
	start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, "the first apply's lock on h1", time.Minute, func() error {
		if e.sh(1, "test -e /var/lib/clusterctl/lock.json && echo held || true") != "held" {
			return fmt.Errorf("no lock yet")
		}
		return nil
	})
	out = e.clusterctl(1, "apply", "--yes", e.spec)
	mustContain(t, out, "the cluster is locked by ", fmt.Sprintf("(pid %d, \"apply\")", cmd.Process.Pid), "wait for it to finish")
	// The holder notes which record it planned against (its sha256).
	Eventually(t, "the record's digest in the lock", time.Minute, func() error {
		if l := e.sh(1, "cat /var/lib/clusterctl/lock.json 2>/dev/null || true"); !regexp.MustCompile(`"record":"[0-9a-f]{64}"`).MatchString(l) {
			return fmt.Errorf("lock file: %s", l)
		}
		return nil
	})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("scale-up apply: %v\n%s", err, first.String())
	}
	t.Logf("scale up (h4 joins): %s", time.Since(start).Round(time.Second))
	if got := e.sh(1, "test -e /var/lib/clusterctl/lock.json && echo held || echo free"); got != "free" {
		t.Errorf("lock after apply: %s", got)
	}
	if n := Kubectl(t, kubectl, kubeconfig, "e2e", "get", "nodes", "--no-headers", "-o", "name"); strings.Count(n, "node/") != 4 {
		t.Fatalf("nodes after scale up:\n%s", n)
	}
	if got := hostNames(record(t, kubectl, kubeconfig)); got != "h1 h2 h3 h4" {
		t.Errorf("recorded hosts %q after scale up", got)
	}

	// Scale down: h2 leaves.
	writeInv(h2Line.ReplaceAllString(full, ""))
	git("commit", "-q", "-am", "remove h2")
	// Only the record says h2 was ever in the cluster: its removal waits
	// for the operator to name it.
	out = e.clusterctl(0, "plan", e.spec)
	mustContain(t, out, "warning: host h2 left the spec", "pass --remove-hosts h2")
	if strings.Contains(out, "h2/remove/drain") || strings.Contains(out, "h2/kube/reset") {
		t.Errorf("an unconfirmed removal is planned:\n%s", out)
	}
	out = e.clusterctl(1, "apply", "--yes", e.spec)
	mustContain(t, out, "apply refused: host h2 left the spec", "pass --remove-hosts h2")
	out = e.clusterctl(0, "plan", "--remove-hosts", "h2", e.spec)
	mustContain(t, out, "-  h2/remove/drain", "-  h2/remove/node", "h2/kube/reset")
	if strings.Contains(out, "h2/remove/etcd-member") {
		t.Error("a worker's removal plans an etcd member removal")
	}
	start = time.Now()
	e.clusterctl(0, "apply", "--yes", "--remove-hosts", "h2", e.spec)
	t.Logf("scale down (h2 leaves): %s", time.Since(start).Round(time.Second))
	if n := Kubectl(t, kubectl, kubeconfig, "e2e", "get", "nodes", "--no-headers", "-o", "name"); strings.Contains(n, "node/h2") || strings.Count(n, "node/") != 3 {
		t.Errorf("nodes after scale down:\n%s", n)
	}
	if got := e.sh(2, "systemctl is-active kubelet || true; ls /etc/kubernetes/manifests 2>/dev/null | wc -l"); got != "inactive\n0" {
		t.Errorf("h2 after removal: kubelet and static pods: %q", got)
	}
	if got := e.sh(2, "systemctl is-active containerd"); got != "active" {
		t.Errorf("h2 after removal: containerd %s, want a prepared host", got)
	}
	if got := hostNames(record(t, kubectl, kubeconfig)); got != "h1 h3 h4" {
		t.Errorf("recorded hosts %q after scale down", got)
	}
	ctx := context.Background()
	for _, addr := range []string{net + ".11", net + ".13", net + ".14"} {
		if body, err := Curl(ctx, "http://"+addr+":30080/"); err != nil || !strings.HasPrefix(body, "hello from") {
			t.Errorf("hello on %s after scale down: %q %v", addr, body, err)
		}
	}
	out = e.clusterctl(0, "apply", "--yes", e.spec)
	mustContain(t, out, "No changes.")
}

type stateRecord struct {
	SpecDigest        string `json:"specDigest"`
	Distribution      string `json:"distribution"`
	KubernetesVersion string `json:"kubernetesVersion"`
	Git               *struct {
		Commit string `json:"commit"`
		Dirty  bool   `json:"dirty"`
	} `json:"git"`
	Hosts []struct {
		Name string `json:"name"`
	} `json:"hosts"`
}

func record(t *testing.T, kubectl, kubeconfig string) stateRecord {
	t.Helper()
	raw := Kubectl(t, kubectl, kubeconfig, "e2e", "get", "configmap", "-n", "kube-system", "clusterctl-state", "-o", "jsonpath={.data.state\\.json}")
	var r stateRecord
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("state record: %v\n%s", err, raw)
	}
	return r
}

func hostNames(r stateRecord) string {
	var n []string
	for _, h := range r.Hosts {
		n = append(n, h.Name)
	}
	return strings.Join(n, " ")
}
