package plan

import (
	"fmt"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/steps/k3s"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// The distribution-driver seam: a driver is the transformers that bring
// Kubernetes up on prepared hosts, between host preparation and the
// cluster-wide steps (CNI, manifests, health, kubeconfig), which both
// drivers share through kube.Admin. Each driver fills the phases
// "HOST/kube", "cluster/init", "cluster/control-planes" and
// "cluster/workers" that the shared transformers depend on.

// isK3s reports whether the spec asks for the k3s driver.
func isK3s(c *spec.Cluster) bool { return c.Kubernetes.Distribution == "k3s" }

// k3sTransformers build a k3s cluster: k3s's embedded containerd replaces
// the runtime step; its agents balance over all servers themselves, so
// node-local endpoints need no proxy.
func k3sTransformers() []transformer {
	return []transformer{hostPrep, k3sBinaries, k3sServers, k3sAgents, addonsAndManifests, k3sRemovals, healthAndKubeconfig, stateRecord}
}

// admin is how the shared cluster-wide steps run kubectl.
func (b *builder) admin() kube.Admin {
	if isK3s(b.c) {
		return k3s.Admin()
	}
	return kube.Admin{}
}

// Admin is how commands outside a plan (status, kubeconfig, the state
// record) act as the cluster admin on a control plane of c.
func Admin(c *spec.Cluster) kube.Admin {
	if isK3s(c) {
		return k3s.Admin()
	}
	return kube.Admin{}.OrKubeadm()
}

// adminKubeconfig is the admin kubeconfig the kubeconfig step fetches
// ("" is kubeadm's admin.conf).
func (b *builder) adminKubeconfig() string {
	if isK3s(b.c) {
		return k3s.KubeconfigFile
	}
	return ""
}

// embeddedCNI: k3s runs flannel itself, so no CNI manifest is applied.
func (b *builder) embeddedCNI() bool { return isK3s(b.c) && b.c.Network.CNI == "flannel" }

func (b *builder) k3sRole(n string) string {
	if b.c.Hosts[n].Has(spec.RoleControlPlane) {
		return k3s.RoleServer
	}
	return k3s.RoleAgent
}

func k3sDownload(a spec.Artifact, ok bool) *k3s.Download {
	if !ok {
		return nil
	}
	return &k3s.Download{URL: a.URL, SHA256: a.SHA256}
}

func k3sBinaries(b *builder) error {
	k := b.c.Kubernetes
	for _, n := range b.c.Names() {
		op := k3s.Install{Version: k.Version, Source: b.c.Artifacts.Mode, Role: b.k3sRole(n)}
		if op.Source == "online" {
			bin, ok := b.c.Artifacts.URLs["k3s"]
			op.Binary = k3sDownload(bin, ok)
			img, ok := b.c.Artifacts.URLs["k3s-airgap-images"]
			op.Images = k3sDownload(img, ok)
		}
		b.phaseSteps[n+"/kube"] = []string{b.add(n, true, op, b.after(n, "hostprep")...)}
	}
	return nil
}

// k3sCluster is the cluster as the k3s steps see it. Nodes join through
// the endpoint when it is an external address (a balancer or VIP), else
// through the first server: after joining, k3s's agents balance over
// every server on their own.
func (b *builder) k3sCluster() kube.Cluster {
	cl := b.kubeCluster()
	cl.Endpoint = endpointFromOperator(b.c, b.first)
	cl.ImageRepository, cl.CgroupDriver = "", "" // kubeadm's; k3s's containerd is its own
	return cl
}

func (b *builder) k3sRuntime() k3s.Runtime {
	rt := b.c.Runtime
	return k3s.Runtime{PauseImage: rt.SandboxImage, Mirrors: rt.Mirrors, InsecureRegistries: rt.InsecureRegistries}
}

// k3sServers: the first server initialises (cluster-init, embedded etcd);
// the others join one after another, each once its etcd member votes.
func k3sServers(b *builder) error {
	cl, rt := b.k3sCluster(), b.k3sRuntime()
	prev := b.add(b.first, true, k3s.Init{Cluster: cl, Node: b.node(b.first), Runtime: rt}, b.after(b.first, "kube")...)
	b.phaseSteps[ClusterScope+"/init"] = []string{prev}
	members := []string{prev}
	for _, n := range b.cps[1:] {
		id := b.add(n, true, k3s.JoinServer{Cluster: cl, Node: b.node(n), Runtime: rt, Via: b.first}, append(b.after(n, "kube"), prev)...)
		members = append(members, id)
		prev = id
	}
	b.phaseSteps[ClusterScope+"/control-planes"] = members
	return nil
}

// k3sAgents join in parallel once the first server answers.
func k3sAgents(b *builder) error {
	cl, rt := b.k3sCluster(), b.k3sRuntime()
	var joins []string
	for _, n := range b.c.Workers() {
		joins = append(joins, b.add(n, true, k3s.JoinAgent{Cluster: cl, Node: b.node(n), Runtime: rt, Via: b.first},
			append(b.after(n, "kube"), b.after(ClusterScope, "init")...)...))
	}
	b.phaseSteps[ClusterScope+"/workers"] = joins
	return nil
}

// k3sRemovals: taking k3s hosts out of the cluster is not built yet; a
// plan that needs it says so instead of leaving them behind silently.
func k3sRemovals(b *builder) error {
	if r := b.opt.Removed(b.c); len(r) > 0 {
		return fmt.Errorf("host %s left the spec: removing hosts from a k3s cluster is not supported yet (drain it, run k3s-uninstall on it and delete its Node by hand)", r[0].Name)
	}
	return nil
}
