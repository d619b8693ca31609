// Package addons applies what runs inside the cluster: the CNI, the spec's
// manifests, and the health check at the end of every apply.
package addons

import (
	"strconv"

	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// CNI applies the bundled network plugin's manifest, templated with the
// cluster's pod CIDR.
type CNI struct {
	Plugin  string `json:"plugin"` // flannel | calico
	PodCIDR string `json:"podCIDR"`
	// Admin is how to run kubectl on the control plane (zero: kubeadm's);
	// the distribution's, not the spec's, so not part of the plan.
	Admin kube.Admin `json:"-"`
}

func (CNI) Kind() string { return "addons/cni" }
func (o CNI) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "cni", To: o.Plugin + " for " + o.PodCIDR}}
}

// Manifest applies one of the spec's manifests with server-side apply.
type Manifest struct {
	Name      string `json:"name"`
	Path      string `json:"path"` // as written in the spec, relative to SpecDir
	SpecDir   string `json:"-"`    // where the spec lives on the operator's machine
	Namespace string `json:"namespace,omitempty"`
	Wait      bool   `json:"wait"`
	// Timeout bounds the wait for rollouts (the spec's health timeout).
	Timeout string     `json:"timeout,omitempty"`
	Admin   kube.Admin `json:"-"` // as CNI's
}

func (Manifest) Kind() string { return "addons/manifest" }
func (o Manifest) Describe() []step.DiffLine {
	d := []step.DiffLine{{Key: "manifest " + o.Name, To: o.Path}}
	if o.Wait {
		d = append(d, step.DiffLine{Key: "wait", To: "rollout"})
	}
	return d
}

// Probe is one HTTP check.
type Probe struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Status int    `json:"status"`
}

// Health checks the whole cluster: API server, etcd, nodes, system pods,
// workloads and the spec's HTTP probes.
type Health struct {
	Nodes   []string   `json:"nodes"`
	Version string     `json:"version"`
	Timeout string     `json:"timeout"`
	Probes  []Probe    `json:"probes,omitempty"`
	Admin   kube.Admin `json:"-"` // as CNI's
}

var _ step.Recurring = Health{}

func (Health) Kind() string         { return "addons/health" }
func (Health) RunsEveryApply() bool { return true }
func (o Health) Describe() []step.DiffLine {
	d := []step.DiffLine{{Key: "nodes Ready", To: strconv.Itoa(len(o.Nodes)) + " at " + o.Version}}
	for _, p := range o.Probes {
		d = append(d, step.DiffLine{Key: "probe " + p.Name, To: p.URL + " -> " + strconv.Itoa(p.Status)})
	}
	return d
}
