// Package k3s is the k3s distribution driver: it installs the k3s binary
// and its air-gap images, writes the systemd units and /etc/rancher/k3s
// (config.yaml, registries.yaml) itself (no install script), starts the
// first server with embedded etcd, and joins further servers one at a time
// and agents in parallel with the cluster's tokens, which are read over
// SSH, held in memory and redacted.
package k3s

import (
	"fmt"
	"sort"

	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// Download is an artifact an online host fetches itself, checked by sha256.
type Download struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

// Install puts the k3s binary of one version on a host, with the air-gap
// image archive in ImagesDir and the role's systemd unit; it starts
// nothing (the node steps do) and restarts a running k3s only when its
// binary changed.
type Install struct {
	Version string `json:"version"` // e.g. 1.37.2+k3s1
	Source  string `json:"source"`  // bundle | online
	Role    string `json:"role"`    // server | agent
	// Online: the binary's and (optionally) the air-gap images' URLs
	// (artifacts.urls "k3s" and "k3s-airgap-images").
	Binary *Download `json:"binary,omitempty"`
	Images *Download `json:"images,omitempty"`
}

func (Install) Kind() string { return "k3s/install" }
func (o Install) Describe() []step.DiffLine {
	d := []step.DiffLine{{Key: "k3s", To: o.Version + " (" + o.Source + ")"}, {Key: "unit", To: unit(o.Role)}}
	switch {
	case o.Source == "bundle":
		d = append(d, step.DiffLine{Key: "air-gap images", To: ImagesDir + " (bundle)"})
	case o.Images != nil:
		d = append(d, step.DiffLine{Key: "air-gap images", To: ImagesDir + " (" + o.Images.URL + ")"})
	}
	return d
}

// Runtime is what the spec's runtime section means to k3s, whose embedded
// containerd is configured through config.yaml and registries.yaml.
type Runtime struct {
	// PauseImage is the sandbox image (k3s's pause-image); empty keeps k3s's.
	PauseImage         string              `json:"pauseImage,omitempty"`
	Mirrors            map[string][]string `json:"mirrors,omitempty"`
	InsecureRegistries []string            `json:"insecureRegistries,omitempty"`
}

// Init starts the first server: embedded etcd (cluster-init), a fresh
// server token, the API server every later node joins through.
type Init struct {
	Cluster kube.Cluster `json:"cluster"`
	Node    kube.Node    `json:"node"`
	Runtime Runtime      `json:"runtime"`
}

func (Init) Kind() string { return "k3s/init" }
func (o Init) Describe() []step.DiffLine {
	c := o.Cluster
	d := []step.DiffLine{
		{Key: "control plane", To: fmt.Sprintf("k3s %s, first server (embedded etcd, cluster-init)", c.Version)},
		{Key: "endpoint", To: c.Endpoint},
		{Key: "pod CIDR", To: c.PodCIDR},
		{Key: "service CIDR", To: c.ServiceCIDR},
		{Key: "kube-proxy mode", To: c.ProxyMode},
		{Key: "flannel backend", To: flannelBackend(c.CNI)},
	}
	return append(d, describeNode(o.Node)...)
}

// JoinServer adds a server (and etcd member) through the endpoint with the
// server token; the planner runs these one at a time, each waiting until
// its etcd member votes.
type JoinServer struct {
	Cluster kube.Cluster `json:"cluster"`
	Node    kube.Node    `json:"node"`
	Runtime Runtime      `json:"runtime"`
	Via     string       `json:"via"` // the first server: token and membership
}

func (JoinServer) Kind() string { return "k3s/join-server" }
func (o JoinServer) Describe() []step.DiffLine {
	d := []step.DiffLine{{Key: "join", To: "server of " + o.Cluster.Endpoint + " (etcd member, one at a time)"}}
	return append(d, describeNode(o.Node)...)
}

// JoinAgent adds an agent with the agent token; agents join in parallel.
type JoinAgent struct {
	Cluster kube.Cluster `json:"cluster"`
	Node    kube.Node    `json:"node"`
	Runtime Runtime      `json:"runtime"`
	Via     string       `json:"via"`
}

func (JoinAgent) Kind() string { return "k3s/join-agent" }
func (o JoinAgent) Describe() []step.DiffLine {
	d := []step.DiffLine{{Key: "join", To: "agent of " + o.Cluster.Endpoint}}
	return append(d, describeNode(o.Node)...)
}

func describeNode(n kube.Node) []step.DiffLine {
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

// flannelBackend is k3s's flannel-backend for the spec's CNI: k3s runs
// flannel itself (vxlan); any other CNI comes from a manifest, so k3s's
// flannel and its network policy controller stay off.
func flannelBackend(cni string) string {
	if cni == "flannel" {
		return "vxlan"
	}
	return "none"
}
