package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// ResetScope is what a reset of some or all of a cluster's hosts means for
// the cluster: which hosts go, whether the cluster lives on, and through
// which control plane the survivors are told.
type ResetScope struct {
	Hosts []string // to reset, in spec order
	// Whole: every host goes; nothing is left to tell.
	Whole bool
	// Via is the first control plane that stays ("" when Whole).
	Via string
	// Warnings are what the user should know before confirming.
	Warnings []string
}

// ErrQuorum: resetting these control planes would leave etcd without a
// majority of its members while the rest of the cluster lives on.
var ErrQuorum = fmt.Errorf("etcd would lose quorum")

// NewResetScope checks a reset of names (every host when empty) against
// the spec. Control planes may only go while a majority of them stays
// (etcd's quorum), unless the whole cluster goes.
func NewResetScope(c *spec.Cluster, names []string) (ResetScope, error) {
	all := c.Names()
	if len(names) == 0 {
		names = all
	}
	chosen := map[string]bool{}
	var unknown []string
	for _, n := range names {
		if _, ok := c.Hosts[n]; !ok {
			unknown = append(unknown, n)
		}
		chosen[n] = true
	}
	if len(unknown) > 0 {
		return ResetScope{}, fmt.Errorf("reset: no host %s in the spec (hosts: %s)", strings.Join(unknown, ", "), strings.Join(all, ", "))
	}
	s := ResetScope{}
	for _, n := range all {
		if chosen[n] {
			s.Hosts = append(s.Hosts, n)
		}
	}
	s.Whole = len(s.Hosts) == len(all)
	if s.Whole {
		return s, nil
	}
	cps := c.ControlPlanes()
	var going, staying []string
	for _, n := range cps {
		if chosen[n] {
			going = append(going, n)
		} else {
			staying = append(staying, n)
		}
	}
	if len(going) > 0 {
		quorum := len(cps)/2 + 1
		if len(staying) < quorum {
			return ResetScope{}, fmt.Errorf("reset of control plane %s: %d of %d etcd members would stay, a quorum needs %d; reset the whole cluster (no --hosts) or fewer control planes: %w",
				strings.Join(going, ", "), len(staying), len(cps), quorum, ErrQuorum)
		}
		s.Warnings = append(s.Warnings, fmt.Sprintf("control plane %s leaves the cluster: kubeadm reset removes its etcd member; %d of %d control planes stay (a quorum needs %d), one more loss stops the cluster until it is back",
			strings.Join(going, ", "), len(staying), len(cps), quorum))
		if going[0] == cps[0] {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s is the spec's first control plane, which apply initialises the cluster on: move another control plane first in the spec before applying again", cps[0]))
		}
	}
	s.Via = staying[0]
	s.Warnings = append(s.Warnings, fmt.Sprintf("the cluster lives on: the Node objects of %s are deleted through %s after the reset, without draining them first (their pods stop with the reset)",
		strings.Join(s.Hosts, ", "), s.Via))
	return s, nil
}

// BuildResetGraph is the plan of a reset: workers first, all at once; then
// control planes one at a time, the spec's first control plane last, so
// etcd shrinks by one member at a time and the cluster's first member is
// the last to go. When the cluster lives on, each reset host's Node object
// is deleted through a control plane that stays, after its reset (a
// running kubelet would register it again).
func BuildResetGraph(c *spec.Cluster, s ResetScope) (*Graph, error) {
	cps := c.ControlPlanes()
	if len(cps) == 0 {
		return nil, fmt.Errorf("build reset plan: no control plane in spec")
	}
	b := &builder{c: c, g: dag.New[step.Step](), cps: cps, first: cps[0], phaseSteps: map[string][]string{}}
	resetting := map[string]bool{}
	for _, n := range s.Hosts {
		resetting[n] = true
	}
	var workers []string
	for _, n := range c.Names() {
		if resetting[n] && !slices.Contains(cps, n) {
			workers = append(workers, b.add(n, true, kube.Reset{}))
		}
	}
	// Control planes in reverse spec order: the first one last.
	prev := workers
	for i := len(cps) - 1; i >= 0; i-- {
		n := cps[i]
		if !resetting[n] {
			continue
		}
		id := b.add(n, true, kube.Reset{ControlPlane: true, RemoveEtcdMember: !s.Whole}, prev...)
		prev = []string{id}
	}
	if !s.Whole {
		for _, n := range s.Hosts {
			op := kube.DeleteNode{Node: n, Via: s.Via}
			b.addNamed(ClusterScope+"/"+op.Kind()+"/"+n, s.Via, true, op, n+"/"+kube.Reset{}.Kind())
		}
	}
	if err := b.g.Validate(); err != nil {
		return nil, fmt.Errorf("build reset plan: %w", err)
	}
	return b.g, nil
}
