// Package plan turns a spec (and, when online, the hosts' facts) into the
// graph of steps that converges the cluster, and into Plan data that people
// read and machines check before applying.
package plan

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/addons"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/runtime"
)

// ClusterScope is the host part of IDs of steps that act on the cluster as a
// whole (run through its first control plane).
const ClusterScope = "cluster"

// Graph is the plan's DAG of steps.
type Graph = dag.Graph[step.Step]

// builder accumulates steps; each transformer adds one concern.
type builder struct {
	c     *spec.Cluster
	g     *Graph
	first string   // the control plane that initialises the cluster
	cps   []string // control planes in spec order
	opt   BuildOptions
	// phaseSteps maps "host/phase" to the steps of that phase on the host,
	// so later transformers depend on a phase without knowing its parts.
	phaseSteps map[string][]string
}

// transformer adds one concern's steps and edges to the graph.
type transformer func(b *builder) error

// BuildGraph maps the spec into the complete graph of a cluster build.
func BuildGraph(c *spec.Cluster) (*Graph, error) { return Build(c, BuildOptions{}) }

// Build maps the spec, and what the cluster recorded of its last apply,
// into the graph of steps that converges the cluster.
func Build(c *spec.Cluster, o BuildOptions) (*Graph, error) {
	b := &builder{c: c, g: dag.New[step.Step](), cps: c.ControlPlanes(), opt: o, phaseSteps: map[string][]string{}}
	if len(b.cps) == 0 {
		return nil, fmt.Errorf("build plan: no control plane in spec")
	}
	b.first = b.cps[0]
	if err := o.checkRemoveHosts(c); err != nil {
		return nil, fmt.Errorf("build plan: %w", err)
	}
	transformers := []transformer{
		hostPrep,
		containerRuntime,
		kubernetesBinaries,
		apiServerProxy,
		controlPlanes,
		runtimeMigrations,
		controlPlaneUpgrades,
		workers,
		workerUpgrades,
		joinSecrets,
		addonsAndManifests,
		removals,
		healthAndKubeconfig,
		stateRecord,
	}
	if isK3s(c) {
		transformers = k3sTransformers() // the k3s driver (k3s.go)
	}
	for _, t := range transformers {
		if err := t(b); err != nil {
			return nil, fmt.Errorf("build plan: %w", err)
		}
	}
	if err := b.g.Validate(); err != nil {
		return nil, fmt.Errorf("build plan: %w", err)
	}
	return b.g, nil
}

func (b *builder) add(hostName string, takesSlot bool, op step.Op, deps ...string) string {
	id := hostName + "/" + op.Kind()
	run := hostName
	if hostName == ClusterScope {
		run = b.first
	}
	if err := b.g.Add(id, step.Step{ID: id, Host: run, TakesHostSlot: takesSlot, Op: op}); err != nil {
		panic(err) // IDs are built from unique host names and kinds
	}
	b.needs(id, deps...)
	return id
}

// addNamed adds a step whose kind repeats per host (manifests by name).
func (b *builder) addNamed(id, run string, takesSlot bool, op step.Op, deps ...string) string {
	if err := b.g.Add(id, step.Step{ID: id, Host: run, TakesHostSlot: takesSlot, Op: op}); err != nil {
		panic(err)
	}
	b.needs(id, deps...)
	return id
}

func (b *builder) needs(id string, deps ...string) {
	for _, d := range deps {
		if d == "" {
			continue
		}
		if err := b.g.Connect(d, id); err != nil {
			panic(err)
		}
	}
}

func hostPrep(b *builder) error {
	hosts := newHostsBlocks(b.c)
	for _, n := range b.c.Names() {
		hp := b.c.HostPrepFor(n)
		var done []string
		done = append(done, b.add(n, true, hostprep.Hostname{Name: n}))
		if hp.EtcHosts != spec.EtcHostsUnmanaged {
			done = append(done, b.add(n, true, hosts.For(n, hp.EtcHosts)))
		}
		if hp.Swap == "off" {
			done = append(done, b.add(n, true, hostprep.Swap{}))
		}
		if hp.SELinux != "unmanaged" {
			done = append(done, b.add(n, true, hostprep.SELinux{Mode: hp.SELinux}))
		}
		pkgs := b.add(n, true, hostprep.Packages{Names: b.packages(), Source: b.c.Artifacts.Mode})
		done = append(done, pkgs)
		mods := b.add(n, true, hostprep.KernelModules{
			File:     "/etc/modules-load.d/kubernetes.conf",
			Modules:  hp.KernelModules,
			Required: requiredBy(b.c.Network.KubeProxyMode, hp.KernelModules),
			Ignore:   ignoredModules(hp.IgnorePreflight),
		})
		done = append(done, mods)
		// bridge-nf-call-* exist only once br_netfilter is loaded.
		done = append(done, b.add(n, true, hostprep.Sysctl{File: "/etc/sysctl.d/99-kubernetes.conf", Values: hp.Sysctl}, mods))
		if hp.Firewall != "unmanaged" {
			done = append(done, b.add(n, true, hostprep.Firewall{Mode: hp.Firewall, Ports: b.ports(n)}, pkgs))
		}
		if hp.TimeSync.Enabled {
			done = append(done, b.add(n, true, hostprep.TimeSync{Servers: hp.TimeSync.Servers}, pkgs))
		}
		b.phaseSteps[n+"/hostprep"] = done
	}
	return nil
}

// after lists every step of a host's phase, for dependents.
func (b *builder) after(hostName, phase string) []string {
	return b.phaseSteps[hostName+"/"+phase]
}

func (b *builder) packages() []string {
	p := []string{"conntrack", "socat", "ipset", "iptables", "ethtool"}
	switch b.c.Network.KubeProxyMode {
	case "ipvs":
		p = append(p, "ipvsadm")
	case "nftables":
		p = append(p, "nftables") // nft: to read kube-proxy's rules on the host, and for reset to remove them
	}
	if nodeLocal(b.c) {
		p = append(p, "haproxy") // the node-local API server proxy
	}
	sort.Strings(p)
	return p
}

// ports are the ones the distribution needs on this host's roles.
func (b *builder) ports(n string) []hostprep.Port {
	h := b.c.Hosts[n]
	var ps []hostprep.Port
	add := func(proto, port, why string) { ps = append(ps, hostprep.Port{Proto: proto, Port: port, For: why}) }
	if h.Has(spec.RoleControlPlane) {
		add("tcp", strconv.Itoa(apiPort(b.c)), "kube-apiserver")
		add("tcp", "2379-2380", "etcd")
		if b.c.Kubernetes.Distribution == "kubeadm" {
			add("tcp", "10257", "kube-controller-manager")
			add("tcp", "10259", "kube-scheduler")
		}
	}
	add("tcp", "10250", "kubelet")
	add("tcp", "30000-32767", "NodePort services")
	if b.c.Network.CNI == "flannel" {
		add("udp", "8472", "flannel vxlan")
	}
	return ps
}

func requiredBy(proxyMode string, mods []string) map[string]string {
	out := map[string]string{}
	for _, m := range mods {
		switch {
		case m == "overlay":
			out[m] = "runtime (containerd overlayfs snapshotter)"
		case m == "br_netfilter":
			out[m] = "hostPrep.sysctl net.bridge.bridge-nf-call-iptables"
		case proxyMode == "ipvs" && (m == "nf_conntrack" || len(m) >= 5 && m[:5] == "ip_vs"):
			out[m] = "network.kubeProxyMode \"ipvs\""
		case proxyMode == "nftables" && m == "nf_tables":
			out[m] = "network.kubeProxyMode \"nftables\""
		}
	}
	return out
}

// ignoredModules reads "module-NAME" entries of ignorePreflight.
func ignoredModules(ignore []string) []string {
	var out []string
	for _, i := range ignore {
		if len(i) > 7 && i[:7] == "module-" {
			out = append(out, i[7:])
		}
	}
	return out
}

func containerRuntime(b *builder) error {
	for _, n := range b.c.Names() {
		id := b.add(n, true, b.containerd(), b.after(n, "hostprep")...)
		b.phaseSteps[n+"/runtime"] = []string{id}
	}
	return nil
}

// containerd is every host's runtime step.
func (b *builder) containerd() runtime.Containerd {
	rt := b.c.Runtime
	sandbox := rt.SandboxImage
	if sandbox == "" && b.c.Kubernetes.ImageRepository != "" {
		sandbox = b.c.Kubernetes.ImageRepository + "/pause:" + kube.PauseVersion(b.c.Kubernetes.Version)
	}
	return runtime.Containerd{
		Version:            rt.Version,
		Source:             b.c.Artifacts.Mode,
		CgroupDriver:       rt.CgroupDriver,
		SandboxImage:       sandbox,
		Mirrors:            rt.Mirrors,
		InsecureRegistries: rt.InsecureRegistries,
	}
}

func kubernetesBinaries(b *builder) error {
	k := b.c.Kubernetes
	for _, n := range b.c.Names() {
		install := b.add(n, true, kube.Install{Distribution: k.Distribution, Version: k.Version, Source: b.c.Artifacts.Mode, NodeIP: b.c.Hosts[n].Address}, b.after(n, "runtime")...)
		ready := []string{install}
		if b.c.Artifacts.Mode == "bundle" {
			role := spec.RoleWorker
			if b.c.Hosts[n].Has(spec.RoleControlPlane) {
				role = spec.RoleControlPlane
			}
			ready = append(ready, b.add(n, true, kube.Images{Role: role}, b.after(n, "runtime")...))
		}
		b.phaseSteps[n+"/kube"] = ready
	}
	return nil
}

// apiServerProxy runs the node-local balancer before anything talks to the
// endpoint through it.
func apiServerProxy(b *builder) error {
	if !nodeLocal(b.c) {
		return nil
	}
	backends := make([]kube.Backend, len(b.cps))
	for i, n := range b.cps {
		backends[i] = kube.Backend{Name: n, Address: net.JoinHostPort(b.c.Hosts[n].Address, strconv.Itoa(spec.APIServerPort))}
	}
	for _, n := range b.c.Names() {
		// After the packages (haproxy) and before kubeadm init or join.
		id := b.add(n, true, kube.APIServerProxy{Cluster: b.c.Name, Listen: endpoint(b.c, b.first), Backends: backends}, b.after(n, "runtime")...)
		b.phaseSteps[n+"/kube"] = append(b.phaseSteps[n+"/kube"], id)
	}
	return nil
}

func nodeLocal(c *spec.Cluster) bool {
	ep := c.Kubernetes.ControlPlaneEndpoint
	return ep != nil && ep.Mode == "node-local"
}

// apiPort is the port API servers listen on; node-local mode keeps 6443 on
// the servers and serves the endpoint port on loopback.
func apiPort(c *spec.Cluster) int {
	if ep := c.Kubernetes.ControlPlaneEndpoint; ep != nil && ep.Mode == "external" {
		return ep.Port
	}
	return spec.APIServerPort
}

func (b *builder) kubeCluster() kube.Cluster {
	k, nw := b.c.Kubernetes, b.c.Network
	return kube.Cluster{
		Name:            b.c.Name,
		Distribution:    k.Distribution,
		Version:         k.Version,
		Endpoint:        endpoint(b.c, b.first),
		EndpointMode:    endpointMode(b.c),
		PodCIDR:         nw.PodCIDR,
		ServiceCIDR:     nw.ServiceCIDR,
		ClusterDomain:   k.ClusterDomain,
		APIServerSANs:   k.APIServerSANs,
		ImageRepository: k.ImageRepository,
		ProxyMode:       nw.KubeProxyMode,
		CgroupDriver:    b.c.Runtime.CgroupDriver,
		CNI:             nw.CNI,
		Timeouts:        kubeadmTimeouts(k.Timeouts, b.c.Health.Timeout),
		EvictionHard:    k.Kubelet.EvictionHard,
		ImageGCHigh:     k.Kubelet.ImageGCHighThresholdPercent,
		ImageGCLow:      k.Kubelet.ImageGCLowThresholdPercent,
	}
}

// kubeadmTimeouts fills each of kubeadm's waits the spec left out with
// health.timeout, normalised ("5m" -> "5m0s") so plans compare equal.
func kubeadmTimeouts(t spec.KubeadmTimeouts, health string) kube.Timeouts {
	norm := func(v string) string {
		if v == "" {
			v = health
		}
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d.String()
		}
		return kube.DefaultTimeout.String()
	}
	return kube.Timeouts{
		ControlPlaneComponentHealthCheck: norm(t.ControlPlaneComponentHealthCheck),
		KubeletHealthCheck:               norm(t.KubeletHealthCheck),
		KubernetesAPICall:                norm(t.KubernetesAPICall),
		EtcdAPICall:                      norm(t.EtcdAPICall),
		TLSBootstrap:                     norm(t.TLSBootstrap),
		Discovery:                        norm(t.Discovery),
	}
}

func endpointMode(c *spec.Cluster) string {
	if ep := c.Kubernetes.ControlPlaneEndpoint; ep != nil {
		return ep.Mode
	}
	return "first-control-plane"
}

// endpoint is the address every node and client uses for the API server.
func endpoint(c *spec.Cluster, first string) string {
	ep := c.Kubernetes.ControlPlaneEndpoint
	switch {
	case ep == nil:
		return net.JoinHostPort(c.Hosts[first].Address, "6443")
	case ep.Mode == "node-local":
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(ep.Port))
	default:
		return net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port))
	}
}

func (b *builder) node(n string) kube.Node {
	h := b.c.Hosts[n]
	taints := make([]kube.Taint, len(h.Taints))
	for i, t := range h.Taints {
		taints[i] = kube.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect}
	}
	// A control plane keeps workloads off unless it is also a worker: the
	// taint kubeadm would add, made explicit so the node gets exactly these.
	if h.Has(spec.RoleControlPlane) && !h.Has(spec.RoleWorker) {
		taints = append(taints, kube.Taint{Key: kube.ControlPlaneTaint, Effect: "NoSchedule"})
	}
	return kube.Node{Name: n, Address: h.Address, Labels: h.Labels, Taints: taints}
}

// controlPlanes: the first initialises, the others join one after another so
// etcd grows by one member at a time.
func controlPlanes(b *builder) error {
	cl := b.kubeCluster()
	prev := b.add(b.first, true, kube.InitControlPlane{Cluster: cl, Node: b.node(b.first)}, b.after(b.first, "kube")...)
	b.phaseSteps[ClusterScope+"/init"] = []string{prev}
	members := []string{prev}
	for _, n := range b.cps[1:] {
		id := b.add(n, true, kube.JoinControlPlane{Cluster: cl, Node: b.node(n), Via: b.first}, append(b.after(n, "kube"), prev)...)
		members = append(members, id)
		prev = id
	}
	b.phaseSteps[ClusterScope+"/control-planes"] = members
	return nil
}

// workers join in parallel once the control plane answers.
func workers(b *builder) error {
	cl := b.kubeCluster()
	var joins []string
	for _, n := range b.c.Workers() {
		// After the first control plane's upgrade: a kubelet never joins
		// newer than its API server.
		joins = append(joins, b.add(n, true, kube.JoinWorker{Cluster: cl, Node: b.node(n), Via: b.first},
			append(b.after(n, "kube"), append(b.after(ClusterScope, "init"), b.after(ClusterScope, "control-plane-upgrades")[0])...)...))
	}
	b.phaseSteps[ClusterScope+"/workers"] = joins
	return nil
}

// joinSecrets deletes clusterctl's bootstrap tokens and uploaded
// certificates once kube/init and every join are done (upgrades make
// none, so a failed upgrade does not keep them).
func joinSecrets(b *builder) error {
	var joins []string
	for _, id := range append(b.after(ClusterScope, "control-planes"), b.after(ClusterScope, "workers")...) {
		if s, ok := b.g.Get(id); ok && isJoin(s.Op) {
			joins = append(joins, id)
		}
	}
	b.add(ClusterScope, true, kube.DeleteJoinSecrets{}, joins...)
	return nil
}

func isJoin(op step.Op) bool {
	switch op.(type) {
	case kube.InitControlPlane, kube.JoinControlPlane, kube.JoinWorker:
		return true
	}
	return false
}

func addonsAndManifests(b *builder) error {
	var ready []string
	if cni := b.c.Network.CNI; cni != "none" && !b.embeddedCNI() {
		ready = append(ready, b.add(ClusterScope, true, addons.CNI{Plugin: cni, PodCIDR: b.c.Network.PodCIDR, Admin: b.admin()}, b.after(ClusterScope, "init")...))
	}
	// Workloads need their nodes: manifests wait for every join.
	deps := append(append([]string{}, ready...), b.after(ClusterScope, "control-planes")...)
	deps = append(deps, b.after(ClusterScope, "workers")...)
	names := make([]string, 0, len(b.c.Manifests))
	for n := range b.c.Manifests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		m := b.c.Manifests[name]
		op := addons.Manifest{Name: name, Path: m.Path, SpecDir: b.c.Dir, Namespace: m.Namespace, Wait: m.Wait, Timeout: b.c.Health.Timeout, Admin: b.admin()}
		ready = append(ready, b.addNamed(ClusterScope+"/"+op.Kind()+"/"+name, b.first, true, op, deps...))
	}
	b.phaseSteps[ClusterScope+"/addons"] = append(ready, deps...)
	return nil
}

func healthAndKubeconfig(b *builder) error {
	names := b.c.Names()
	probeNames := make([]string, 0, len(b.c.Health.Probes))
	for n := range b.c.Health.Probes {
		probeNames = append(probeNames, n)
	}
	sort.Strings(probeNames)
	probes := make([]addons.Probe, len(probeNames))
	for i, n := range probeNames {
		p := b.c.Health.Probes[n]
		probes[i] = addons.Probe{Name: n, URL: p.URL, Status: p.Status}
	}
	b.add(ClusterScope, false, addons.Health{Nodes: names, Version: b.c.Kubernetes.Version, Timeout: b.c.Health.Timeout, Probes: probes, Admin: b.admin()},
		append(b.after(ClusterScope, "addons"), b.after(ClusterScope, "removals")...)...)
	b.add(ClusterScope, false, kube.Kubeconfig{Cluster: b.c.Name, Endpoint: endpointFromOperator(b.c, b.first), Source: b.adminKubeconfig()},
		b.after(ClusterScope, "init")...)
	return nil
}

// endpointFromOperator is where the operator's kubectl reaches the API: a
// node-local endpoint is loopback on nodes only, so use the first server.
// That keeps the cluster itself (kubelets, kube-proxy, pods) working
// through the loss of any control plane, but not the operator's kubectl
// through the loss of the first one: that takes an external endpoint (a
// load balancer or VIP), as with k0s's node-local load balancing. The first
// control plane is also where every cluster-wide step runs.
func endpointFromOperator(c *spec.Cluster, first string) string {
	if ep := c.Kubernetes.ControlPlaneEndpoint; ep != nil && ep.Mode == "external" {
		return net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port))
	}
	return net.JoinHostPort(c.Hosts[first].Address, "6443")
}

// hostsBlocks builds each host's /etc/hosts step. The "all" block is built
// (and hashed) once and shared by every host.
type hostsBlocks struct {
	c   *spec.Cluster
	all hostprep.EtcHosts
}

func newHostsBlocks(c *spec.Cluster) hostsBlocks {
	all := make([]hostprep.HostEntry, 0, len(c.Hosts))
	for _, n := range c.Names() {
		all = append(all, hostprep.HostEntry{Address: c.Hosts[n].Address, Name: n})
	}
	return hostsBlocks{c: c, all: hostprep.NewEtcHosts(all)}
}

// For is the step of host self in mode: a block of every host, of the
// control planes and self (in spec order), or none (the step then removes
// a block written before).
func (h hostsBlocks) For(self string, mode spec.EtcHostsMode) hostprep.EtcHosts {
	switch mode {
	case spec.EtcHostsControlPlanes:
		var out []hostprep.HostEntry
		for _, e := range h.all.Entries {
			if e.Name == self || h.c.Hosts[e.Name].Has(spec.RoleControlPlane) {
				out = append(out, e)
			}
		}
		return hostprep.NewEtcHosts(out)
	case spec.EtcHostsNone:
		return hostprep.EtcHosts{}
	default:
		return h.all
	}
}
