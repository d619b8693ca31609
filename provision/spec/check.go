package spec

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	version "github.com/hashicorp/go-version"

	schema "github.com/clusterctl/clusterctl/cue"
	"github.com/clusterctl/clusterctl/provision/versions"
)

// acceptedVersions is the range validate accepts for every distribution: the
// minors in provision/versions' table, supported or past their end of life
// (those only run and upgrade existing clusters; the plan decides).
var acceptedVersions = fmt.Sprintf(">= 1.%d.0, < 1.%d.0", versions.Oldest().Minor, versions.Newest().Minor+1)

// k3sBuildRE is the build metadata of k3s releases ("k3s1").
var k3sBuildRE = regexp.MustCompile(`^k3s[0-9]+$`)

// SupportedVersions returns the versions validate accepts for a distribution
// clusterctl knows, "" for any other.
func SupportedVersions(distribution string) string {
	if distribution != "kubeadm" && distribution != "k3s" {
		return ""
	}
	return acceptedVersions
}

// checker runs the semantic checks CUE cannot express and collects every
// problem with its position.
type checker struct {
	c    *Cluster
	pos  func(path ...string) string
	errs Errors
}

// fail records a problem at path, positioned at the nearest enclosing field
// the user wrote (a missing field has no position of its own).
func (k *checker) fail(path []string, format string, args ...any) {
	var pos string
	for n := len(path); n >= 0 && (pos == "" || strings.HasPrefix(pos, schema.Filename)); n-- {
		pos = k.pos(path[:n]...)
	}
	k.errs = append(k.errs, &Error{Pos: pos, Path: strings.Join(path, "."), Msg: fmt.Sprintf(format, args...)})
}

func check(c *Cluster, pos func(path ...string) string) Errors {
	k := &checker{c: c, pos: pos}
	k.controlPlanes()
	k.addresses()
	k.networks()
	k.version()
	k.durations()
	k.modules()
	k.imageGC()
	k.manifests()
	k.probes()
	k.k3s()
	return k.errs
}

// APIServerPort is where the API servers listen unless an external
// endpoint's port says otherwise (kubeadm's default).
const APIServerPort = 6443

func (k *checker) controlPlanes() {
	cps := k.c.ControlPlanes()
	switch {
	case len(cps) == 0:
		k.fail([]string{"hosts"}, "no host has the role %q: a cluster needs at least one control plane", RoleControlPlane)
	case len(cps)%2 == 0:
		k.fail([]string{"hosts"}, "%d control planes (%s): etcd needs a majority of members to keep quorum, so an even count tolerates no more failures than one fewer (%d of %d may fail) and splits evenly in a partition; use %d or %d",
			len(cps), strings.Join(cps, ", "), (len(cps)-1)/2, len(cps), len(cps)-1, len(cps)+1)
	}
	if len(cps) > 1 && k.c.Kubernetes.ControlPlaneEndpoint == nil {
		k.fail([]string{"kubernetes", "controlPlaneEndpoint"}, "required with %d control planes: nodes and clients need one address that survives the loss of any control plane (mode \"external\" with your load balancer or VIP, or mode \"node-local\")", len(cps))
	}
}

func (k *checker) addresses() {
	seen := map[netip.Addr]string{}
	for _, name := range k.c.HostOrder {
		h := k.c.Hosts[name]
		path := []string{"hosts", name, "address"}
		a, err := netip.ParseAddr(h.Address)
		if err != nil {
			k.fail(path, "%q is not an IP address", h.Address)
			continue
		}
		if a.IsUnspecified() || a.IsMulticast() {
			k.fail(path, "%s cannot be a host address", h.Address)
			continue
		}
		if a.Is4In6() {
			// ::ffff:a.b.c.d is a.b.c.d on the wire: write it once, as IPv4.
			k.fail(path, "%s is the IPv4-mapped form of %s: write the IPv4 address", h.Address, a.Unmap())
		}
		a = a.Unmap()
		if other, dup := seen[a]; dup {
			k.fail(path, "address %s is already used by host %s: every host needs its own address", h.Address, other)
			continue
		}
		seen[a] = name
	}
	if ep := k.c.Kubernetes.ControlPlaneEndpoint; ep != nil && ep.Mode == "node-local" && ep.Address != "" {
		k.fail([]string{"kubernetes", "controlPlaneEndpoint", "address"}, "mode \"node-local\" listens on 127.0.0.1 on every node; remove the address or use mode \"external\"")
	}
	if ep := k.c.Kubernetes.ControlPlaneEndpoint; ep != nil && ep.Mode == "node-local" && ep.Port == APIServerPort {
		k.fail([]string{"kubernetes", "controlPlaneEndpoint", "port"}, "mode \"node-local\" runs its proxy on every node, control planes included, where the API server holds port %d on every address; use another port (the default is 7443)", APIServerPort)
	}
}

func (k *checker) networks() {
	if k.c.Network.CNI == "calico" {
		// The schema keeps the name so that this error, not a bare enum
		// mismatch, is what a spec written for calico gets.
		k.fail([]string{"network", "cni"}, `"calico" cannot be installed: clusterctl ships no calico manifests or images (calico's components cannot be built or fetched where clusterctl is built and tested); use "flannel", or "none" with your CNI's own manifests under manifests`)
	}
	pod := k.prefix([]string{"network", "podCIDR"}, k.c.Network.PodCIDR)
	svc := k.prefix([]string{"network", "serviceCIDR"}, k.c.Network.ServiceCIDR)
	if pod.IsValid() && svc.IsValid() && pod.Overlaps(svc) {
		k.fail([]string{"network", "serviceCIDR"}, "%s overlaps network.podCIDR %s: pod and service addresses must not collide", svc, pod)
	}
	for _, name := range k.c.HostOrder {
		a, err := netip.ParseAddr(k.c.Hosts[name].Address)
		if err != nil {
			continue
		}
		a = a.Unmap()
		for _, n := range []struct {
			field string
			p     netip.Prefix
		}{{"podCIDR", pod}, {"serviceCIDR", svc}} {
			if n.p.IsValid() && n.p.Contains(a) {
				k.fail([]string{"hosts", name, "address"}, "%s lies inside network.%s %s: host traffic would be routed into the cluster network", a, n.field, n.p)
			}
		}
	}
	if svc.IsValid() && svc.Addr().Is4() && svc.Bits() < 12 {
		k.fail([]string{"network", "serviceCIDR"}, "%s is larger than /12, the largest service range the API server accepts", svc)
	}
}

func (k *checker) prefix(path []string, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		k.fail(path, "%q is not a CIDR (want e.g. 10.244.0.0/16)", s)
		return netip.Prefix{}
	}
	if p.Masked() != p {
		k.fail(path, "%s has host bits set; did you mean %s?", s, p.Masked())
		return netip.Prefix{}
	}
	return p
}

func (k *checker) version() {
	path := []string{"kubernetes", "version"}
	v, err := version.NewSemver(k.c.Kubernetes.Version)
	if err != nil {
		k.fail(path, "%q is not a semantic version: %v", k.c.Kubernetes.Version, err)
		return
	}
	dist := k.c.Kubernetes.Distribution
	// Build metadata (+k3s1) does not change the release.
	core := v.Core()
	if _, ok := versions.Lookup(core.String()); !ok {
		k.fail(path, "%s is outside what clusterctl runs: it supports Kubernetes %s, and runs %s-%s only to upgrade clusters that already exist",
			k.c.Kubernetes.Version, versions.Window(), versions.Oldest().Name(), eolNewest())
	}
	if dist == "kubeadm" && v.Metadata() != "" {
		k.fail(path, "%s carries build metadata %q; kubeadm versions are plain (e.g. %s)", k.c.Kubernetes.Version, v.Metadata(), core)
	}
}

// eolNewest is the newest minor past its end of life that clusterctl still
// runs, e.g. "1.34".
func eolNewest() string {
	n := versions.Oldest().Name()
	for _, m := range versions.All() {
		if !m.Supported {
			return m.Name()
		}
	}
	return n
}

// imageGC: the kubelet refuses a low threshold at or above the high one.
func (k *checker) imageGC() {
	kl := k.c.Kubernetes.Kubelet
	if kl.ImageGCHighThresholdPercent != 0 && kl.ImageGCLowThresholdPercent >= kl.ImageGCHighThresholdPercent {
		k.fail([]string{"kubernetes", "kubelet", "imageGCLowThresholdPercent"}, "%d must be below imageGCHighThresholdPercent (%d)",
			kl.ImageGCLowThresholdPercent, kl.ImageGCHighThresholdPercent)
	}
}

func (k *checker) durations() {
	for _, d := range []struct {
		path []string
		val  string
	}{
		{[]string{"health", "timeout"}, k.c.Health.Timeout},
		{[]string{"ssh", "connectTimeout"}, k.c.SSH.ConnectTimeout},
		{[]string{"kubernetes", "timeouts", "controlPlaneComponentHealthCheck"}, k.c.Kubernetes.Timeouts.ControlPlaneComponentHealthCheck},
		{[]string{"kubernetes", "timeouts", "kubeletHealthCheck"}, k.c.Kubernetes.Timeouts.KubeletHealthCheck},
		{[]string{"kubernetes", "timeouts", "kubernetesAPICall"}, k.c.Kubernetes.Timeouts.KubernetesAPICall},
		{[]string{"kubernetes", "timeouts", "etcdAPICall"}, k.c.Kubernetes.Timeouts.EtcdAPICall},
		{[]string{"kubernetes", "timeouts", "tlsBootstrap"}, k.c.Kubernetes.Timeouts.TLSBootstrap},
		{[]string{"kubernetes", "timeouts", "discovery"}, k.c.Kubernetes.Timeouts.Discovery},
	} {
		if d.val == "" && d.path[0] == "kubernetes" {
			continue // left to health.timeout
		}
		v, err := time.ParseDuration(d.val)
		if err != nil || v <= 0 {
			k.fail(d.path, "%q is not a positive duration (want e.g. 30s, 5m)", d.val)
		}
	}
}

func (k *checker) modules() {
	mode := k.c.Network.KubeProxyMode
	need := map[string]string{"ipvs": "ip_vs", "nftables": "nf_tables"}[mode]
	if need == "" {
		return
	}
	for _, name := range k.c.HostOrder {
		mods := k.c.HostPrepFor(name).KernelModules
		if !contains(mods, need) {
			path := []string{"hostPrep", "kernelModules"}
			if hp := k.c.Hosts[name].HostPrep; hp != nil && hp.KernelModules != nil {
				path = []string{"hosts", name, "hostPrep", "kernelModules"}
			}
			k.fail(path, "network.kubeProxyMode is %q but host %s would not load %s; add it, or choose kubeProxyMode \"iptables\"", mode, name, need)
			return
		}
	}
}

func (k *checker) manifests() {
	names := make([]string, 0, len(k.c.Manifests))
	for n := range k.c.Manifests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := k.c.Manifests[n].Path
		full := p
		if !filepath.IsAbs(full) {
			full = filepath.Join(k.c.Dir, p)
		}
		if _, err := os.Stat(full); err != nil {
			k.fail([]string{"manifests", n, "path"}, "%s: no such file or directory (paths are relative to the spec's directory)", p)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// MaxProbeURL bounds a health probe's URL: it travels on a command line,
// and 2048 bytes is what browsers and proxies reliably accept.
const MaxProbeURL = 2048

// probes refuses probe URLs that the health step could not send, or that
// would show the operator something else than what is requested.
func (k *checker) probes() {
	for _, name := range sortedKeys(k.c.Health.Probes) {
		path := []string{"health", "probes", name, "url"}
		raw := k.c.Health.Probes[name].URL
		if len(raw) > MaxProbeURL {
			k.fail(path, "URL is %d bytes long; at most %d", len(raw), MaxProbeURL)
			continue
		}
		if i, r, ok := hiddenRune(raw); ok {
			k.fail(path, "URL contains %U at byte %d: control and invisible formatting characters (NUL, bidi overrides) are not allowed", r, i)
			continue
		}
		if u, err := url.Parse(raw); err != nil || u.Host == "" {
			k.fail(path, "%q is not an http(s) URL with a host", raw)
		}
	}
}

// hiddenRune finds the first control character, invisible formatting
// character (Unicode Cf: bidi overrides, zero-width joiners) or invalid
// UTF-8 in s.
func hiddenRune(s string) (int, rune, bool) {
	for i, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return i, r, true
		}
	}
	return 0, 0, false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
