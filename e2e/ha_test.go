//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// nodeLocalEndpoint is where every node reaches the API through its own
// haproxy (the spec's default port for mode "node-local").
const nodeLocalEndpoint = "https://127.0.0.1:7443"

// TestClusterHA: three control planes (stacked etcd, joined one by one with
// uploaded certificates, also running workloads) and a worker, each node
// reaching the API through its own haproxy on 127.0.0.1:7443 (endpoint mode
// "node-local"), provisioned as the sudo user "tester". Then one control
// plane loses power: the API keeps answering through every survivor's
// proxy and the operator's context, the surviving nodes stay Ready, the
// lost one goes NotReady, the workload answers on the survivors; booted
// again, `clusterctl apply` converges with changes on that host only and a
// second apply changes nothing. Last, the first control plane (where the
// cluster-wide steps and the operator's context point) is cut too, and the
// nodes still reach the API through their proxies.
func TestClusterHA(t *testing.T) {
	skipWithoutKubernetes(t)
	t.Parallel() // each scenario has its own hosts, net and kubeconfig
	c := startClusterOf(t, 4, 3, "172.31.13", "ct13", "tester", func(inv string) string {
		return strings.ReplaceAll(inv, `roles: ["control-plane"]`, `roles: ["control-plane", "worker"]`)
	})
	c.verify(3, 4)
	etcd := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "pods", "-n", "kube-system", "-l", "component=etcd",
		"-o", "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{'\\n'}{end}")
	if strings.Count(etcd, " Running") != 3 {
		t.Errorf("etcd members running:\n%s", etcd)
	}
	if taints := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "nodes", "h1", "h2", "h3", "-o", "jsonpath={.items[*].spec.taints}"); strings.TrimSpace(taints) != "" {
		t.Errorf("control planes that are also workers have taints: %s", taints)
	}
	c.verifyNodeLocal()
	c.phase("node-local proxy checks")
	c.secondApply()

	c.powerCut(2)
	c.bootAndConverge(2)
	c.secondApply()

	c.cutFirst()
	c.report()
}

// verifyNodeLocal: haproxy runs on every node with all three API servers
// up behind it, kubeadm pointed the nodes' kubeconfigs and kube-proxy at
// it, and the API servers' certificates name the loopback address.
func (c *cluster) verifyNodeLocal() {
	t := c.t
	for _, h := range c.e.hosts.Hosts {
		if got := c.e.sh(h.Index, "systemctl is-active haproxy; systemctl is-enabled haproxy; haproxy -c -q -f /etc/haproxy/haproxy.cfg && echo valid"); got != "active\nenabled\nvalid" {
			t.Errorf("%s: haproxy: %q", h.Name, got)
		}
		Eventually(t, h.Name+": all API servers up behind haproxy", time.Minute, func() error {
			return c.wantBackends(h.Index, map[string]string{"h1": "UP", "h2": "UP", "h3": "UP"})
		})
	}
	if got := c.e.sh(4, "grep -o 'server: .*' /etc/kubernetes/kubelet.conf"); got != "server: "+nodeLocalEndpoint {
		t.Errorf("worker kubelet.conf: %q, want server: %s", got, nodeLocalEndpoint)
	}
	if got := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "configmap", "-n", "kube-system", "kube-proxy", "-o", "jsonpath={.data.kubeconfig\\.conf}"); !strings.Contains(got, "server: "+nodeLocalEndpoint) {
		t.Errorf("kube-proxy's kubeconfig does not use the node-local endpoint:\n%s", got)
	}
	for i := 1; i <= 3; i++ {
		if got := c.e.sh(i, "openssl x509 -in /etc/kubernetes/pki/apiserver.crt -noout -ext subjectAltName"); !strings.Contains(got, "IP Address:127.0.0.1") || !strings.Contains(got, "DNS:localhost") {
			t.Errorf("h%d: API server certificate lacks the loopback names: %s", i, got)
		}
	}
}

// backends reads haproxy's view of the API servers on host i (its stats
// socket): server name -> UP, DOWN, STARTING or STOPPING.
func (c *cluster) backends(i int) (map[string]string, error) {
	out, err := c.e.hosts.Exec(context.Background(), i, "echo 'show servers state kube-apiservers' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock")
	if err != nil {
		return nil, fmt.Errorf("h%d: haproxy stats: %v: %s", i, err, out)
	}
	states := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || strings.HasPrefix(l, "#") {
			continue
		}
		// be_id be_name srv_id srv_name srv_addr srv_op_state ...
		states[f[3]] = map[string]string{"0": "DOWN", "1": "STARTING", "2": "UP", "3": "STOPPING"}[f[5]]
	}
	return states, nil
}

func (c *cluster) wantBackends(i int, want map[string]string) error {
	got, err := c.backends(i)
	if err != nil {
		return err
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("h%d: haproxy sees %v, want %v", i, got, want)
	}
	return nil
}

// nodeStates is each node's Ready condition through the operator's context.
func (c *cluster) nodeStates() (map[string]string, error) {
	var nodes struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Status   struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	out, err := kubectlOut(c.kubectl, c.kubeconfig, "get", "nodes", "-o", "json")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		return nil, err
	}
	states := map[string]string{}
	for _, n := range nodes.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == "Ready" {
				states[n.Metadata.Name] = cond.Status
			}
		}
	}
	return states, nil
}

// nodesOn lists the nodes from host i through its proxy: all of them on a
// control plane, the worker's own on the worker (a kubelet may read no
// other node).
func (c *cluster) nodesOn(i int) error {
	args, want := "get nodes -o name", 4
	if i == 4 {
		args, want = "get node h4 -o name", 1
	}
	out, err := c.onNode(i, args)
	if err == nil && strings.Count(out, "node/") != want {
		err = fmt.Errorf("%d nodes, want %d: %s", strings.Count(out, "node/"), want, out)
	}
	if err != nil {
		return fmt.Errorf("h%d: kubectl %s through its proxy: %w: %s", i, args, err, out)
	}
	return nil
}

// onNode runs kubectl on host i through its node-local proxy: with the
// kubelet's own credentials on the worker, the admin's on a control plane
// (kubeadm's admin.conf names the endpoint too).
func (c *cluster) onNode(i int, args string) (string, error) {
	conf := "/etc/kubernetes/admin.conf"
	if i == 4 {
		conf = "/etc/kubernetes/kubelet.conf"
	}
	out, err := c.e.hosts.Exec(context.Background(), i, "kubectl --kubeconfig="+conf+" --request-timeout=10s "+args)
	return strings.TrimSpace(out), err
}

// apiProbe is one attempt to use the API right after a power cut.
type apiProbe struct {
	at      time.Duration // since the cut
	took    time.Duration
	failure string
}

// probeAPI asks the API from the worker through its proxy for d after a
// cut, and summarises: failures, the slowest answer, and when the last
// failure ended (the gap, if any). A request that reached the lost member
// in the second before its proxy marked it down fails (haproxy then cuts
// that member's sessions, so watches move at once); the last three
// requests must all succeed.
func (c *cluster) probeAPI(cut time.Time, d time.Duration) string {
	var probes []apiProbe
	for time.Since(cut) < d {
		t0 := time.Now()
		out, err := c.onNode(4, "get --raw=/readyz")
		p := apiProbe{at: t0.Sub(cut), took: time.Since(t0)}
		if err != nil || out != "ok" {
			p.failure = fmt.Sprintf("after %s: %v: %s", p.took.Round(10*time.Millisecond), err, lastLines(out, 2))
		}
		probes = append(probes, p)
		time.Sleep(500 * time.Millisecond)
	}
	for _, p := range probes[max(0, len(probes)-3):] {
		if p.failure != "" {
			c.t.Errorf("API through h4's proxy still failing %s after the cut: %s", p.at.Round(100*time.Millisecond), p.failure)
		}
	}
	var failed []string
	var slowest, gapEnd time.Duration
	for _, p := range probes {
		slowest = max(slowest, p.took)
		if p.failure != "" {
			failed = append(failed, fmt.Sprintf("at +%s: %s", p.at.Round(100*time.Millisecond), p.failure))
			gapEnd = p.at + p.took
		}
	}
	s := fmt.Sprintf("%d requests from h4 through 127.0.0.1:7443 in the first %s: %d failed, slowest %s",
		len(probes), d, len(failed), slowest.Round(10*time.Millisecond))
	if len(failed) > 0 {
		s += fmt.Sprintf(", API usable again from +%s on\n  %s", gapEnd.Round(100*time.Millisecond), strings.Join(failed, "\n  "))
	}
	return s
}

// powerCut cuts control plane i and checks what must survive it.
func (c *cluster) powerCut(i int) {
	t := c.t
	lost := fmt.Sprintf("h%d", i)
	if err := c.e.hosts.Kill(i); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Logf("power cut %s; API from the worker right after: %s", lost, c.probeAPI(cut, 20*time.Second))
	t.Logf("h4's haproxy after the cut:\n%s", c.e.sh(4, "journalctl -u haproxy --no-pager -n 8 -o short-precise"))

	// Every survivor's proxy marks the lost API server down.
	for _, h := range c.e.hosts.Hosts {
		if h.Index == i {
			continue
		}
		want := map[string]string{"h1": "UP", "h2": "UP", "h3": "UP"}
		want[lost] = "DOWN"
		Eventually(t, h.Name+": haproxy marks "+lost+" down", time.Minute, func() error { return c.wantBackends(h.Index, want) })
	}
	// The node controller marks the lost node NotReady (Unknown) after its
	// grace period; the others stay Ready throughout.
	Eventually(t, lost+" NotReady", 3*time.Minute, func() error {
		st, err := c.nodeStates()
		if err != nil {
			return err
		}
		if st[lost] == "True" {
			return fmt.Errorf("%s still Ready: %v", lost, st)
		}
		return nil
	})
	notReady := time.Since(cut)
	time.Sleep(10 * time.Second) // beyond the grace period for the survivors too
	st, err := c.nodeStates()
	if err != nil {
		t.Fatalf("operator's context after losing %s: %v", lost, err)
	}
	for n, ready := range st {
		if (n == lost) == (ready == "True") {
			t.Errorf("after losing %s: node %s Ready=%s (all: %v)", lost, n, ready, st)
		}
	}
	t.Logf("%s NotReady %s after the cut; nodes: %v", lost, notReady.Round(time.Second), st)

	// The API through each survivor's proxy, with etcd at 2 of 3 members:
	// reads, and a write (which needs the etcd quorum).
	for _, h := range c.e.hosts.Hosts {
		if h.Index == i {
			continue
		}
		if err := c.nodesOn(h.Index); err != nil {
			t.Error(err)
		}
	}
	if out, err := c.onNode(3, "get --raw=/readyz?verbose"); err != nil || !strings.Contains(out, "[+]etcd ok") {
		t.Errorf("h3: readyz: %v: %s", err, out)
	}
	if _, err := kubectlOut(c.kubectl, c.kubeconfig, "create", "configmap", "ha-write-"+lost, "-n", "default", "--from-literal=lost="+lost); err != nil {
		t.Errorf("write through the operator's context without %s: %v", lost, err)
	}
	// The workload answers on every surviving node's NodePort.
	ctx := context.Background()
	for _, h := range c.e.hosts.Hosts {
		if h.Index == i {
			continue
		}
		url := fmt.Sprintf("http://%s:30080/", h.Addr)
		Eventually(t, "hello on "+url+" without "+lost, 2*time.Minute, func() error {
			body, err := Curl(ctx, url)
			if err == nil && !strings.HasPrefix(body, "hello from hello-") {
				err = fmt.Errorf("%s answered %q", url, body)
			}
			return err
		})
	}
	// clusterctl status names exactly the lost member: its node (no SSH, not
	// Ready) and its etcd member; every other node and member is healthy.
	var rep struct {
		Healthy     bool   `json:"healthy"`
		CheckedFrom string `json:"checkedFrom"`
		Nodes       []struct {
			Name    string `json:"name"`
			Healthy bool   `json:"healthy"`
			SSH     string `json:"ssh"`
		} `json:"nodes"`
		Etcd struct {
			Members []struct {
				Node    string `json:"node"`
				Healthy bool   `json:"healthy"`
			} `json:"members"`
		} `json:"etcd"`
		Problems []string `json:"problems"`
	}
	out := c.e.clusterctl(1, "status", "-o", "json", c.e.spec)
	if err := json.NewDecoder(strings.NewReader(out[max(strings.Index(out, "{"), 0):])).Decode(&rep); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if rep.Healthy || rep.CheckedFrom == lost || rep.CheckedFrom == "" {
		t.Errorf("status after losing %s: healthy %v, looked from %q", lost, rep.Healthy, rep.CheckedFrom)
	}
	for _, n := range rep.Nodes {
		if (n.Name == lost) == n.Healthy || (n.Name == lost) != (n.SSH != "ok") {
			t.Errorf("status after losing %s: node %s healthy %v, ssh %s", lost, n.Name, n.Healthy, n.SSH)
		}
	}
	unhealthy := 0
	for _, m := range rep.Etcd.Members {
		if !m.Healthy {
			unhealthy++
			if m.Node != lost {
				t.Errorf("status after losing %s: etcd member of %s unhealthy", lost, m.Node)
			}
		}
	}
	if len(rep.Etcd.Members) != 3 || unhealthy != 1 {
		t.Errorf("status after losing %s: %d etcd members, %d unhealthy; want 3 and 1", lost, len(rep.Etcd.Members), unhealthy)
	}
	t.Logf("clusterctl status after losing %s: %q", lost, rep.Problems)
	c.phase("power cut " + lost + ": survivors checked")
}

// bootAndConverge boots host i again (with its disk, as after a power cut)
// and applies: the run may change only that host, and must end healthy.
func (c *cluster) bootAndConverge(i int) {
	t := c.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.e.hosts.Boot(ctx, i); err != nil {
		t.Fatal(err)
	}
	c.phase(fmt.Sprintf("boot h%d", i))
	out := c.e.clusterctl(0, "apply", "--yes", "-o", "json", c.e.spec)
	d := c.phase(fmt.Sprintf("apply after h%d came back", i))
	var changed []string
	for _, ev := range ApplyEvents(out) {
		switch {
		case ev.Type == "failed" || ev.Type == "skipped":
			t.Errorf("%s %s: %s", ev.Step, ev.Type, ev.Error)
		case ev.Type == "done" && ev.Status == "changed":
			changed = append(changed, ev.Step)
		}
	}
	sort.Strings(changed)
	t.Logf("apply after h%d came back: %s, %d changed steps: %v", i, d.Round(100*time.Millisecond), len(changed), changed)
	for _, s := range changed {
		if !strings.HasPrefix(s, fmt.Sprintf("h%d/", i)) {
			t.Errorf("apply after h%d came back changed %s (another host's step)", i, s)
		}
	}
	st, err := c.nodeStates()
	if err != nil {
		t.Fatal(err)
	}
	for n, ready := range st {
		if ready != "True" {
			t.Errorf("after the apply: node %s Ready=%s", n, ready)
		}
	}
	for _, h := range c.e.hosts.Hosts {
		Eventually(t, h.Name+": all API servers up behind haproxy again", time.Minute, func() error {
			return c.wantBackends(h.Index, map[string]string{"h1": "UP", "h2": "UP", "h3": "UP"})
		})
	}
}

// cutFirst cuts the first control plane: the nodes keep the API through
// their proxies; the operator's context (the first control plane's
// address: loopback is no address from outside) does not, by design.
func (c *cluster) cutFirst() {
	t := c.t
	if err := c.e.hosts.Kill(1); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Logf("power cut h1; API from the worker right after: %s", c.probeAPI(cut, 15*time.Second))
	for _, i := range []int{2, 3, 4} {
		Eventually(t, fmt.Sprintf("h%d: kubectl through its proxy without h1", i), time.Minute, func() error { return c.nodesOn(i) })
	}
	if out, err := c.onNode(2, "create configmap ha-write-h1 -n default --from-literal=lost=h1"); err != nil {
		t.Errorf("h2: write through its proxy without h1: %v: %s", err, out)
	}
	if _, err := kubectlOut(c.kubectl, c.kubeconfig, "get", "nodes"); err == nil {
		t.Errorf("the operator's context answered without h1: it should name h1's address (node-local has no outside address)")
	}
	c.phase("power cut h1: nodes keep the API")
}

// kubectlOut is Kubectl that returns its error instead of failing.
func kubectlOut(kubectl, kubeconfig string, args ...string) (string, error) {
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "--context", "e2e", "--request-timeout=10s"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, lastLines(errb.String(), 3))
	}
	return out.String(), nil
}
