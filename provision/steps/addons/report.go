package addons

import (
	"github.com/clusterctl/clusterctl/provision/state"
	"slices"
	"strconv"
	"strings"

	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// ReportFormat is the version of the Report's JSON document; it changes
// only when a field changes meaning or goes away (new fields may appear).
const ReportFormat = 1

// roleControlPlane is the spec's role (and kubeadm's node-role label) of
// control planes.
const roleControlPlane = "control-plane"

// Check states.
const (
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusUnknown = "unknown" // not checked (nothing to ask, or no answer)
)

// SSH states of a node's host.
const (
	SSHOK          = "ok"
	SSHUnreachable = "unreachable" // no connection (or it was lost)
	SSHFailed      = "failed"      // connected, but refused: authentication, host key, sudo
)

// Report is one look at the cluster: what `clusterctl status` prints and
// what the health step at the end of every apply judges. Fields are filled
// by Look (and, for SSH, by the status command); Judge derives Healthy and
// Problems from them.
type Report struct {
	FormatVersion int    `json:"formatVersion"`
	Cluster       string `json:"cluster,omitempty"`
	Healthy       bool   `json:"healthy"`
	// CheckedFrom is the control plane the look ran on; empty when none
	// could be reached.
	CheckedFrom string `json:"checkedFrom"`
	// Version is the kubelet version every node should run (the spec's).
	Version   string `json:"version,omitempty"`
	APIServer Check  `json:"apiServer"`
	Etcd      Etcd   `json:"etcd"`
	// Objects says whether nodes, pods and workloads could be listed; when
	// not, the nodes' Registered and Ready are unknown.
	Objects Check  `json:"objects"`
	Nodes   []Node `json:"nodes"`
	// Pods are the kube-system pods that are not running and ready.
	Pods []Pod `json:"pods"`
	// Workloads are the Deployments, DaemonSets and StatefulSets (any
	// namespace) that are not rolled out.
	Workloads []Workload    `json:"workloads"`
	Probes    []ProbeResult `json:"probes"`
	// Problems lists everything unhealthy, one line each, naming the node,
	// pod, workload or probe: nodes first, in spec order.
	Problems []string `json:"problems"`
	// State is the cluster's record of its last apply and its lock, as
	// status shows them; Judge does not look at it.
	State *state.Status `json:"state,omitempty"`
}

// Check is the answer to one question about the cluster.
type Check struct {
	Status string `json:"status"` // ok | failed | unknown
	Detail string `json:"detail,omitempty"`
}

func (c Check) OK() bool { return c.Status == StatusOK }

// Etcd is the API server's view of etcd (/readyz/etcd) and, when the
// control plane runs kubeadm's etcd pod, every member's own health.
type Etcd struct {
	Check
	Members []EtcdMember `json:"members"`
	// MembersError says why members could not be listed (no etcd pod on the
	// control plane looked from, e.g. external etcd): not a problem by
	// itself, since /readyz/etcd still answers for the API server's etcd.
	MembersError string `json:"membersError,omitempty"`
}

// EtcdMember is one member's answer to `etcdctl endpoint health --cluster`.
type EtcdMember struct {
	Endpoint string `json:"endpoint"`
	Node     string `json:"node,omitempty"` // the node with the endpoint's address
	Healthy  bool   `json:"healthy"`
	Error    string `json:"error,omitempty"`
}

// Node is one node of the spec, or of the cluster when it is not in the
// spec.
type Node struct {
	Name   string `json:"name"`
	InSpec bool   `json:"inSpec"`
	// SpecRoles are the spec's roles for the host (empty when unknown).
	SpecRoles []string `json:"specRoles"`
	// Roles are the node-role.kubernetes.io/ROLE labels in the cluster.
	Roles []string `json:"roles"`
	// SSH is "ok", "unreachable", "failed" or empty when not checked.
	SSH      string `json:"ssh,omitempty"`
	SSHError string `json:"sshError,omitempty"`
	// LookError: SSH answered but the look at the cluster failed there.
	LookError      string   `json:"lookError,omitempty"`
	Registered     bool     `json:"registered"`
	Ready          string   `json:"ready"` // the Ready condition: True | False | Unknown; empty when not registered
	ReadyReason    string   `json:"readyReason,omitempty"`
	KubeletVersion string   `json:"kubeletVersion,omitempty"`
	Healthy        bool     `json:"healthy"`
	Problems       []string `json:"problems"`
}

// Pod is a kube-system pod that is not running and ready.
type Pod struct {
	Name    string `json:"name"` // namespace/name
	Node    string `json:"node,omitempty"`
	Phase   string `json:"phase"`
	Problem string `json:"problem"`
}

// Workload is a Deployment, DaemonSet or StatefulSet not rolled out.
type Workload struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"` // namespace/name
	Problem string `json:"problem"`
}

// ProbeResult is one of the spec's HTTP probes and its answer.
type ProbeResult struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	Want int    `json:"want"`
	Got  int    `json:"got"` // 0: no answer
	OK   bool   `json:"ok"`
}

// Expect is what a look compares the cluster with.
type Expect struct {
	Nodes   []ExpectedNode
	Version string
	Probes  []Probe
	// Admin runs kubectl as the cluster admin (zero: kubeadm's).
	Admin kube.Admin
}

// ExpectedNode is one host of the spec; empty Roles are not compared.
type ExpectedNode struct {
	Name  string
	Roles []string
}

// Expect is the health step's expectation: its nodes (roles not compared:
// the step does not carry them), version and probes.
func (o Health) Expect() Expect {
	e := Expect{Version: o.Version, Probes: o.Probes, Admin: o.Admin}
	for _, n := range o.Nodes {
		e.Nodes = append(e.Nodes, ExpectedNode{Name: n})
	}
	return e
}

// NewReport is the report before anyone answered: the expected nodes,
// nothing registered, every check unknown for reason.
func NewReport(e Expect, reason string) *Report {
	r := &Report{
		FormatVersion: ReportFormat,
		APIServer:     Check{Status: StatusUnknown, Detail: reason},
		Etcd:          Etcd{Check: Check{Status: StatusUnknown, Detail: reason}},
		Objects:       Check{Status: StatusUnknown, Detail: reason},
	}
	if e.Version != "" {
		r.Version = kube.GitVersion(e.Version)
	}
	for _, n := range e.Nodes {
		r.Nodes = append(r.Nodes, Node{Name: n.Name, InSpec: true, SpecRoles: n.Roles})
	}
	for _, p := range e.Probes {
		want := p.Status
		if want == 0 {
			want = 200
		}
		r.Probes = append(r.Probes, ProbeResult{Name: p.Name, URL: p.URL, Want: want})
	}
	return r
}

// Node returns the row of the node called name, or nil.
func (r *Report) Node(name string) *Node {
	for i := range r.Nodes {
		if r.Nodes[i].Name == name {
			return &r.Nodes[i]
		}
	}
	return nil
}

// Judge derives every node's problems, the report's Problems and Healthy
// from the fields. Nodes in the cluster but not in the spec are shown but
// do not make the cluster unhealthy.
func (r *Report) Judge() {
	r.emptyLists()
	var problems []string
	listed := r.Objects.OK()
	for i := range r.Nodes {
		n := &r.Nodes[i]
		n.Problems = nodeProblems(n, listed, r.Version)
		n.Healthy = len(n.Problems) == 0
		if n.InSpec {
			for _, p := range n.Problems {
				problems = append(problems, "node "+n.Name+": "+p)
			}
		}
	}
	if !r.APIServer.OK() {
		problems = append(problems, "API server /readyz: "+orNoAnswer(r.APIServer.Detail))
	}
	// Unknown etcd and objects follow from an unknown API server: said once.
	if r.Etcd.Status == StatusFailed && r.Etcd.Detail != "" {
		problems = append(problems, "etcd: "+r.Etcd.Detail)
	}
	for _, m := range r.Etcd.Members {
		if !m.Healthy {
			problems = append(problems, "etcd member "+m.name()+": unhealthy: "+orNoAnswer(m.Error))
		}
	}
	if r.Objects.Status == StatusFailed {
		problems = append(problems, "list the cluster's objects: "+orNoAnswer(r.Objects.Detail))
	}
	for _, p := range r.Pods {
		on := ""
		if p.Node != "" {
			on = " on " + p.Node
		}
		problems = append(problems, "pod "+p.Name+on+": "+p.Problem)
	}
	for _, w := range r.Workloads {
		problems = append(problems, strings.ToLower(w.Kind)+" "+w.Name+": "+w.Problem)
	}
	for _, p := range r.Probes {
		if !p.OK {
			answer := "no answer"
			if p.Got != 0 {
				answer = "status " + strconv.Itoa(p.Got)
			}
			problems = append(problems, "probe "+p.Name+" ("+p.URL+"): "+answer+", want "+strconv.Itoa(p.Want))
		}
	}
	r.Problems = problems
	if r.Problems == nil {
		r.Problems = []string{}
	}
	r.Healthy = len(problems) == 0
}

// emptyLists makes every absent list an empty one: the JSON document
// always has the same shape ([] rather than null).
func (r *Report) emptyLists() {
	if r.Etcd.Members == nil {
		r.Etcd.Members = []EtcdMember{}
	}
	if r.Nodes == nil {
		r.Nodes = []Node{}
	}
	if r.Pods == nil {
		r.Pods = []Pod{}
	}
	if r.Workloads == nil {
		r.Workloads = []Workload{}
	}
	if r.Probes == nil {
		r.Probes = []ProbeResult{}
	}
	for i := range r.Nodes {
		if r.Nodes[i].SpecRoles == nil {
			r.Nodes[i].SpecRoles = []string{}
		}
		if r.Nodes[i].Roles == nil {
			r.Nodes[i].Roles = []string{}
		}
	}
}

func (m EtcdMember) name() string {
	if m.Node != "" {
		return m.Node + " (" + m.Endpoint + ")"
	}
	return m.Endpoint
}

func nodeProblems(n *Node, listed bool, version string) []string {
	p := []string{}
	switch n.SSH {
	case SSHUnreachable:
		p = append(p, "unreachable over SSH ("+orNoAnswer(n.SSHError)+")")
	case SSHFailed:
		p = append(p, "SSH failed ("+orNoAnswer(n.SSHError)+")")
	}
	if n.LookError != "" {
		p = append(p, "look at the cluster failed here: "+n.LookError)
	}
	if !n.InSpec {
		p = append(p, "not in the spec")
	}
	if !listed {
		return p
	}
	if !n.Registered {
		return append(p, "not registered")
	}
	if n.Ready != "True" {
		reason := n.ReadyReason
		if reason == "" {
			reason = "no reason given"
		}
		p = append(p, "not Ready ("+reason+")")
	}
	if version != "" && n.KubeletVersion != version {
		p = append(p, "kubelet "+n.KubeletVersion+", want "+version)
	}
	if len(n.SpecRoles) > 0 && n.InSpec { // the health step does not know roles
		wantCP := slices.Contains(n.SpecRoles, roleControlPlane)
		isCP := slices.Contains(n.Roles, roleControlPlane)
		switch {
		case wantCP && !isCP:
			p = append(p, "not a control plane in the cluster, but the spec says it is")
		case !wantCP && isCP:
			p = append(p, "a control plane in the cluster, but not in the spec")
		}
	}
	return p
}

func orNoAnswer(s string) string {
	if strings.TrimSpace(s) == "" {
		return "no answer"
	}
	return s
}
