package kube

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// KubeadmBinariesEnv names the kubeadm binaries (space-separated) that
// TestKubeadmConfigValidate checks every rendered config with. The e2e tier
// sets it to the kubeadm of each version it builds (e2e/kubeadm_config_test.go)
// and fails unless this test passed rather than skipped.
const KubeadmBinariesEnv = "CLUSTERCTL_KUBEADM_BINARIES"

// TestKubeadmConfigValidate renders the init and join configs clusterctl
// writes, in every variant that changes their text, and has each kubeadm
// named in $CLUSTERCTL_KUBEADM_BINARIES run `kubeadm config validate` on them.
func TestKubeadmConfigValidate(t *testing.T) {
	bins := strings.Fields(os.Getenv(KubeadmBinariesEnv))
	if len(bins) == 0 {
		t.Skip(KubeadmBinariesEnv + " is unset: the e2e tier runs this test with the kubeadm of every version it builds")
	}
	dir := t.TempDir()
	configs := renderedVariants(t)
	for _, bin := range bins {
		out, err := exec.Command(bin, "version", "-o", "short").Output()
		if err != nil {
			t.Fatalf("%s version: %v", bin, err)
		}
		version := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
		for name, render := range configs {
			cfg, err := render(version)
			if err != nil {
				t.Fatalf("%s: render: %v", name, err)
			}
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if err := os.WriteFile(f, cfg, 0o600); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd := exec.Command(bin, "config", "validate", "--config", f)
			cmd.Stderr = &stderr
			if out, err := cmd.Output(); err != nil {
				t.Errorf("kubeadm v%s config validate, %s: %v\n%s%s\nconfig:\n%s", version, name, err, out, stderr.String(), cfg)
				continue
			}
			t.Logf("kubeadm v%s config validate: %s: ok", version, name)
		}
	}
}

// renderedVariants: every switch of the templates at least once, with the
// version left to the kubeadm that checks it.
func renderedVariants(t *testing.T) map[string]func(version string) ([]byte, error) {
	t.Helper()
	base := Cluster{
		Name: "validate", Distribution: "kubeadm", Endpoint: "10.0.0.11:6443", EndpointMode: "first-control-plane",
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", ClusterDomain: "cluster.local",
		ProxyMode: "nftables", CgroupDriver: "systemd", CNI: "flannel",
		Timeouts: Timeouts{ControlPlaneComponentHealthCheck: "5m0s", KubeletHealthCheck: "5m0s", KubernetesAPICall: "5m0s",
			EtcdAPICall: "5m0s", TLSBootstrap: "5m0s", Discovery: "5m0s"},
	}
	ha := base
	ha.Endpoint, ha.EndpointMode, ha.APIServerSANs, ha.ImageRepository, ha.ProxyMode = "127.0.0.1:7443", "node-local",
		[]string{"api.example.net", "10.0.0.100"}, "registry.local/k8s", "ipvs"
	ext := base
	ext.Endpoint, ext.EndpointMode, ext.ProxyMode, ext.CgroupDriver = "api.example.net:8443", "external", "iptables", "cgroupfs"
	ext.EvictionHard = map[string]string{"imagefs.available": "2%", "nodefs.available": "1.5%", "memory.available": "100Mi"}
	ext.ImageGCHigh, ext.ImageGCLow = 100, 99
	node := Node{Name: "h1", Address: "10.0.0.11", Labels: map[string]string{"zone": "a", "example.com/tier": "db"},
		Taints: []Taint{{Key: ControlPlaneTaint, Effect: "NoSchedule"}, {Key: "dedicated", Value: "db", Effect: "NoExecute"}}}
	worker := Node{Name: "h2", Address: "10.0.0.12"}
	token, certKey := newToken(), newCertificateKey()
	hash := "sha256:" + strings.Repeat("ab", 32)
	with := func(c Cluster, v string) Cluster { c.Version = v; return c }
	init := func(c Cluster, n Node, bundle bool, q hostQuirks) func(string) ([]byte, error) {
		return func(v string) ([]byte, error) {
			return renderInit(InitControlPlane{Cluster: with(c, v), Node: n}, bundle, q, token, certKey)
		}
	}
	join := func(c Cluster, n Node, bundle, v1 bool, key string) func(string) ([]byte, error) {
		return func(v string) ([]byte, error) { return renderJoin(with(c, v), n, bundle, v1, token, hash, key) }
	}
	return map[string]func(string) ([]byte, error){
		"init nftables cgroup-v2":                     init(base, node, false, hostQuirks{}),
		"init nftables cgroup-v1 conntrack-read-only": init(base, node, true, hostQuirks{CgroupV1: true, ConntrackReadOnly: true}),
		"init node-local ipvs":                        init(ha, node, true, hostQuirks{CgroupV1: true}),
		"init external iptables cgroupfs":             init(ext, node, false, hostQuirks{}),
		"join worker cgroup-v1":                       join(base, worker, true, true, ""),
		"join worker cgroup-v2":                       join(ext, worker, false, false, ""),
		"join control-plane node-local":               join(ha, node, true, true, certKey),
	}
}

// The kubelet's eviction thresholds land in the init config's
// KubeletConfiguration, sorted and quoted; a bad one is refused.
func TestRenderEvictionHard(t *testing.T) {
	c := Cluster{Name: "t", Distribution: "kubeadm", Version: "1.37.2", Endpoint: "10.0.0.11:6443", EndpointMode: "first-control-plane",
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", ClusterDomain: "cluster.local", ProxyMode: "nftables", CgroupDriver: "systemd",
		EvictionHard: map[string]string{"nodefs.available": "1%", "imagefs.available": "2%"}, ImageGCHigh: 100, ImageGCLow: 99}
	out, err := renderInit(InitControlPlane{Cluster: c, Node: Node{Name: "h1", Address: "10.0.0.11"}}, true, hostQuirks{}, newToken(), newCertificateKey())
	if err != nil {
		t.Fatal(err)
	}
	if want := "imageGCHighThresholdPercent: 100\nimageGCLowThresholdPercent: 99\n"; !strings.Contains(string(out), want) {
		t.Errorf("init config lacks\n%s\n%s", want, out)
	}
	if want := "evictionHard:\n  \"imagefs.available\": \"2%\"\n  \"nodefs.available\": \"1%\"\n"; !strings.Contains(string(out), want) {
		t.Errorf("init config lacks\n%s\n%s", want, out)
	}
	c.ImageGCLow = 100
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "image GC") {
		t.Errorf("low 100 over high 100: %v", err)
	}
	c.ImageGCLow = 99
	c.EvictionHard = map[string]string{"imagefs.available": "2%\nmode: x"}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "evictionHard") {
		t.Errorf("a threshold with a newline: %v", err)
	}
}
