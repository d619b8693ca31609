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
	"strings"
	"testing"
	"time"
)

// The real-k3s scenario needs a k3s release the machine cannot download:
// CLUSTERCTL_K3S_BUNDLE names a directory holding the k3s binary (k3s, or
// bin/k3s) and its air-gap images (k3s-airgap-images-amd64.tar[.zst|.gz],
// or under airgap/), both of one k3s release.
const k3sBundleEnv = "CLUSTERCTL_K3S_BUNDLE"

// k3sRelease is a real k3s release to test with.
type k3sRelease struct {
	bin, airgap string
	version     string // e.g. 1.34.2+k3s1
}

// needK3s finds the release, or skips saying exactly that the real-k3s
// scenario did not run and why.
func needK3s(t *testing.T) k3sRelease {
	t.Helper()
	dir := os.Getenv(k3sBundleEnv)
	if dir == "" {
		t.Skip("the real-k3s scenario did not run: " + k3sBundleEnv + " is unset. It must name a directory " +
			"holding a k3s release binary (k3s) and its air-gap images (k3s-airgap-images-amd64.tar.zst); this " +
			"machine has neither (no internet, and k3s is not packaged in Debian), so the k3s driver is verified " +
			"only by the golden command transcripts and rendered files of provision/steps/k3s and the plan " +
			"goldens of inventories/k3s")
	}
	var r k3sRelease
	for _, p := range []string{filepath.Join(dir, "k3s"), filepath.Join(dir, "bin", "k3s")} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			r.bin = p
			break
		}
	}
	for _, pat := range []string{"k3s-airgap-images-amd64.tar*", "airgap/k3s-airgap-images-amd64.tar*"} {
		if m, _ := filepath.Glob(filepath.Join(dir, pat)); len(m) > 0 {
			r.airgap = m[0]
			break
		}
	}
	if r.bin == "" || r.airgap == "" {
		t.Fatalf("%s=%s: want a k3s binary (k3s or bin/k3s) and k3s-airgap-images-amd64.tar[.zst|.gz] there; found binary %q, archive %q", k3sBundleEnv, dir, r.bin, r.airgap)
	}
	out, err := exec.Command(r.bin, "--version").Output()
	if f := strings.Fields(string(out)); err != nil || len(f) < 3 || !strings.Contains(f[2], "+k3s") {
		t.Fatalf("%s --version: %v: %q", r.bin, err, out)
	} else {
		r.version = strings.TrimPrefix(f[2], "v")
	}
	return r
}

// k3sSpec is the Kubernetes part of the k3s e2e specs, as clusterSpec is
// for kubeadm, without the kubeadm image repository (k3s runs its air-gap
// images under their own names).
const k3sSpec = `cluster: {
	network: {cni: "flannel", kubeProxyMode: "iptables"} // flannel is k3s's own; this kernel has no ip_vs
	manifests: hello: {path: "manifests/hello.yaml", namespace: "default"}
	health: {
		timeout: "10m"
		probes: {
			"hello-h1": {url: "http://NET.11:30080/"}
			"hello-h2": {url: "http://NET.12:30080/"}
			"hello-h3": {url: "http://NET.13:30080/"}
		}
	}
}`

// TestK3sCluster: TestCluster's scenario with the k3s driver: three bare
// hosts become one k3s server and two agents from an air-gapped bundle
// (the release's binary and air-gap images, the hello image), checked
// through the merged kubeconfig context; a second apply changes nothing.
func TestK3sCluster(t *testing.T) {
	r := needK3s(t)
	c := startK3s(t, r, 1)
	c.verifyK3s(r, 1)
	c.secondApply()
	c.report()
}

// TestK3sClusterHA: three servers (embedded etcd: the first initialises,
// the others join one at a time) that also run workloads; the
// node-local endpoint makes nodes join through the first server.
func TestK3sClusterHA(t *testing.T) {
	r := needK3s(t)
	c := startK3s(t, r, 3)
	c.verifyK3s(r, 3)
	c.secondApply()
	c.report()
}

// startK3s boots three hosts on 172.31.18 (prefix ct18), writes the k3s
// spec with servers control planes, bundles the release, the hello image
// and the node packages, and applies, failing on any failed step.
func startK3s(t *testing.T, r k3sRelease, servers int) *cluster {
	const net = "172.31.18"
	c := &cluster{t: t, mark: time.Now()}
	e := newEnv(t, 3, net, "ct18", "root")
	c.e = e
	inv, err := e.hosts.Inventory(testhostsInventory("root", servers))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(inv), `version: "1.37.2", distribution: "kubeadm"`, fmt.Sprintf(`version: %q, distribution: "k3s"`, r.version), 1)
	if servers > 1 {
		s = strings.ReplaceAll(s, `roles: ["control-plane"]`, `roles: ["control-plane", "worker"]`)
	}
	if err := os.WriteFile(filepath.Join(e.spec, "cluster.cue"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	e.writeSpec("kubernetes.cue", strings.ReplaceAll(k3sSpec, "NET", net))
	CopyFile(t, "../inventories/local/manifests/hello.yaml", filepath.Join(e.spec, "manifests", "hello.yaml"))

	src := filepath.Join(t.TempDir(), "k3s")
	linkOrCopy(t, r.bin, filepath.Join(src, "bin", "k3s"))
	linkOrCopy(t, r.airgap, filepath.Join(src, "airgap", filepath.Base(r.airgap)))
	helloImage(t, filepath.Join(src, "images", "hello.tar"))
	e.clusterctl(0, "bundle", e.spec, "--from", filepath.Join(e.spec, "artifacts"), "--from", src)
	c.phase("3 hosts booted, node debs, k3s bundle")

	c.kubeconfig = filepath.Join(t.TempDir(), "kube", "config")
	e.kubeconfig = c.kubeconfig
	c.kubectl = r.bin
	c.freshApply("apply: bare hosts -> healthy k3s cluster")
	return c
}

// k3sKubectl runs the release's own kubectl (k3s kubectl) against the
// merged kubeconfig's context "e2e".
func (c *cluster) k3sKubectl(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.kubectl, append([]string{"kubectl", "--kubeconfig", c.kubeconfig, "--context", "e2e", "--request-timeout=20s"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("k3s kubectl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// verifyK3s: every node Ready at the release's version, servers etcd
// voters, flannel (k3s's own, vxlan) on every node, no traefik or
// servicelb, kube-system running, hello on every node's NodePort; on the
// hosts the right unit runs, config.yaml is 0600 without a token, joined
// nodes' token files 0600.
func (c *cluster) verifyK3s(r k3sRelease, servers int) {
	t := c.t
	var nodes struct {
		Items []struct {
			Metadata struct {
				Name        string            `json:"name"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
				NodeInfo   struct {
					KubeletVersion string `json:"kubeletVersion"`
				} `json:"nodeInfo"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(c.k3sKubectl("get", "nodes", "-o", "json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes.Items))
	}
	voters := 0
	for _, n := range nodes.Items {
		conds := map[string]string{}
		for _, cond := range n.Status.Conditions {
			conds[cond.Type] = cond.Status
		}
		if conds["Ready"] != "True" || n.Status.NodeInfo.KubeletVersion != "v"+r.version {
			t.Errorf("node %s: Ready %s, kubelet %s; want Ready at v%s", n.Metadata.Name, conds["Ready"], n.Status.NodeInfo.KubeletVersion, r.version)
		}
		if conds["EtcdIsVoter"] == "True" {
			voters++
		}
		if b := n.Metadata.Annotations["flannel.alpha.coreos.com/backend-type"]; b != "vxlan" {
			t.Errorf("node %s: flannel backend %q, want vxlan", n.Metadata.Name, b)
		}
	}
	if voters != servers {
		t.Errorf("%d etcd voters, want %d", voters, servers)
	}
	pods := c.k3sKubectl("get", "pods", "-n", "kube-system", "--no-headers",
		"-o", "custom-columns=NAME:.metadata.name,PHASE:.status.phase")
	for _, l := range strings.Split(strings.TrimSpace(pods), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) != 2:
		case strings.Contains(f[0], "traefik") || strings.HasPrefix(f[0], "svclb-"):
			t.Errorf("disabled component runs: %s", l)
		case f[1] != "Running" && f[1] != "Succeeded":
			t.Errorf("kube-system pod not running: %s", l)
		}
	}
	if !strings.Contains(pods, "coredns-") {
		t.Errorf("no CoreDNS:\n%s", pods)
	}

	ctx := context.Background()
	for _, h := range c.e.hosts.Hosts {
		url := fmt.Sprintf("http://%s:30080/", h.Addr)
		Eventually(t, "hello on "+url, 2*time.Minute, func() error {
			body, err := Curl(ctx, url)
			if err == nil && !strings.HasPrefix(body, "hello from hello-") {
				err = fmt.Errorf("%s answered %q", url, body)
			}
			return err
		})
	}
	for _, h := range c.e.hosts.Hosts {
		unit := "k3s-agent"
		if h.Index <= servers {
			unit = "k3s"
		}
		if got := c.e.sh(h.Index, "systemctl is-active "+unit); got != "active" {
			t.Errorf("%s: %s %s", h.Name, unit, got)
		}
		if got := c.e.sh(h.Index, "stat -c %a /etc/rancher/k3s/config.yaml; grep -c K10 /etc/rancher/k3s/config.yaml || true"); got != "600\n0" {
			t.Errorf("%s: config.yaml mode and token lines: %q", h.Name, got)
		}
		if h.Index > 1 {
			if got := c.e.sh(h.Index, "stat -c %a /etc/rancher/k3s/token"); got != "600" {
				t.Errorf("%s: token file mode %s", h.Name, got)
			}
		}
	}
	c.phase("checks (k3s kubectl, curl, hosts)")
}

// linkOrCopy puts src at dst (a hard link when it can), making dst's directory.
func linkOrCopy(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Link(src, dst) == nil {
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// helloImage builds the sample workload's image (e2e/artifacts/hello, as
// build.sh names it) without the Kubernetes build: hello and mkimage are
// standard-library programs.
func helloImage(t *testing.T, out string) {
	t.Helper()
	work := t.TempDir()
	build := func(dir, bin string) {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", dir, err, b)
		}
	}
	build("artifacts/hello", filepath.Join(work, "hello"))
	build("artifacts/mkimage", filepath.Join(work, "mkimage"))
	spec := filepath.Join(work, "hello.spec")
	if err := os.WriteFile(spec, []byte("file "+filepath.Join(work, "hello")+" /hello 0755\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(filepath.Join(work, "mkimage"), "build", "-o", out, "-name", "registry.local/clusterctl/hello:v1",
		"-entrypoint", "/hello", "-arch", "amd64", "-port", "8080/tcp", spec).CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
}
