//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The checks of `clusterctl status` and `clusterctl kubeconfig`, of the
// merged context, of pod-to-pod traffic across nodes, and the memory
// watch: what TestCluster adds to startCluster/verify.

// statusReport is what the checks read of `clusterctl status -o json`.
type statusReport struct {
	FormatVersion int    `json:"formatVersion"`
	Cluster       string `json:"cluster"`
	Healthy       bool   `json:"healthy"`
	CheckedFrom   string `json:"checkedFrom"`
	APIServer     struct {
		Status string `json:"status"`
	} `json:"apiServer"`
	Etcd struct {
		Status  string `json:"status"`
		Members []struct {
			Node    string `json:"node"`
			Healthy bool   `json:"healthy"`
		} `json:"members"`
	} `json:"etcd"`
	Nodes []struct {
		Name           string   `json:"name"`
		InSpec         bool     `json:"inSpec"`
		SSH            string   `json:"ssh"`
		Registered     bool     `json:"registered"`
		Ready          string   `json:"ready"`
		KubeletVersion string   `json:"kubeletVersion"`
		Roles          []string `json:"roles"`
		Healthy        bool     `json:"healthy"`
	} `json:"nodes"`
	Problems []string `json:"problems"`
}

// status runs `clusterctl status -o json` (with extra flags) and returns
// its exit code, report and stderr; stdout must be one JSON document.
func (c *cluster) status(extra ...string) (int, statusReport, string) {
	c.t.Helper()
	args := append([]string{"status", "-o", "json"}, extra...)
	cmd := c.e.command(append(args, c.e.spec)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("clusterctl status: %v", err)
	}
	var r statusReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		c.t.Fatalf("clusterctl status -o json (exit %d): not JSON: %v\n%s\n%s", code, err, out.String(), errb.String())
	}
	return code, r, errb.String()
}

// checkContext: the merged kubeconfig lists the cluster's context, and
// `clusterctl kubeconfig` finds it already up to date.
func (c *cluster) checkContext() {
	t := c.t
	out, err := exec.Command(c.kubectl, "--kubeconfig", c.kubeconfig, "config", "get-contexts", "-o", "name").Output()
	if err != nil {
		t.Fatalf("kubectl config get-contexts: %v", err)
	}
	if names := strings.Fields(string(out)); len(names) != 1 || names[0] != "e2e" {
		t.Errorf("kubectl config get-contexts -o name = %q, want the cluster's context e2e", names)
	}
	got := c.e.clusterctl(0, "kubeconfig", c.e.spec)
	mustContain(t, got, `Already up to date: context "e2e" (https://`+c.e.hosts.Hosts[0].Addr+`:6443, from h1) in `+c.kubeconfig)
	if st, err := os.Stat(c.kubeconfig); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("merged kubeconfig %v: want mode 0600 (%v)", st, err)
	}
}

// checkKubeconfigPrint: `clusterctl kubeconfig --print` is a kubeconfig
// kubectl uses as it is (its content holds credentials: never logged).
func (c *cluster) checkKubeconfigPrint() {
	t := c.t
	cmd := c.e.command("kubeconfig", "--print", c.e.spec)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("clusterctl kubeconfig --print: %v\n%s", err, errb.String())
	}
	if errb.Len() != 0 {
		t.Errorf("clusterctl kubeconfig --print wrote to stderr: %s", errb.String())
	}
	p := filepath.Join(t.TempDir(), "printed")
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes, err := exec.Command(c.kubectl, "--kubeconfig", p, "--request-timeout=20s", "get", "nodes", "-o", "name").CombinedOutput()
	if err != nil || strings.Count(string(nodes), "node/") != len(c.e.hosts.Hosts) {
		t.Errorf("kubectl with the printed kubeconfig: %v: %s", err, nodes)
	}
	cur, err := exec.Command(c.kubectl, "--kubeconfig", p, "config", "current-context").Output()
	if err != nil || strings.TrimSpace(string(cur)) != "e2e" {
		t.Errorf("printed kubeconfig's current context %q (%v), want e2e", cur, err)
	}
}

// kubectlErr runs kubectl through the merged context, returning its error
// instead of failing (for checks that retry).
func (c *cluster) kubectlErr(args ...string) (string, error) {
	cmd := exec.Command(c.kubectl, append([]string{"--kubeconfig", c.kubeconfig, "--context", "e2e", "--request-timeout=20s"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// checkPodToPod: a small pod on every node (pod network, not host
// network) serves its own name over HTTP and GETs, by pod IP, the pods of
// every other node (so every pair of nodes is crossed, wherever the
// scheduler put the hello replicas), every hello pod on another node, and
// the hello Service by its DNS name. The pods run the flannel image's
// busybox (httpd, wget; the image is on every node since flannel runs
// everywhere): the hello image holds only its server, and a new client
// image would change the artifacts' cache key. busybox 1.35's wget crashes
// with -T, so the bound is busybox timeout.
// checkProxyMode: kube-proxy runs in mode, as its ConfigMap says and, for
// nftables, as the table on every host shows (its services chain there).
func (c *cluster) checkProxyMode(mode string) {
	t := c.t
	cfg := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "configmap", "-n", "kube-system", "kube-proxy", "-o", "jsonpath={.data.config\\.conf}")
	if !strings.Contains(cfg, "mode: "+mode+"\n") {
		t.Errorf("kube-proxy ConfigMap does not say mode: %s:\n%s", mode, cfg)
	}
	if mode != "nftables" {
		return
	}
	for _, h := range c.e.hosts.Hosts {
		if got := c.e.sh(h.Index, `nft list chain ip kube-proxy services >/dev/null && echo services`); got != "services" {
			t.Errorf("%s: kube-proxy's nftables table (ip kube-proxy, its services chain): got %q", h.Name, got)
		}
	}
}

func (c *cluster) checkPodToPod() {
	t := c.t
	image := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "daemonset", "-n", "kube-flannel", "kube-flannel-ds",
		"-o", "jsonpath={.spec.template.spec.containers[0].image}")
	var manifest strings.Builder
	for _, h := range c.e.hosts.Hosts {
		fmt.Fprintf(&manifest, `---
apiVersion: v1
kind: Pod
metadata: {name: e2e-client-%s, namespace: default, labels: {app: e2e-client}}
spec:
  nodeName: %s
  tolerations: [{operator: Exists}]
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: %q
    imagePullPolicy: Never
    command: ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /tmp/www && /bin/busybox hostname > /tmp/www/index.html && exec /bin/busybox httpd -f -p 8080 -h /tmp/www"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
`, h.Name, h.Name, image)
	}
	p := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(p, []byte(manifest.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "apply", "-f", p)
	defer Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "delete", "pod", "-l", "app=e2e-client", "--wait=false")
	Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "wait", "--for=condition=Ready", "pod", "-l", "app=e2e-client", "--timeout=120s")

	type pod struct{ name, node, ip string }
	list := func(selector string) []pod {
		var pods []pod
		out := Kubectl(t, c.kubectl, c.kubeconfig, "e2e", "get", "pods", "-l", selector,
			"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}`)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) == 3 {
				pods = append(pods, pod{f[0], f[1], f[2]})
			}
		}
		return pods
	}
	clients, hello := list("app=e2e-client"), list("app=hello")
	if len(clients) != len(c.e.hosts.Hosts) {
		t.Fatalf("client pods %v, want one per node", clients)
	}
	get := func(from pod, url, want string) {
		Eventually(t, fmt.Sprintf("%s (on %s) -> %s", from.name, from.node, url), 30*time.Second, func() error {
			body, err := c.kubectlErr("exec", from.name, "--", "/bin/busybox", "timeout", "10", "/bin/busybox", "wget", "-q", "-O", "-", url)
			if err == nil && !strings.HasPrefix(body, want) {
				err = fmt.Errorf("answered %q, want %q...", body, want)
			}
			return err
		})
	}
	pairs := 0
	for _, from := range clients {
		for _, to := range append(append([]pod{}, clients...), hello...) {
			if to.node == from.node {
				continue
			}
			want := to.name + "\n" // a client's index.html
			if strings.HasPrefix(to.name, "hello-") {
				want = "hello from " + to.name + " "
			}
			get(from, "http://"+to.ip+":8080/", want)
			pairs++
		}
		get(from, "http://hello.default.svc.cluster.local/", "hello from hello-")
	}
	t.Logf("pod-to-pod across nodes: %d pairs answered (one pod per node, hello pods %v), and the hello Service by name from every node", pairs, hello)
	c.phase(fmt.Sprintf("pod-to-pod across nodes (%d pairs) + DNS", pairs))
}

// checkStatusHealthy: one look says healthy, exit 0, every node of the
// spec registered, Ready and reachable, etcd's members healthy.
func (c *cluster) checkStatusHealthy() {
	t := c.t
	start := time.Now()
	code, r, stderr := c.status()
	d := time.Since(start)
	if code != 0 || !r.Healthy || r.FormatVersion != 1 || r.Cluster != "e2e" || r.CheckedFrom != "h1" || r.APIServer.Status != "ok" || r.Etcd.Status != "ok" {
		t.Errorf("status: exit %d, %+v\n%s", code, r, stderr)
	}
	if len(r.Etcd.Members) != 1 || !r.Etcd.Members[0].Healthy || r.Etcd.Members[0].Node != "h1" {
		t.Errorf("etcd members: %+v", r.Etcd.Members)
	}
	if len(r.Nodes) != len(c.e.hosts.Hosts) {
		t.Errorf("status lists %d nodes, want %d", len(r.Nodes), len(c.e.hosts.Hosts))
	}
	for _, n := range r.Nodes {
		if !n.InSpec || n.SSH != "ok" || !n.Registered || n.Ready != "True" || n.KubeletVersion != "v1.37.2" || !n.Healthy {
			t.Errorf("node %+v", n)
		}
	}
	// The table too, once.
	text := c.e.clusterctl(0, "status", c.e.spec)
	mustContain(t, text, `Cluster "e2e": healthy, looked from h1.`, "etcd        ok (1 of 1 member healthy)")
	c.phase("status: one look, healthy")
	t.Logf("clusterctl status (one look, JSON): %s", d.Round(10*time.Millisecond))
}

// checkStatusNodeLost stops the kubelet on worker i: status must turn
// unhealthy naming that node (and no other) once the node controller
// notices (node-monitor-grace-period, about 50 s), then healthy again
// with --wait after the kubelet is back.
func (c *cluster) checkStatusNodeLost(i int) {
	t := c.t
	name := c.e.hosts.Hosts[i-1].Name
	c.e.sh(i, "systemctl stop kubelet")
	stopped := time.Now()
	var last statusReport
	var lastCode int
	Eventually(t, "status naming "+name+" after its kubelet stopped", 4*time.Minute, func() error {
		lastCode, last, _ = c.status()
		if lastCode == 0 || last.Healthy {
			return fmt.Errorf("still healthy (exit %d)", lastCode)
		}
		if !contains(last.Problems, "node "+name+": not Ready (NodeStatusUnknown)") {
			return fmt.Errorf("unhealthy without naming %s's readiness: %q", name, last.Problems)
		}
		return nil
	})
	t.Logf("status turned unhealthy %s after the kubelet on %s stopped (exit %d):\n  %s",
		time.Since(stopped).Round(time.Second), name, lastCode, strings.Join(last.Problems, "\n  "))
	if lastCode != 1 {
		t.Errorf("unhealthy status exit %d, want 1", lastCode)
	}
	for _, p := range last.Problems {
		for _, h := range c.e.hosts.Hosts {
			if h.Name != name && (strings.HasPrefix(p, "node "+h.Name+":") || strings.Contains(p, " on "+h.Name+":")) {
				t.Errorf("a problem names %s, whose kubelet runs: %s", h.Name, p)
			}
		}
	}
	for _, n := range last.Nodes {
		if (n.Name == name) == n.Healthy {
			t.Errorf("node %s healthy=%v", n.Name, n.Healthy)
		}
	}
	c.phase("status: kubelet of " + name + " stopped -> unhealthy")

	c.e.sh(i, "systemctl start kubelet")
	start := time.Now()
	code, r, stderr := c.status("--wait", "--timeout", "4m")
	if code != 0 || !r.Healthy {
		t.Errorf("status --wait after the kubelet on %s started: exit %d, problems %q\n%s", name, code, r.Problems, stderr)
	}
	t.Logf("status --wait: healthy again %s after the kubelet on %s started", time.Since(start).Round(time.Second), name)
	c.phase("status --wait: kubelet back -> healthy")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// memWatch samples memory every 2 s while the cluster runs: the machine's
// MemTotal-MemAvailable (shared with whatever else runs on it) and the sum
// of the test hosts' RSS (their memory cgroups' total_rss: every process
// of the cluster's hosts, kube and system alike).
type memWatch struct {
	c          *cluster
	stop, done chan struct{}
	mu         sync.Mutex
	machine    int64            // peak, bytes
	hosts      int64            // peak of the sum, bytes
	perHost    map[string]int64 // at the hosts' peak
	samples    int
}

func (c *cluster) watchMemory() *memWatch {
	m := &memWatch{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			m.sample()
			select {
			case <-m.stop:
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return m
}

func (m *memWatch) sample() {
	used := machineUsed()
	per := map[string]int64{}
	var sum int64
	for _, h := range m.c.e.hosts.Hosts {
		if rss, ok := cgroupRSS(m.c.e.hosts.Prefix + "-" + h.Name); ok {
			per[h.Name] = rss
			sum += rss
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
	m.machine = max(m.machine, used)
	if sum > m.hosts {
		m.hosts, m.perHost = sum, per
	}
}

// finish stops the watch and adds its peaks to the phase table.
func (m *memWatch) finish() {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	mib := func(b int64) string { return strconv.FormatInt(b>>20, 10) + " MiB" }
	m.c.timings = append(m.c.timings, [2]string{fmt.Sprintf("peak memory, machine (%d samples)", m.samples), mib(m.machine)})
	if m.hosts > 0 {
		var parts []string
		for _, h := range m.c.e.hosts.Hosts {
			parts = append(parts, h.Name+" "+mib(m.perHost[h.Name]))
		}
		m.c.timings = append(m.c.timings, [2]string{"peak RSS of the 3 hosts (" + strings.Join(parts, ", ") + ")", mib(m.hosts)})
	}
	m.c.t.Logf("peak memory: machine MemTotal-MemAvailable %s (shared with other runs on this machine); hosts' RSS %s %v",
		mib(m.machine), mib(m.hosts), m.perHost)
}

// machineUsed is MemTotal-MemAvailable from /proc/meminfo, in bytes.
func machineUsed() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total, avail int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			avail = v << 10
		}
	}
	return total - avail
}

// cgroupRSS reads total_rss of a test host's memory cgroup (cgroup v1, as
// on this machine; ok is false elsewhere).
func cgroupRSS(cg string) (int64, bool) {
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", cg, "memory.stat"))
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "total_rss "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
