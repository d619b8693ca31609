package k3s_test

import (
	"flag"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/steps/k3s"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

var _ = flag.Bool("update", false, "rewrite golden files")

// cluster is a 3-server HA cluster behind an external endpoint, as the
// planner maps inventories/k3s.
var cluster = kube.Cluster{
	Name: "edge", Distribution: "k3s", Version: "1.34.2+k3s1", Endpoint: "10.30.0.100:6443", EndpointMode: "external",
	PodCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDomain: "cluster.local",
	APIServerSANs: []string{"k3s.edge.example.org", "10.30.0.100"}, ProxyMode: "iptables", CNI: "flannel",
}

var runtime = k3s.Runtime{
	Mirrors:            map[string][]string{"docker.io": {"https://mirror.edge.example.org:5000"}, "quay.io": {"http://10.30.0.5:5000", "https://mirror.edge.example.org:5000"}},
	InsecureRegistries: []string{"10.30.0.5:5000"},
}

var cpTaint = []kube.Taint{{Key: kube.ControlPlaneTaint, Effect: "NoSchedule"}}

func server(name, addr string) kube.Node {
	return kube.Node{Name: name, Address: addr, Taints: cpTaint}
}

var (
	initOp   = k3s.Init{Cluster: cluster, Node: server("s1", "10.30.0.11"), Runtime: runtime}
	joinS2   = k3s.JoinServer{Cluster: cluster, Node: server("s2", "10.30.0.12"), Runtime: runtime, Via: "s1"}
	joinS3   = k3s.JoinServer{Cluster: cluster, Node: server("s3", "10.30.0.13"), Runtime: runtime, Via: "s1"}
	agentOp  = k3s.JoinAgent{Cluster: cluster, Runtime: runtime, Via: "s1", Node: kube.Node{Name: "a1", Address: "10.30.1.21", Labels: map[string]string{"node.example.org/pool": "edge", "tier": "web"}, Taints: []kube.Taint{{Key: "node.example.org/dedicated", Value: "ingest", Effect: "NoSchedule"}}}}
	agentOp2 = k3s.JoinAgent{Cluster: cluster, Runtime: runtime, Via: "s1", Node: kube.Node{Name: "a2", Address: "10.30.1.22"}}
)

// freshFacts are a prepared Debian host without k3s.
func freshFacts(name string) *facts.Facts {
	return &facts.Facts{
		Host: name, OSID: "debian", OSFamily: "debian", Init: "systemd", CgroupV: 2, PackageManager: "apt", Arch: "x86_64",
		Files: map[string]string{}, Services: map[string]string{},
	}
}
