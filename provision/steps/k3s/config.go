package k3s

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/templates"
)

var (
	versionRE = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$`)
	nameRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$`)
	labelRE   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	valueRE   = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	imageRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@-]*$`)
	regHostRE = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$`)
)

// disabled are the packaged components k3s would deploy that clusterctl
// turns off on every server (the list must match on all servers): traefik
// (an ingress controller) and servicelb (klipper-lb, which binds the ports
// of every LoadBalancer Service on every node). The spec declares the
// cluster's workloads; like the kubeadm driver, k3s brings only what a
// cluster needs to run them: CoreDNS, and k3s's small local-path
// provisioner and metrics-server, which take no host ports.
var disabled = []string{"traefik", "servicelb"}

// member is what the init and join ops share: one node of the cluster.
type member struct {
	kind    string // the op's Kind, named in the files it writes
	role    string // server | agent
	first   bool   // the server that runs cluster-init
	cluster kube.Cluster
	node    kube.Node
	runtime Runtime
	via     string // the first server (joins)
}

func (m member) validate() error {
	c, n := m.cluster, m.node
	var errs []error
	if c.Distribution != "k3s" {
		errs = append(errs, fmt.Errorf("distribution %q: the k3s driver's steps build k3s clusters only", c.Distribution))
	}
	if !versionRE.MatchString(c.Version) {
		errs = append(errs, fmt.Errorf("k3s version %q: want e.g. 1.37.2+k3s1", c.Version))
	}
	errs = append(errs, c.NetworkErrors()...)
	if c.ProxyMode != "iptables" && c.ProxyMode != "ipvs" {
		errs = append(errs, fmt.Errorf("kube-proxy mode %q: want iptables or ipvs", c.ProxyMode))
	}
	if !nameRE.MatchString(n.Name) {
		errs = append(errs, fmt.Errorf("node name %q is not a DNS name", n.Name))
	}
	if _, err := netip.ParseAddr(n.Address); err != nil {
		errs = append(errs, fmt.Errorf("node %s: address %q is not an IP address", n.Name, n.Address))
	}
	for k, v := range n.Labels {
		if !labelRE.MatchString(k) || !valueRE.MatchString(v) {
			errs = append(errs, fmt.Errorf("node %s: label %q=%q is not a label", n.Name, k, v))
		}
	}
	for _, t := range n.Taints {
		switch {
		case !labelRE.MatchString(t.Key) || !valueRE.MatchString(t.Value):
			errs = append(errs, fmt.Errorf("node %s: taint key %q or value %q", n.Name, t.Key, t.Value))
		case t.Effect != "NoSchedule" && t.Effect != "PreferNoSchedule" && t.Effect != "NoExecute":
			errs = append(errs, fmt.Errorf("node %s: taint effect %q", n.Name, t.Effect))
		}
	}
	if p := m.runtime.PauseImage; p != "" && !imageRE.MatchString(p) {
		errs = append(errs, fmt.Errorf("pause image %q is not an image reference", p))
	}
	for reg, eps := range m.runtime.Mirrors {
		if !regHostRE.MatchString(reg) {
			errs = append(errs, fmt.Errorf("mirror registry %q is not a registry host", reg))
		}
		for _, ep := range eps {
			if u, err := url.Parse(ep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(ep, " \n\"") {
				errs = append(errs, fmt.Errorf("mirror endpoint %q of %s is not an http(s) URL", ep, reg))
			}
		}
	}
	for _, reg := range m.runtime.InsecureRegistries {
		if !regHostRE.MatchString(reg) {
			errs = append(errs, fmt.Errorf("insecure registry %q is not a registry host", reg))
		}
	}
	if !m.first && m.via == "" {
		errs = append(errs, errors.New("join: no first server to join through (via)"))
	}
	return errors.Join(errs...)
}

// quirks are what a host says about itself that its config.yaml must
// follow; the node probe finds them.
type quirks struct {
	// conntrackRO: nf_conntrack_max cannot be written in the host's network
	// namespace (containers, nested hosts), so kube-proxy must not try.
	conntrackRO bool
	// overlayData: k3s's data directory is on overlayfs, where containerd's
	// overlayfs snapshotter cannot work; the native one can.
	overlayData bool
}

type configData struct {
	Step, Role                string
	ClusterInit               bool
	Server, TokenFile         string
	NodeName, NodeIP          string
	TLSSANs                   []string
	ClusterCIDR, ServiceCIDR  string
	ClusterDNS, ClusterDomain string
	FlannelBackend            string
	DisableNetworkPolicy      bool
	Disable                   []string
	KubeProxyArgs             []string
	NodeLabels, NodeTaints    []string
	PauseImage, Snapshotter   string
}

func quoteAll(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = yamlString(x)
	}
	return out
}

// clusterDNS is CoreDNS's service address, the tenth of the service CIDR
// (k3s's own default, made explicit: servers must agree on it).
func clusterDNS(serviceCIDR string) (string, error) {
	p, err := netip.ParsePrefix(serviceCIDR)
	if err != nil {
		return "", fmt.Errorf("service CIDR %q: %w", serviceCIDR, err)
	}
	a := p.Masked().Addr()
	for i := 0; i < 10; i++ {
		a = a.Next()
	}
	if !p.Contains(a) {
		return "", fmt.Errorf("service CIDR %s is too small for the cluster DNS address", serviceCIDR)
	}
	return a.String(), nil
}

// tlsSANs are the endpoint's host and the spec's SANs, each once; k3s adds
// the node's own names and addresses itself.
func (m member) tlsSANs() []string {
	var out []string
	seen := map[string]bool{}
	h, _, _ := net.SplitHostPort(m.cluster.Endpoint)
	for _, s := range append([]string{h}, m.cluster.APIServerSANs...) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// config renders the node's /etc/rancher/k3s/config.yaml (keys checked
// against k3s's documented flags in config_test.go).
func (m member) config(q quirks) ([]byte, error) {
	c, n := m.cluster, m.node
	d := configData{
		Step: m.kind, Role: m.role, ClusterInit: m.first,
		NodeName: yamlString(n.Name), NodeIP: yamlString(n.Address),
		KubeProxyArgs: []string{"proxy-mode=" + c.ProxyMode},
	}
	if !m.first {
		d.Server, d.TokenFile = yamlString("https://"+c.Endpoint), yamlString(TokenFile)
	}
	if m.role == RoleServer {
		dns, err := clusterDNS(c.ServiceCIDR)
		if err != nil {
			return nil, err
		}
		d.TLSSANs = quoteAll(m.tlsSANs())
		d.ClusterCIDR, d.ServiceCIDR = yamlString(c.PodCIDR), yamlString(c.ServiceCIDR)
		d.ClusterDNS, d.ClusterDomain = yamlString(dns), yamlString(c.ClusterDomain)
		d.FlannelBackend = yamlString(flannelBackend(c.CNI))
		d.DisableNetworkPolicy = c.CNI != "flannel"
		d.Disable = quoteAll(disabled)
	}
	if q.conntrackRO {
		d.KubeProxyArgs = append(d.KubeProxyArgs, "conntrack-max-per-core=0")
	}
	d.KubeProxyArgs = quoteAll(d.KubeProxyArgs)
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d.NodeLabels = append(d.NodeLabels, yamlString(k+"="+n.Labels[k]))
	}
	for _, t := range n.Taints {
		kv := t.Key
		if t.Value != "" {
			kv += "=" + t.Value
		}
		d.NodeTaints = append(d.NodeTaints, yamlString(kv+":"+t.Effect))
	}
	if m.runtime.PauseImage != "" {
		d.PauseImage = yamlString(m.runtime.PauseImage)
	}
	if q.overlayData {
		d.Snapshotter = yamlString("native")
	}
	return templates.Render("k3s-config.yaml.tmpl", d)
}

type mirror struct {
	Host      string
	Endpoints []string
}

// registries renders /etc/rancher/k3s/registries.yaml: always written, so
// mirrors removed from the spec leave the node too.
func (m member) registries() ([]byte, error) {
	hosts := make([]string, 0, len(m.runtime.Mirrors))
	for h := range m.runtime.Mirrors {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var mirrors []mirror
	for _, h := range hosts {
		mirrors = append(mirrors, mirror{Host: yamlString(h), Endpoints: quoteAll(m.runtime.Mirrors[h])})
	}
	insecure := append([]string(nil), m.runtime.InsecureRegistries...)
	sort.Strings(insecure)
	return templates.Render("k3s-registries.yaml.tmpl", map[string]any{
		"Step": m.kind, "Mirrors": mirrors, "Insecure": quoteAll(insecure),
	})
}
