package kubespray

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"

	version "github.com/hashicorp/go-version"

	"github.com/clusterctl/clusterctl/provision/spec"
)

// DefaultKubernetesVersion is written when kube_version is missing or
// unusable; TestDefaultVersionSupported keeps it inside what validate accepts.
const DefaultKubernetesVersion = "1.37.2"

// Kubespray's own defaults (roles/kubespray_defaults) for the variables the
// spec maps: an inventory that does not set one runs with these.
var kubesprayDefaults = map[string]string{
	"kube_network_plugin":    "calico",
	"kube_proxy_mode":        "ipvs",
	"kube_pods_subnet":       "10.233.64.0/18",
	"kube_service_addresses": "10.233.0.0/18",
	"cluster_name":           "cluster.local",
	"container_manager":      "containerd",
	"etcd_deployment_type":   "host",
}

// Groups kubespray gives meaning to.
const (
	groupControlPlane = "kube_control_plane"
	groupNode         = "kube_node"
	groupEtcd         = "etcd"
	groupCluster      = "k8s_cluster"
	groupBastion      = "bastion"
)

// hostVarNames are the per-host variables mapped into hosts.NAME.
var hostVarNames = []string{"ansible_host", "ip", "access_ip", "ansible_user", "ansible_port", "ansible_ssh_private_key_file"}

// Options tunes Convert.
type Options struct {
	Name   string // cluster name (a DNS label)
	Source string // where the inventory came from, for the header comment
}

// Unmapped is a variable (or inventory entry) the spec does not carry.
type Unmapped struct {
	Var    string // e.g. "kube_network_plugin", "node1: access_ip", "group kube_node: foo"
	Reason string
}

func (u Unmapped) String() string { return u.Var + ": " + u.Reason }

// Result is the spec written from an inventory.
type Result struct {
	Spec          []byte // CUE, package clusterctl
	Name          string
	ControlPlanes []string
	Workers       []string
	Unmapped      []Unmapped // sorted by Var
}

// Convert maps an inventory and its group_vars onto a clusterctl spec. It
// fails only when no faithful spec can be written (a cluster host without an
// IP address or with a name Kubernetes refuses); everything else the spec
// cannot say is listed in Result.Unmapped.
func Convert(inv *Inventory, gv GroupVars, opt Options) (*Result, error) {
	c := &converter{inv: inv, gv: gv, used: map[string]bool{}, members: map[string]map[string]bool{}}
	c.vars = c.clusterVars()
	res := &Result{Name: opt.Name}
	if ok, _ := spec.MatchesSchema("#DNSLabel", opt.Name); !ok {
		return nil, fmt.Errorf("cluster name %q: want a DNS label (lowercase letters, digits, '-')", opt.Name)
	}
	hosts, err := c.hosts()
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if h.controlPlane {
			res.ControlPlanes = append(res.ControlPlanes, h.name)
		}
		if h.worker && !h.controlPlane {
			res.Workers = append(res.Workers, h.name)
		}
	}
	w := &cueWriter{}
	w.line("// Imported from the kubespray inventory %s by `clusterctl import kubespray`.", cueString(opt.Source))
	w.line("// Review it, then run `clusterctl plan`: what kubespray set and this spec")
	w.line("// cannot say was listed when it was written.")
	w.line("package clusterctl")
	w.line("")
	w.open("cluster")
	w.field("name", cueString(opt.Name), "")
	c.kubernetes(w, len(res.ControlPlanes))
	c.network(w)
	c.runtime(w)
	c.ssh(w)
	w.open("hosts")
	for _, h := range hosts {
		h.write(w)
	}
	w.close()
	w.close()
	c.reportUnused()
	sort.SliceStable(c.unmapped, func(i, j int) bool { return c.unmapped[i].Var < c.unmapped[j].Var })
	res.Unmapped = c.unmapped
	if res.Spec, err = w.format(); err != nil {
		return nil, fmt.Errorf("format spec: %w", err)
	}
	return res, nil
}

type converter struct {
	inv      *Inventory
	gv       GroupVars
	vars     map[string]any  // cluster-wide: all, then k8s_cluster
	used     map[string]bool // cluster-wide variables mapped (or reported)
	members  map[string]map[string]bool
	unmapped []Unmapped
}

func (c *converter) report(name, format string, args ...any) {
	c.unmapped = append(c.unmapped, Unmapped{Var: name, Reason: fmt.Sprintf(format, args...)})
}

// clusterVars merges the variables every cluster host sees, in Ansible's
// precedence: inventory-file vars of a group lose to its group_vars, and
// k8s_cluster wins over all.
func (c *converter) clusterVars() map[string]any {
	out := map[string]any{}
	for _, g := range []string{"all", groupCluster} {
		if grp := c.inv.Groups[g]; grp != nil {
			merge(out, grp.Vars)
		}
		merge(out, c.gv[g])
	}
	return out
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		dst[k] = v
	}
}

// str returns a cluster variable as a string, marking it used; ok is false
// when it is unset. Jinja templates are reported and treated as unset.
func (c *converter) str(name string) (string, bool) {
	v, ok := c.vars[name]
	if !ok || v == nil {
		return "", false
	}
	c.used[name] = true
	s, isScalar := scalar(v)
	if !isScalar {
		c.report(name, "want a single value, got %T", v)
		return "", false
	}
	if isTemplate(s) {
		c.report(name, "%q is a Jinja template: clusterctl does not evaluate templates; write the value it renders to", s)
		return "", false
	}
	return s, true
}

// strOrDefault is str falling back to kubespray's default when unset; a
// value that is set but unusable (a template) is "", already reported.
func (c *converter) strOrDefault(name string) (value string, set bool) {
	if v, ok := c.vars[name]; !ok || v == nil {
		return kubesprayDefaults[name], false
	}
	s, _ := c.str(name)
	return s, true
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(x), true
	}
	return "", false
}

func isTemplate(s string) bool {
	return strings.Contains(s, "{{") || strings.Contains(s, "{%")
}

func matches(def, s string) bool {
	ok, err := spec.MatchesSchema(def, s)
	if err != nil {
		panic(err) // a definition this package names is missing from the schema
	}
	return ok
}

func source(set bool, name string) string {
	if set {
		return name
	}
	return name + " unset: kubespray's default"
}

func (c *converter) kubernetes(w *cueWriter, controlPlanes int) {
	w.open("kubernetes")
	ver, from := c.version()
	w.field("version", cueString(ver), from)
	w.field("distribution", cueString("kubeadm"), "kubespray deploys with kubeadm")
	c.clusterDomain(w)
	c.endpoint(w, controlPlanes)
	c.checked(w, "kube_image_repo", "imageRepository", "#ImageRef", "an image reference")
	c.sans(w)
	w.close()
}

// checked maps the variable v onto field when the schema's definition def
// accepts its value, and reports it as unmapped otherwise.
func (c *converter) checked(w *cueWriter, v, field, def, what string) {
	s, ok := c.str(v)
	if !ok {
		return
	}
	if !matches(def, s) {
		c.report(v, "%q is not %s the spec accepts", s, what)
		return
	}
	w.field(field, cueString(s), v)
}

func (c *converter) version() (string, string) {
	s, ok := c.str("kube_version")
	if !ok {
		if _, set := c.vars["kube_version"]; !set {
			c.report("kube_version", "not set: kubespray's default depends on its release; the spec says %s: set it to the version the cluster runs", DefaultKubernetesVersion)
		}
		return DefaultKubernetesVersion, "kube_version unusable: edit to the version the cluster runs"
	}
	v := strings.TrimPrefix(s, "v")
	constraint := spec.SupportedVersions("kubeadm")
	sv, err := version.NewSemver(v)
	if err != nil || !matches("#K8sVersion", v) || sv.Metadata() != "" {
		c.report("kube_version", "%q is not a Kubernetes release version; the spec says %s", s, DefaultKubernetesVersion)
		return DefaultKubernetesVersion, "kube_version unusable: edit to the version the cluster runs"
	}
	cs, _ := version.NewConstraint(constraint)
	if !cs.Check(sv.Core()) {
		c.report("kube_version", "%s is outside the versions clusterctl supports for kubeadm (%s); the spec says %s: upgrade with kubespray first, or plan the upgrade", s, constraint, DefaultKubernetesVersion)
		return DefaultKubernetesVersion, "kube_version unsupported: edit to the version the cluster runs"
	}
	return v, "kube_version"
}

// clusterDomain: kubespray's cluster_name is the DNS domain (dns_domain
// defaults to it), not a name.
func (c *converter) clusterDomain(w *cueWriter) {
	if d, ok := c.vars["dns_domain"]; ok {
		c.used["dns_domain"] = true
		if s, _ := scalar(d); strings.ReplaceAll(s, " ", "") == "{{cluster_name}}" {
			delete(c.vars, "dns_domain") // the sample's default: cluster_name decides
		}
	}
	name, from := "dns_domain", "dns_domain"
	domain, ok := c.str("dns_domain")
	if !ok {
		var set bool
		name = "cluster_name"
		domain, set = c.strOrDefault("cluster_name")
		from = source(set, "cluster_name")
	}
	if domain == "" {
		return // reported
	}
	if !matches("#DNSName", domain) {
		c.report(name, "%q is not a DNS name the spec accepts for kubernetes.clusterDomain", domain)
		return
	}
	w.field("clusterDomain", cueString(domain), from)
}

func (c *converter) endpoint(w *cueWriter, controlPlanes int) {
	lb, set := c.vars["loadbalancer_apiserver"]
	if set {
		c.used["loadbalancer_apiserver"] = true
		m, _ := lb.(map[string]any)
		addr, _ := scalar(m["address"])
		port := 6443
		if p, ok := m["port"]; ok {
			ps, _ := scalar(p)
			port, _ = strconv.Atoi(ps)
		}
		if !matches("#IP", addr) && !matches("#DNSName", addr) || port < 1 || port > 65535 {
			c.report("loadbalancer_apiserver", "want {address: IP or DNS name, port: 1-65535}, got %v", lb)
		} else {
			w.inline("controlPlaneEndpoint", "loadbalancer_apiserver",
				[2]string{"mode", cueString("external")}, [2]string{"address", cueString(addr)}, [2]string{"port", strconv.Itoa(port)})
			return
		}
	}
	if controlPlanes > 1 {
		// kubespray's default: a local proxy on each node (loadbalancer_apiserver_localhost).
		w.inline("controlPlaneEndpoint", "kubespray's localhost load balancer; clusterctl's listens on 127.0.0.1:7443",
			[2]string{"mode", cueString("node-local")})
	}
}

func (c *converter) sans(w *cueWriter) {
	v, ok := c.vars["supplementary_addresses_in_ssl_keys"]
	if !ok {
		return
	}
	c.used["supplementary_addresses_in_ssl_keys"] = true
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		s, _ := scalar(x)
		if matches("#IP", s) || matches("#DNSName", s) {
			out = append(out, cueString(s))
		} else {
			c.report("supplementary_addresses_in_ssl_keys", "%q is not an IP address or DNS name", s)
		}
	}
	if len(out) > 0 {
		w.field("apiServerSANs", "["+strings.Join(out, ", ")+"]", "supplementary_addresses_in_ssl_keys")
	}
}

func (c *converter) network(w *cueWriter) {
	w.open("network")
	for _, n := range []struct{ field, v string }{{"podCIDR", "kube_pods_subnet"}, {"serviceCIDR", "kube_service_addresses"}} {
		s, set := c.strOrDefault(n.v)
		if s == "" {
			continue // reported: the spec keeps clusterctl's default
		}
		if p, err := netip.ParsePrefix(s); err != nil || p.Masked() != p || !matches("#CIDR", s) {
			c.report(n.v, "%q is not a CIDR the spec accepts (e.g. 10.233.64.0/18); the spec keeps clusterctl's default", s)
			continue
		}
		w.field(n.field, cueString(s), source(set, n.v))
	}
	mode, set := c.strOrDefault("kube_proxy_mode")
	switch mode {
	case "iptables", "ipvs", "nftables":
		w.field("kubeProxyMode", cueString(mode), source(set, "kube_proxy_mode"))
	case "": // reported
	default:
		c.report("kube_proxy_mode", "%q: clusterctl runs kube-proxy in nftables, iptables or ipvs mode; the spec keeps nftables", mode)
	}
	plugin, set := c.strOrDefault("kube_network_plugin")
	switch plugin {
	case "flannel":
		w.field("cni", cueString("flannel"), source(set, "kube_network_plugin"))
	case "cni":
		w.field("cni", cueString("none"), "kube_network_plugin cni: a CNI of your own")
	case "": // reported; "none" leaves whatever runs alone
		w.field("cni", cueString("none"), "kube_network_plugin unusable")
	default:
		c.report("kube_network_plugin", "%q (%s): clusterctl installs flannel only; the spec says cni \"none\", which leaves the running CNI alone", plugin, source(set, "kube_network_plugin"))
		w.field("cni", cueString("none"), "kube_network_plugin: a CNI clusterctl does not install")
	}
	w.close()
}

func (c *converter) runtime(w *cueWriter) {
	if m, set := c.strOrDefault("container_manager"); m != "containerd" && m != "" {
		c.report("container_manager", "%q (%s): clusterctl runs containerd only", m, source(set, "container_manager"))
	}
	w.open("runtime")
	c.checked(w, "containerd_version", "version", "#Version", "a version")
	c.mirrors(w)
	w.close()
}

// mirrors maps containerd_registries_mirrors: [{prefix, mirrors: [{host,
// capabilities, skip_verify, header}]}] onto runtime.mirrors.
func (c *converter) mirrors(w *cueWriter) {
	const name = "containerd_registries_mirrors"
	v, ok := c.vars[name]
	if !ok {
		return
	}
	c.used[name] = true
	list, ok := v.([]any)
	if !ok {
		c.report(name, "want a list of {prefix, mirrors}, got %T", v)
		return
	}
	byPrefix := map[string][]string{}
	var order []string
	for i, e := range list {
		m, _ := e.(map[string]any)
		prefix, _ := scalar(m["prefix"])
		at := fmt.Sprintf("%s[%d]", name, i)
		if !matches("#RegistryHost", prefix) {
			c.report(at, "prefix %q is not a registry host the spec accepts", prefix)
			continue
		}
		mirrors, _ := m["mirrors"].([]any)
		for j, me := range mirrors {
			mm, _ := me.(map[string]any)
			c.mirror(fmt.Sprintf("%s.mirrors[%d]", at, j), mm)
			host, _ := scalar(mm["host"])
			if !validMirror(host) {
				c.report(fmt.Sprintf("%s.mirrors[%d]", at, j), "host %q is not an http(s) mirror URL the spec accepts", host)
				continue
			}
			if _, seen := byPrefix[prefix]; !seen {
				order = append(order, prefix)
			}
			byPrefix[prefix] = append(byPrefix[prefix], cueString(host))
		}
	}
	if len(order) == 0 {
		return
	}
	w.open("mirrors") // comment-free: the source is one variable
	for _, p := range order {
		w.field(cueString(p), "["+strings.Join(byPrefix[p], ", ")+"]", "")
	}
	w.close()
}

// mirror reports the per-mirror settings the spec has no place for. Header
// values are never shown: they usually carry credentials.
func (c *converter) mirror(at string, m map[string]any) {
	if _, ok := m["header"]; ok {
		c.report(at+".header", "request headers (often credentials) are not in the spec; configure registry authentication outside it")
	}
	if v, ok := m["skip_verify"]; ok {
		if s, _ := scalar(v); s == "true" || s == "True" {
			c.report(at+".skip_verify", "clusterctl skips TLS verification per registry: add the registry to runtime.insecureRegistries if you need it")
		}
	}
	if v, ok := m["capabilities"]; ok {
		caps, _ := v.([]any)
		if len(caps) != 2 || fmt.Sprint(caps...) != fmt.Sprint("pull", "resolve") {
			c.report(at+".capabilities", "clusterctl's mirrors pull and resolve; other capabilities are not in the spec")
		}
	}
}

func validMirror(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && matches("#MirrorURL", s)
}

// ssh writes the cluster-wide SSH settings and the bastion.
func (c *converter) ssh(w *cueWriter) {
	w.open("ssh")
	if u, ok := c.str("ansible_user"); ok {
		if matches("#UserName", u) {
			w.field("user", cueString(u), "ansible_user")
		} else {
			c.report("ansible_user", "%q is not a user name the spec accepts", u)
		}
	}
	if p, ok := c.str("ansible_port"); ok {
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
			w.field("port", strconv.Itoa(n), "ansible_port")
		} else {
			c.report("ansible_port", "%q is not a port", p)
		}
	}
	if k, ok := c.str("ansible_ssh_private_key_file"); ok {
		w.field("identityFile", cueString(k), "ansible_ssh_private_key_file")
	}
	for _, secret := range []string{"ansible_become_password", "ansible_become_pass", "ansible_password", "ansible_ssh_pass"} {
		if _, ok := c.vars[secret]; ok {
			c.used[secret] = true
			c.report(secret, "a secret: the spec holds only the name of an environment variable (ssh.sudo.passwordEnv); the value is not shown or written")
		}
	}
	if _, ok := c.vars["ansible_become"]; ok {
		c.used["ansible_become"] = true // clusterctl uses sudo whenever the user is not root
	}
	c.bastion(w)
	w.close()
}

// bastion maps kubespray's [bastion] group (one host, ansible_host) onto
// ssh.bastion.
func (c *converter) bastion(w *cueWriter) {
	hosts := c.inv.Members(groupBastion)
	if len(hosts) == 0 {
		return
	}
	if len(hosts) > 1 {
		c.report("group bastion", "%d hosts: clusterctl uses one bastion; the first, %s, is in the spec", len(hosts), hosts[0])
	}
	name := hosts[0]
	hv := c.inv.Hosts[name]
	addr := name
	if s, ok := scalar(hv["ansible_host"]); ok && s != "" {
		addr = s
	}
	if !matches("#IP", addr) && !matches("#DNSName", addr) {
		c.report(name+": ansible_host", "bastion address %q is not an IP address or DNS name", addr)
		return
	}
	fields := [][2]string{{"address", cueString(addr)}}
	if p, ok := scalar(hv["ansible_port"]); ok {
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
			fields = append(fields, [2]string{"port", strconv.Itoa(n)})
		}
	}
	if u, ok := scalar(hv["ansible_user"]); ok && matches("#UserName", u) {
		fields = append(fields, [2]string{"user", cueString(u)})
	}
	w.inline("bastion", "group bastion", fields...)
}

// reportUnused lists every variable no mapping consumed: cluster-wide ones
// and those of other groups (per-host SSH variables aside).
func (c *converter) reportUnused() {
	for _, k := range sortedKeys(c.vars) {
		if !c.used[k] {
			c.report(k, "%s", genericReason(k))
		}
	}
	groups := map[string]map[string]any{}
	for name, g := range c.inv.Groups {
		if name != "all" && name != groupCluster && name != groupBastion {
			groups[name] = map[string]any{}
			merge(groups[name], g.Vars)
		}
	}
	for name, vars := range c.gv {
		if name != "all" && name != groupCluster && name != groupBastion {
			if groups[name] == nil {
				groups[name] = map[string]any{}
			}
			merge(groups[name], vars)
		}
	}
	for _, g := range sortedKeys(groups) {
		for _, k := range sortedKeys(groups[g]) {
			if !contains(hostVarNames, k) {
				c.report("group "+g+": "+k, "%s; clusterctl reads cluster settings from the groups all and k8s_cluster", genericReason(k))
			}
		}
	}
}

// genericReason says why a variable without a mapping is left out.
func genericReason(name string) string {
	switch {
	case name == "upstream_dns_servers":
		return "the spec has no DNS upstream: CoreDNS forwards to each node's /etc/resolv.conf"
	case name == "etcd_deployment_type":
		return "clusterctl runs etcd stacked on the control planes (kubeadm static pods)"
	case strings.HasPrefix(name, "calico_"):
		return "a calico setting: clusterctl does not install calico"
	case strings.Contains(name, "password") || strings.Contains(name, "token") || strings.Contains(name, "secret"):
		return "not in the spec (the value is not shown)"
	}
	return "no equivalent in the clusterctl spec"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// errNoHosts: a spec needs at least one host.
var errNoHosts = errors.New("no hosts in groups kube_control_plane or kube_node")
