package hostprep_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/provision/steps/runtime"
)

// The ops of one node as the planner would make them, shared by the unit
// and integration tests. net is the hosts' /24 ("172.31.4").
func nodeOps(net, name, source string) []step.Op {
	// nodeN is the test host hN, at NET.1N.
	var entries []hostprep.HostEntry
	for i := 1; i <= 3; i++ {
		entries = append(entries, hostprep.HostEntry{Address: fmt.Sprintf("%s.1%d", net, i), Name: fmt.Sprintf("node-%d", i)})
	}
	return []step.Op{
		hostprep.Packages{Names: []string{"containerd", "runc", "containernetworking-plugins", "conntrack", "socat", "ethtool", "ipset"}, Source: source},
		// The block first: sudo resolves the new name through it.
		hostprep.EtcHosts{Entries: entries},
		hostprep.Hostname{Name: name},
		hostprep.Swap{},
		hostprep.SELinux{Mode: "permissive"},
		hostprep.KernelModules{Modules: []string{"overlay", "br_netfilter", "ip_vs"},
			Required: map[string]string{"ip_vs": `network.kubeProxyMode "ipvs"`}, Ignore: []string{"ip_vs"}},
		hostprep.Sysctl{Values: map[string]string{
			"net.ipv4.ip_forward":                 "1",
			"net.bridge.bridge-nf-call-iptables":  "1",
			"net.bridge.bridge-nf-call-ip6tables": "1",
		}},
		hostprep.Firewall{Mode: "open-ports", Ports: []hostprep.Port{
			{Proto: "tcp", Port: "6443", For: "kube-apiserver"},
			{Proto: "tcp", Port: "10250", For: "kubelet"},
			{Proto: "tcp", Port: "30000-32767", For: "NodePorts"},
		}},
		hostprep.TimeSync{Servers: []string{"ntp1.example.net", "10.0.0.1"}},
		runtime.Containerd{Source: source, CgroupDriver: "systemd", SandboxImage: "registry.k8s.io/pause:3.10.1",
			Mirrors:            map[string][]string{"docker.io": {"mirror.local:5000"}},
			InsecureRegistries: []string{"registry.local:5000"}},
	}
}

// needs is the union of what ops ask the probe for.
func needs(ops []step.Op) facts.Request {
	var r facts.Request
	for _, op := range ops {
		if n, ok := op.(step.FactsNeeder); ok {
			r = r.Merge(n.Needs())
		}
	}
	return r
}

func loadFacts(t testing.TB, name string) *facts.Facts {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".probe"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := facts.Parse("node-1", b)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return f
}
