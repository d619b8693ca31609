// Package kube brings up Kubernetes on prepared hosts: binaries, images,
// the control plane and node joins, through a distribution driver.
package kube

import (
	"fmt"
	"sort"
	"strings"

	"github.com/clusterctl/clusterctl/provision/step"
)

// Cluster is what every control-plane and join step needs to know about the
// cluster as a whole. Secrets (tokens, certificate keys) are not here: they
// are made during apply and held in memory only.
type Cluster struct {
	Name            string   `json:"name"`
	Distribution    string   `json:"distribution"` // kubeadm | k3s
	Version         string   `json:"version"`
	Endpoint        string   `json:"endpoint"` // host:port every node and client uses
	EndpointMode    string   `json:"endpointMode"`
	PodCIDR         string   `json:"podCIDR"`
	ServiceCIDR     string   `json:"serviceCIDR"`
	ClusterDomain   string   `json:"clusterDomain"`
	APIServerSANs   []string `json:"apiServerSANs,omitempty"`
	ImageRepository string   `json:"imageRepository,omitempty"`
	ProxyMode       string   `json:"proxyMode"`
	CgroupDriver    string   `json:"cgroupDriver"`
	CNI             string   `json:"cni"`
	// Timeouts are kubeadm's own waits, written into its init and join
	// configs; the planner fills every one (health.timeout by default).
	Timeouts Timeouts `json:"timeouts"`
	// EvictionHard are the kubelet's hard eviction thresholds (signal ->
	// threshold) written at init; empty keeps the kubelet's defaults.
	EvictionHard map[string]string `json:"evictionHard,omitempty"`
	// ImageGCHigh and ImageGCLow are the kubelet's image garbage collection
	// thresholds (disk usage percent); 0 keeps the kubelet's.
	ImageGCHigh int `json:"imageGCHigh,omitempty"`
	ImageGCLow  int `json:"imageGCLow,omitempty"`
}

// Timeouts are kubeadm v1beta4's `timeouts`, as Go durations ("5m0s").
type Timeouts struct {
	ControlPlaneComponentHealthCheck string `json:"controlPlaneComponentHealthCheck"`
	KubeletHealthCheck               string `json:"kubeletHealthCheck"`
	KubernetesAPICall                string `json:"kubernetesAPICall"`
	EtcdAPICall                      string `json:"etcdAPICall"`
	TLSBootstrap                     string `json:"tlsBootstrap"`
	Discovery                        string `json:"discovery"`
}

// ControlPlaneTaint keeps workloads off control planes that are not also
// workers (kubeadm's default taint, made explicit by the planner).
const ControlPlaneTaint = "node-role.kubernetes.io/control-plane"

// Taint is a node taint.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// Node is one host as Kubernetes will know it.
type Node struct {
	Name    string            `json:"name"`
	Address string            `json:"address"`
	Labels  map[string]string `json:"labels,omitempty"`
	Taints  []Taint           `json:"taints,omitempty"`
}

// Install puts kubelet, kubeadm and kubectl (or k3s) of one version on a host.
type Install struct {
	Distribution string `json:"distribution"`
	Version      string `json:"version"`
	Source       string `json:"source"` // online | bundle
	// NodeIP is the address the kubelet registers and serves on
	// (/etc/default/kubelet), so multi-homed hosts use the spec's address.
	NodeIP string `json:"nodeIP,omitempty"`
}

func (Install) Kind() string { return "kube/install" }
func (o Install) Describe() []step.DiffLine {
	what := "kubelet, kubeadm, kubectl"
	if o.Distribution == "k3s" {
		what = "k3s"
	}
	return []step.DiffLine{{Key: what, To: o.Version + " (" + o.Source + ")"}}
}

// Images imports the images a node needs into the runtime, once, after
// checking their sha256 (air-gapped bundle).
type Images struct {
	Role string `json:"role"` // control-plane | worker
}

func (Images) Kind() string { return "kube/images" }
func (o Images) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "images", To: o.Role + " images from the bundle"}}
}

// APIServerProxy runs a local TCP proxy (haproxy) on a node that balances
// to every API server (controlPlaneEndpoint mode node-local). Every node
// gets it, control planes included, and every node's lists all control
// planes from the start: members not up yet fail the health check.
type APIServerProxy struct {
	Cluster  string    `json:"cluster"`
	Listen   string    `json:"listen"` // 127.0.0.1:PORT, the cluster's endpoint
	Backends []Backend `json:"backends"`
}

// Backend is one control plane's API server.
type Backend struct {
	Name    string `json:"name"`    // the node's name, haproxy's server name
	Address string `json:"address"` // IP:6443
}

func (APIServerProxy) Kind() string { return "kube/apiserver-proxy" }
func (o APIServerProxy) Describe() []step.DiffLine {
	bs := make([]string, len(o.Backends))
	for i, b := range o.Backends {
		bs[i] = b.Name + " " + b.Address
	}
	return []step.DiffLine{{Key: "haproxy on " + o.Listen, To: strings.Join(bs, ", ")}}
}

// InitControlPlane initialises the cluster on its first control plane.
type InitControlPlane struct {
	Cluster Cluster `json:"cluster"`
	Node    Node    `json:"node"`
}

func (InitControlPlane) Kind() string { return "kube/init" }
func (o InitControlPlane) Describe() []step.DiffLine {
	c := o.Cluster
	return []step.DiffLine{
		{Key: "control plane", To: fmt.Sprintf("%s %s, first member", c.Distribution, c.Version)},
		{Key: "endpoint", To: c.Endpoint},
		{Key: "pod CIDR", To: c.PodCIDR},
		{Key: "service CIDR", To: c.ServiceCIDR},
		{Key: "kube-proxy mode", To: c.ProxyMode},
	}
}

// JoinControlPlane adds a further control plane (and etcd member); joins run
// one at a time so etcd never loses quorum while a member is added.
type JoinControlPlane struct {
	Cluster Cluster `json:"cluster"`
	Node    Node    `json:"node"`
	Via     string  `json:"via"` // host that issues the join credentials
}

func (JoinControlPlane) Kind() string { return "kube/join-control-plane" }
func (o JoinControlPlane) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "join", To: "control plane of " + o.Cluster.Endpoint}}
}

// JoinWorker adds a worker node; workers join in parallel.
type JoinWorker struct {
	Cluster Cluster `json:"cluster"`
	Node    Node    `json:"node"`
	Via     string  `json:"via"`
}

func (JoinWorker) Kind() string { return "kube/join-worker" }
func (o JoinWorker) Describe() []step.DiffLine {
	d := []step.DiffLine{{Key: "join", To: "worker of " + o.Cluster.Endpoint}}
	return append(d, describeNode(o.Node)...)
}

func describeNode(n Node) []step.DiffLine {
	var d []step.DiffLine
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d = append(d, step.DiffLine{Key: "label " + k, To: n.Labels[k]})
	}
	for _, t := range n.Taints {
		d = append(d, step.DiffLine{Key: "taint " + t.Key, To: t.Value + ":" + t.Effect})
	}
	return d
}

// Kubeconfig fetches the admin kubeconfig and merges it into the operator's
// kubeconfig as a context named after the cluster.
type Kubeconfig struct {
	Cluster  string `json:"cluster"`
	Endpoint string `json:"endpoint"`
	// Source is the admin kubeconfig on the control plane; empty is
	// kubeadm's admin.conf.
	Source string `json:"source,omitempty"`
}

var _ step.Recurring = Kubeconfig{}

func (Kubeconfig) Kind() string         { return "kube/kubeconfig" }
func (Kubeconfig) RunsEveryApply() bool { return true }
func (o Kubeconfig) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "context", To: o.Cluster + " -> https://" + o.Endpoint}}
}
