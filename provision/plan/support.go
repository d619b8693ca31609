package plan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/versions"
)

// VersionSupport holds the spec's Kubernetes version up against the support
// window (provision/versions) and the hosts' facts. A minor past its end of
// life is refused for a new cluster unless kubernetes.allowUnsupported says
// the operator means it; for a cluster that exists it is a warning, so the
// cluster can be upgraded off it. What upstream deprecates and this cluster
// still relies on (cgroup v1, containerd 1.x, ipvs) is a warning with the
// reason read from that minor's source.
func VersionSupport(c *spec.Cluster, fs map[string]*facts.Facts, exists bool) (warnings []string, err error) {
	m, ok := versions.Lookup(c.Kubernetes.Version)
	if !ok {
		return nil, fmt.Errorf("kubernetes.version %s: clusterctl knows Kubernetes %s-%s (run `clusterctl validate`)",
			c.Kubernetes.Version, versions.Oldest().Name(), versions.Newest().Name())
	}
	if !m.Supported {
		eol := fmt.Sprintf("Kubernetes %s is past its upstream end of life; clusterctl supports %s", m.Name(), versions.Window())
		switch {
		case exists:
			warnings = append(warnings, eol+": upgrade this cluster one minor at a time (kubernetes.version "+next(m)+")")
		case c.Kubernetes.AllowUnsupported:
			warnings = append(warnings, eol+": installing it anyway because kubernetes.allowUnsupported is true")
		default:
			return nil, fmt.Errorf("kubernetes.version %s: %s, and this is a new cluster: choose one of those minors, or set kubernetes.allowUnsupported: true",
				c.Kubernetes.Version, eol)
		}
	}
	var v1, old []string
	for name, f := range fs {
		if f == nil {
			continue
		}
		if f.CgroupV == 1 {
			v1 = append(v1, name)
		}
		if strings.HasPrefix(f.Containerd, "1.") {
			old = append(old, name+" ("+f.Containerd+")")
		}
	}
	sort.Strings(v1)
	sort.Strings(old)
	if len(v1) > 0 && c.Kubernetes.Distribution == "kubeadm" { // k3s brings its own kubelet flags
		switch m.CgroupV1 {
		case "refused":
			return warnings, fmt.Errorf("kubernetes.version %s: the kubelet %s no longer runs on cgroup v1, and %s run it: boot them with cgroup v2 (systemd.unified_cgroup_hierarchy=1) or stay on an older minor",
				c.Kubernetes.Version, m.Name(), strings.Join(v1, ", "))
		case "optIn":
			if from, ok := oldestKubelet(fs); ok && from.CgroupV1 == "default" {
				// kubeadm upgrade keeps the cluster's kubelet config, which
				// lacks failCgroupV1: false, so the new kubelets would refuse
				// to start. Stop here rather than half-way through the roll.
				return warnings, fmt.Errorf("kubernetes.version %s: the kubelets run %s, and upgrading them to %s on cgroup v1 hosts (%s) needs failCgroupV1: false in the cluster's kubelet config, which clusterctl does not add during an upgrade yet: move those hosts to cgroup v2 first",
					c.Kubernetes.Version, from.Name(), m.Name(), strings.Join(v1, ", "))
			}
			warnings = append(warnings, fmt.Sprintf("%s run cgroup v1, which upstream deprecates: the kubelet %s refuses it by default and is configured with failCgroupV1: false to run there, and containerd deprecates it from 2.2 (support ends no later than May 2029); move the hosts to cgroup v2",
				strings.Join(v1, ", "), m.Name()))
		}
	}
	if len(old) > 0 && c.Kubernetes.Distribution == "kubeadm" {
		if m.Containerd1 == "refused" {
			return warnings, fmt.Errorf("kubernetes.version %s: the kubelet %s needs containerd 2 (the CRI RuntimeConfig call), and %s run containerd 1.x",
				c.Kubernetes.Version, m.Name(), strings.Join(old, ", "))
		}
		warnings = append(warnings, fmt.Sprintf("%s run containerd 1.x, which lacks the CRI RuntimeConfig call: the kubelet %s falls back to its own cgroupDriver, a fallback upstream marks as losing support; containerd 2 is the runtime to move to (a bundle with bin/containerd moves each node, drained, in kube/migrate-runtime)",
			strings.Join(old, ", "), m.Name()))
	}
	if c.Network.KubeProxyMode == "nftables" {
		var old []string
		for name, f := range fs {
			if f != nil && f.Kernel != "" && !kernelAtLeast(f.Kernel, 5, 13) {
				old = append(old, name+" ("+f.Kernel+")")
			}
		}
		if len(old) > 0 {
			sort.Strings(old)
			return warnings, fmt.Errorf("network.kubeProxyMode \"nftables\": kube-proxy needs Linux 5.13 or newer for it, and %s run older kernels: upgrade them, or choose kubeProxyMode \"iptables\"",
				strings.Join(old, ", "))
		}
	}
	if c.Network.KubeProxyMode == "nftables" {
		if from, ok := oldestKubelet(fs); ok && from.Minor < m.Minor {
			warnings = append(warnings, fmt.Sprintf("upgrading %s -> %s with kube-proxy in nftables mode: in clusterctl's tests ClusterIP and NodePort traffic on upgraded nodes stopped although kube-proxy's rules were in place (cause not found; clusterctl restarts each node's kube-proxy after its upgrade); check services after the roll",
				from.Name(), m.Name()))
		}
	}
	if c.Network.KubeProxyMode == "ipvs" && m.Minor >= 35 {
		warnings = append(warnings, fmt.Sprintf("network.kubeProxyMode \"ipvs\": kube-proxy %s deprecates the ipvs proxier and says to use nftables", m.Name()))
	}
	return warnings, nil
}

// next is the version to upgrade an end-of-life minor to: the next minor's
// newest known patch.
func next(m versions.Minor) string {
	if n, ok := versions.Lookup(fmt.Sprintf("1.%d.0", m.Minor+1)); ok {
		return n.Patch
	}
	return versions.Default()
}

// kernelAtLeast reads "MAJOR.MINOR..." of a kernel release (uname -r); one it
// cannot read passes, and kube-proxy's own check has the last word.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return true
	}
	return ma > major || ma == major && mi >= minor
}

// oldestKubelet is the oldest minor a host's kubelet runs, if any host has
// one the table knows.
func oldestKubelet(fs map[string]*facts.Facts) (versions.Minor, bool) {
	var oldest versions.Minor
	found := false
	for _, f := range fs {
		if f == nil || f.Kubelet == "" {
			continue
		}
		if m, ok := versions.Lookup(strings.TrimPrefix(f.Kubelet, "v")); ok && (!found || m.Minor < oldest.Minor) {
			oldest, found = m, true
		}
	}
	return oldest, found
}
