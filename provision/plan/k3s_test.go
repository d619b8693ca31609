package plan_test

import (
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/steps/addons"
	"github.com/clusterctl/clusterctl/provision/steps/k3s"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// The k3s driver's graph: no runtime step (k3s embeds containerd), no CNI
// manifest (k3s runs flannel), servers join one at a time after the first,
// agents in parallel, and the shared cluster-wide steps use k3s's kubectl
// and kubeconfig.
func TestK3sGraph(t *testing.T) {
	g, _ := offline(t, load(t, "k3s"))
	before, independent := ordering(t, g)
	before("s1/hostprep/sysctl", "s1/k3s/install")
	before("s1/k3s/install", "s1/k3s/init")
	before("s1/k3s/init", "s2/k3s/join-server")
	before("s2/k3s/join-server", "s3/k3s/join-server")
	before("s1/k3s/init", "a1/k3s/join-agent")
	independent("a1/k3s/join-agent", "a2/k3s/join-agent")
	independent("a1/k3s/join-agent", "s2/k3s/join-server")
	before("s3/k3s/join-server", "cluster/addons/manifest/hello")
	before("a2/k3s/join-agent", "cluster/addons/manifest/hello")
	before("cluster/addons/manifest/hello", "cluster/addons/health")
	before("s1/k3s/init", "cluster/kube/kubeconfig")

	for _, id := range g.IDs() {
		if strings.Contains(id, "/runtime/") || strings.Contains(id, "/kube/install") || id == "cluster/addons/cni" {
			t.Errorf("k3s graph has step %s", id)
		}
	}
	get := func(id string) any {
		t.Helper()
		s, ok := g.Get(id)
		if !ok {
			t.Fatalf("no step %s", id)
		}
		return s.Op
	}
	if op := get("a1/k3s/install").(k3s.Install); op.Role != k3s.RoleAgent || op.Source != "bundle" {
		t.Errorf("a1 install: %+v", op)
	}
	if op := get("s2/k3s/join-server").(k3s.JoinServer); op.Via != "s1" || op.Cluster.Endpoint != "10.30.0.100:6443" ||
		op.Runtime.Mirrors["docker.io"][0] != "https://mirror.edge.example.org:5000" {
		t.Errorf("s2 join: %+v", op)
	}
	if op := get("cluster/kube/kubeconfig").(kube.Kubeconfig); op.Source != k3s.KubeconfigFile {
		t.Errorf("kubeconfig source %q, want %s", op.Source, k3s.KubeconfigFile)
	}
	if op := get("cluster/addons/health").(addons.Health); op.Admin != k3s.Admin() {
		t.Errorf("health admin %+v, want k3s's", op.Admin)
	}
	if op := get("cluster/addons/manifest/hello").(addons.Manifest); op.Admin != k3s.Admin() {
		t.Errorf("manifest admin %+v, want k3s's", op.Admin)
	}
}

// Without an external endpoint, nodes join through the first server.
func TestK3sJoinsThroughFirstServer(t *testing.T) {
	c := load(t, "k3s")
	c.Kubernetes.ControlPlaneEndpoint.Mode, c.Kubernetes.ControlPlaneEndpoint.Address = "node-local", ""
	g, _ := offline(t, c)
	s, _ := g.Get("a1/k3s/join-agent")
	if ep := s.Op.(k3s.JoinAgent).Cluster.Endpoint; ep != "10.30.0.11:6443" {
		t.Errorf("agents join through %s, want the first server 10.30.0.11:6443", ep)
	}
	if _, ok := g.Get("a1/kube/apiserver-proxy"); ok {
		t.Error("k3s graph has a node-local proxy step; k3s agents balance over the servers themselves")
	}
}
