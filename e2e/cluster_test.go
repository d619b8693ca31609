//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clusterSpec is the Kubernetes part of the e2e specs, beside the inventory
// (cluster.cue) and the bundle (bundle.cue) newEnv writes. NET is the
// hosts' /24.
const clusterSpec = `cluster: {
	kubernetes: {
		imageRepository: "registry.local/k8s" // as e2e/artifacts/build.sh names the images
		// Every test host's disk is this machine's shared disk: its fill level
		// (other clusters, caches) must not put the nodes under disk pressure
		// (two clusters at once went below the default 15% imagefs.available),
		// nor make the kubelets delete images the bundle imported (this disk
		// reads 84% used to the kubelet: coredns and pause were collected).
		kubelet: {
			evictionHard: {"imagefs.available": "2%", "nodefs.available": "2%"}
			imageGCHighThresholdPercent: 100
			imageGCLowThresholdPercent:  99
		}
	}
	network: cni: "flannel" // kube-proxy in nftables mode, the default (TestScale runs iptables; this kernel has no ip_vs)
	manifests: hello: {path: "manifests/hello.yaml", namespace: "default"}
	health: {
		timeout: "5m"
		probes: {
			"hello-h1": {url: "http://NET.11:30080/"}
			"hello-h2": {url: "http://NET.12:30080/"}
			"hello-h3": {url: "http://NET.13:30080/"}
		}
	}
}`

func skipWithoutKubernetes(t *testing.T) {
	if os.Getenv("CLUSTERCTL_E2E_K8S") == "0" {
		t.Skip("CLUSTERCTL_E2E_K8S=0: the Kubernetes end-to-end tests are disabled (they need e2e/artifacts/build.sh's Kubernetes build, 20-30 min cold, and about 2 GiB of memory per cluster)")
	}
}

// TestCluster: three bare hosts become a healthy kubeadm cluster (1 control
// plane, 2 workers, flannel, the hello workload on NodePort 30080) through
// one `clusterctl apply` from an air-gapped bundle, checked with kubectl
// through the merged kubeconfig context, with curl from this machine and
// on the hosts themselves, pod to pod across nodes, and with `clusterctl
// status` and `kubeconfig --print`; a second apply changes nothing,
// quickly; a worker whose kubelet stops is named by status, until it is
// back; a worker whose join broke half-way is repaired by the next apply.
// Peak memory is sampled throughout.
func TestCluster(t *testing.T) {
	skipWithoutKubernetes(t)
	t.Parallel() // each scenario has its own hosts, net and kubeconfig
	c := startCluster(t, "172.31.10", "ct10", "root", nil)
	mem := c.watchMemory()
	c.verify(1, 3)
	c.checkContext()
	c.checkKubeconfigPrint()
	c.checkPodToPod()
	c.checkProxyMode("nftables")
	c.checkStatusHealthy()
	c.secondApply()
	c.checkStatusNodeLost(3)
	c.checkHalfJoinRepair(3)
	mem.finish()
	c.report()
}

// TestClusterHA (3 control planes + 1 worker behind the node-local API
// server proxy, with a control plane power-cut and booted again) is in
// ha_test.go.

// cluster is one e2e cluster and what the checks need.
type cluster struct {
	t                   *testing.T
	e                   *env
	kubectl, kubeconfig string
	timings             [][2]string
	mark                time.Time
}

func (c *cluster) phase(name string) time.Duration {
	d := time.Since(c.mark)
	c.timings = append(c.timings, [2]string{name, d.Round(100 * time.Millisecond).String()})
	c.mark = time.Now()
	return d
}

// startCluster builds (or finds) the artifacts, boots three hosts on net,
// writes the spec (the inventory as rewrite makes it, when given, from an
// inventory of three control planes), bundles and applies it, failing on
// any failed step; it logs the per-phase table.
func startCluster(t *testing.T, net, prefix, user string, rewrite func(string) string) *cluster {
	cps := 1
	if rewrite != nil {
		cps = 3
	}
	return startClusterOf(t, 3, cps, net, prefix, user, rewrite)
}

// startClusterOf is startCluster with n hosts (Debian 13), the first cps
// of them control planes.
func startClusterOf(t *testing.T, n, cps int, net, prefix, user string, rewrite func(string) string) *cluster {
	c := &cluster{t: t, mark: time.Now()}
	art := BuildArtifacts(t)
	c.phase("artifacts (e2e/artifacts/build.sh)")
	c.kubectl = filepath.Join(art, "bin", "kubectl")

	e := newEnv(t, n, net, prefix, user)
	c.e = e
	if rewrite != nil || cps != 1 {
		inv, err := e.hosts.Inventory(testhostsInventory(user, cps))
		if err != nil {
			t.Fatal(err)
		}
		spec := string(inv)
		if rewrite != nil {
			spec = rewrite(spec)
		}
		if err := os.WriteFile(filepath.Join(e.spec, "cluster.cue"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.writeSpec("kubernetes.cue", strings.ReplaceAll(clusterSpec, "NET", net))
	CopyFile(t, "../inventories/local/manifests/hello.yaml", filepath.Join(e.spec, "manifests", "hello.yaml"))
	e.clusterctl(0, "bundle", e.spec, "--from", filepath.Join(e.spec, "artifacts"), "--from", art)
	c.phase(fmt.Sprintf("%d hosts booted, node debs, bundle", n))

	c.kubeconfig = filepath.Join(t.TempDir(), "kube", "config")
	c.e.kubeconfig = c.kubeconfig
	c.freshApply("apply: bare hosts -> healthy cluster")
	return c
}

// freshApply applies the spec with JSON events, fails on any failed or
// skipped step, and logs the per-phase table under the phase name.
func (c *cluster) freshApply(phase string) {
	t := c.t
	out := c.e.clusterctl(0, "apply", "--yes", "-o", "json", c.e.spec)
	d := c.phase(phase)
	evs := ApplyEvents(out)
	for _, ev := range evs {
		if ev.Type == "failed" || ev.Type == "skipped" {
			t.Errorf("%s %s: %s", ev.Step, ev.Type, ev.Error)
		}
	}
	t.Logf("fresh apply in %s, per phase:\n%s", d.Round(100*time.Millisecond), PhaseTable(evs))
	if t.Failed() {
		t.FailNow()
	}
}

// verify checks the cluster from outside: every node Ready at v1.37.2,
// the control plane's and the system's pods running, flannel on every
// node, the workload on the NodePort of every node; and on the hosts: the
// kubelets run, no kubeadm config (with its secrets) is left, no join token.
func (c *cluster) verify(controlPlanes, hosts int) {
	t := c.t
	var nodes struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
				NodeInfo   struct {
					KubeletVersion string `json:"kubeletVersion"`
				} `json:"nodeInfo"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "nodes", "-o", "json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != hosts {
		t.Fatalf("%d nodes, want %d", len(nodes.Items), hosts)
	}
	for _, n := range nodes.Items {
		ready := false
		for _, cond := range n.Status.Conditions {
			ready = ready || cond.Type == "Ready" && cond.Status == "True"
		}
		if !ready || n.Status.NodeInfo.KubeletVersion != "v1.37.2" {
			t.Errorf("node %s: ready %v, kubelet %s; want Ready at v1.37.2", n.Metadata.Name, ready, n.Status.NodeInfo.KubeletVersion)
		}
	}
	pods := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "pods", "-n", "kube-system", "--no-headers",
		"-o", "custom-columns=NAME:.metadata.name,PHASE:.status.phase,READY:.status.containerStatuses[*].ready")
	want := map[string]int{"etcd-": controlPlanes, "kube-apiserver-": controlPlanes, "kube-controller-manager-": controlPlanes,
		"kube-scheduler-": controlPlanes, "kube-proxy-": hosts, "coredns-": 2}
	got := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(pods), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || f[1] != "Running" || strings.Contains(f[2], "false") {
			t.Errorf("kube-system pod not running and ready: %s", l)
			continue
		}
		for prefix := range want {
			if strings.HasPrefix(f[0], prefix) {
				got[prefix]++
			}
		}
	}
	for prefix, n := range want {
		if got[prefix] != n {
			t.Errorf("%d kube-system pods %s* running, want %d:\n%s", got[prefix], prefix, n, pods)
		}
	}
	if n := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "daemonset", "-n", "kube-flannel", "kube-flannel-ds", "-o", "jsonpath={.status.numberReady}"); n != fmt.Sprint(hosts) {
		t.Errorf("flannel ready on %s nodes, want %d", n, hosts)
	}

	ctx := context.Background()
	for _, h := range c.e.hosts.Hosts {
		url := fmt.Sprintf("http://%s:30080/", h.Addr)
		Eventually(t, "hello on "+url, time.Minute, func() error {
			body, err := Curl(ctx, url)
			if err == nil && !strings.HasPrefix(body, "hello from hello-") {
				err = fmt.Errorf("%s answered %q", url, body)
			}
			return err
		})
	}

	for _, h := range c.e.hosts.Hosts {
		if got := c.e.sh(h.Index, "systemctl is-active kubelet"); got != "active" {
			t.Errorf("%s: kubelet %s", h.Name, got)
		}
		if got := c.e.sh(h.Index, "ls -A /etc/kubernetes/clusterctl | wc -l"); got != "0" {
			t.Errorf("%s: %s files left in /etc/kubernetes/clusterctl", h.Name, got)
		}
		if got := c.e.sh(h.Index, "ls /var/log/clusterctl/"); !strings.Contains(got, "kubeadm-") {
			t.Errorf("%s: no kubeadm log in /var/log/clusterctl: %q", h.Name, got)
		}
	}
	if got := c.e.sh(1, "kubeadm token list | grep -c 'clusterctl join of' || true"); got != "0" {
		t.Errorf("%s join tokens left on h1", got)
	}
	c.phase("checks (kubectl, curl, hosts)")
}

// secondApply: nothing to do, quickly, and plan agrees.
func (c *cluster) secondApply() {
	out := c.e.clusterctl(0, "apply", "--yes", c.e.spec)
	d := c.phase("second apply (no changes)")
	mustContain(c.t, out, "No changes.", "\n0 changed, ", " 0 failed, ")
	c.t.Logf("second apply (no changes): %s", d.Round(100*time.Millisecond)) // a figure, not an assertion: the machine is shared
	c.e.clusterctl(0, "plan", "--detailed-exitcode", c.e.spec)
}

func (c *cluster) report() {
	var b strings.Builder
	for _, r := range c.timings {
		fmt.Fprintf(&b, "  %-40s %10s\n", r[0], r[1])
	}
	c.t.Logf("timings:\n%s", b.String())
}
