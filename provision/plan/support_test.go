package plan

import (
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/spec"
)

func supportSpec(version string) *spec.Cluster {
	c := &spec.Cluster{}
	c.Kubernetes.Version, c.Kubernetes.Distribution, c.Network.KubeProxyMode = version, "kubeadm", "iptables"
	return c
}

// A supported minor on cgroup v2 hosts with containerd 2 has nothing to say.
func TestVersionSupportQuiet(t *testing.T) {
	fs := map[string]*facts.Facts{"h1": {CgroupV: 2, Containerd: "2.4.1"}, "h2": {CgroupV: 2}}
	for _, v := range []string{"1.35.4", "1.36.3", "1.37.2"} {
		ws, err := VersionSupport(supportSpec(v), fs, false)
		if err != nil || len(ws) != 0 {
			t.Errorf("%s: warnings %q, error %v; want none", v, ws, err)
		}
	}
}

// An end-of-life minor: refused for a new cluster unless allowUnsupported,
// a warning naming the next minor for one that exists.
func TestVersionSupportEndOfLife(t *testing.T) {
	c := supportSpec("1.34.10")
	_, err := VersionSupport(c, nil, false)
	if err == nil || !strings.Contains(err.Error(), "1.35, 1.36 and 1.37") || !strings.Contains(err.Error(), "allowUnsupported: true") ||
		!strings.Contains(err.Error(), "new cluster") {
		t.Errorf("new 1.34 cluster: error %v; want the window and allowUnsupported named", err)
	}
	ws, err := VersionSupport(c, nil, true)
	if err != nil || len(ws) != 1 || !strings.Contains(ws[0], "past its upstream end of life") || !strings.Contains(ws[0], "kubernetes.version 1.35.4") {
		t.Errorf("existing 1.34 cluster: warnings %q, error %v; want one naming the upgrade to 1.35.4", ws, err)
	}
	c.Kubernetes.AllowUnsupported = true
	ws, err = VersionSupport(c, nil, false)
	if err != nil || len(ws) != 1 || !strings.Contains(ws[0], "allowUnsupported is true") {
		t.Errorf("allowUnsupported: warnings %q, error %v", ws, err)
	}
	if _, err := VersionSupport(supportSpec("1.32.4"), nil, true); err == nil || !strings.Contains(err.Error(), "1.33-1.37") {
		t.Errorf("1.32: error %v, want the known range", err)
	}
}

// What upstream deprecates is named with the hosts that rely on it.
func TestVersionSupportDeprecations(t *testing.T) {
	fs := map[string]*facts.Facts{
		"h2": {CgroupV: 1, Containerd: "1.6.20"},
		"h1": {CgroupV: 1, Containerd: "1.6.20"},
		"h3": {CgroupV: 2, Containerd: "2.4.1"},
		"h4": nil, // did not answer: reported by the fact gathering
	}
	c := supportSpec("1.37.2")
	c.Network.KubeProxyMode = "ipvs"
	ws, err := VersionSupport(c, fs, false)
	if err != nil || len(ws) != 3 {
		t.Fatalf("warnings %q, error %v; want cgroup v1, containerd 1.x and ipvs", ws, err)
	}
	for i, want := range []string{"h1, h2 run cgroup v1", "h1 (1.6.20), h2 (1.6.20) run containerd 1.x", "deprecates the ipvs proxier"} {
		if !strings.Contains(ws[i], want) {
			t.Errorf("warning %d %q lacks %q", i, ws[i], want)
		}
	}
	// 1.34's kubelet runs on cgroup v1 by default: nothing to say about it.
	c = supportSpec("1.34.10")
	ws, _ = VersionSupport(c, map[string]*facts.Facts{"h1": {CgroupV: 1}}, true)
	for _, w := range ws {
		if strings.Contains(w, "cgroup") {
			t.Errorf("1.34 warns about cgroup v1: %q", w)
		}
	}
}

// nftables mode needs Linux 5.13 on every host; the error names the old ones.
func TestVersionSupportNftablesKernel(t *testing.T) {
	c := supportSpec("1.37.2")
	c.Network.KubeProxyMode = "nftables"
	fs := map[string]*facts.Facts{"h1": {CgroupV: 2, Kernel: "6.18.44-fc-v1147"}, "h2": {CgroupV: 2, Kernel: "5.10.0-28-amd64"}, "h3": {CgroupV: 2, Kernel: "5.13.0"}}
	_, err := VersionSupport(c, fs, false)
	if err == nil || !strings.Contains(err.Error(), "h2 (5.10.0-28-amd64)") || strings.Contains(err.Error(), "h3") || strings.Contains(err.Error(), "h1") {
		t.Errorf("error %v; want h2 named alone", err)
	}
	delete(fs, "h2")
	if ws, err := VersionSupport(c, fs, false); err != nil || len(ws) != 0 {
		t.Errorf("new kernels: warnings %q, error %v", ws, err)
	}
	c.Network.KubeProxyMode = "iptables"
	fs["h2"] = &facts.Facts{CgroupV: 2, Kernel: "4.19.0"}
	if _, err := VersionSupport(c, fs, false); err != nil {
		t.Errorf("iptables on an old kernel: %v", err)
	}
}

// An upgrade in nftables mode warns about what the e2e roll showed.
func TestVersionSupportNftablesUpgrade(t *testing.T) {
	c := supportSpec("1.37.2")
	c.Network.KubeProxyMode = "nftables"
	ws, err := VersionSupport(c, map[string]*facts.Facts{"h1": {CgroupV: 2, Kubelet: "v1.36.3"}}, true)
	if err != nil || len(ws) != 1 || !strings.Contains(ws[0], "upgrading 1.36 -> 1.37 with kube-proxy in nftables mode") {
		t.Errorf("warnings %q, error %v", ws, err)
	}
	if ws, _ := VersionSupport(c, map[string]*facts.Facts{"h1": {CgroupV: 2, Kubelet: "v1.37.2"}}, true); len(ws) != 0 {
		t.Errorf("no upgrade: warnings %q", ws)
	}
}

// A cluster whose kubelets run a minor that allows cgroup v1 by default is
// not upgraded into one that refuses it while hosts still run cgroup v1:
// kubeadm upgrade would keep a kubelet config without failCgroupV1: false.
func TestVersionSupportCgroupV1Upgrade(t *testing.T) {
	fs := map[string]*facts.Facts{"h1": {CgroupV: 1, Kubelet: "v1.34.10"}, "h2": {CgroupV: 1, Kubelet: "1.35.4"}}
	_, err := VersionSupport(supportSpec("1.35.4"), fs, true)
	if err == nil || !strings.Contains(err.Error(), "the kubelets run 1.34") || !strings.Contains(err.Error(), "h1, h2") {
		t.Errorf("1.34 -> 1.35 on cgroup v1: error %v", err)
	}
	fs["h1"].CgroupV, fs["h2"].CgroupV = 2, 2
	if _, err := VersionSupport(supportSpec("1.35.4"), fs, true); err != nil {
		t.Errorf("1.34 -> 1.35 on cgroup v2: %v", err)
	}
	fs = map[string]*facts.Facts{"h1": {CgroupV: 1, Kubelet: "v1.36.3"}}
	if ws, err := VersionSupport(supportSpec("1.37.2"), fs, true); err != nil || len(ws) != 1 {
		t.Errorf("1.36 -> 1.37 on cgroup v1: warnings %q, error %v; want the cgroup v1 warning", ws, err)
	}
}
