package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/state"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// BuildOptions is what the planner knows beyond the spec when online.
type BuildOptions struct {
	// Previous is the cluster's record of its last apply (nil: none yet,
	// or planning offline).
	Previous *state.Record
	// Git is the spec's repository, recorded after a successful apply.
	Git *state.Git
	// Clusterctl is this binary's version, recorded likewise.
	Clusterctl string
	// Gone are hosts that left the spec and cannot be reached any more:
	// they are drained and deleted from the cluster but not reset.
	Gone map[string]bool
	// RemoveHosts are the hosts that left the spec which the operator
	// confirmed by name (apply --remove-hosts). Only the record lists the
	// others, and anyone who can write it could add a machine there: they
	// are not taken out (see PendingRemovals).
	RemoveHosts []string
}

// Removed are the hosts the cluster recorded that the spec no longer has.
func (o BuildOptions) Removed(c *spec.Cluster) []state.Host { return o.Previous.Removed(c.Names()) }

// ConfirmedRemovals are the removed hosts named in RemoveHosts.
func (o BuildOptions) ConfirmedRemovals(c *spec.Cluster) []state.Host {
	var out []state.Host
	for _, r := range o.Removed(c) {
		if slices.Contains(o.RemoveHosts, r.Name) {
			out = append(out, r)
		}
	}
	return out
}

// PendingRemovals names the removed hosts not named in RemoveHosts: the
// plan leaves them alone, and apply refuses to run until they are named.
func (o BuildOptions) PendingRemovals(c *spec.Cluster) []string {
	var out []string
	for _, r := range o.Removed(c) {
		if !slices.Contains(o.RemoveHosts, r.Name) {
			out = append(out, r.Name)
		}
	}
	return out
}

// checkRemoveHosts refuses a name in RemoveHosts that is not a host that
// left the spec: a typo must not pass for a confirmation.
func (o BuildOptions) checkRemoveHosts(c *spec.Cluster) error {
	var left []string
	for _, r := range o.Removed(c) {
		left = append(left, r.Name)
	}
	for _, n := range o.RemoveHosts {
		if !slices.Contains(left, n) {
			have := "none"
			if len(left) > 0 {
				have = strings.Join(left, ", ")
			}
			return fmt.Errorf("host %q is named for removal (--remove-hosts) but is not a host that left the spec since the last apply (those are: %s)", n, have)
		}
	}
	return nil
}

// removals takes every confirmed host that left the spec out of the cluster, after
// the hosts that stay (or replace it) have joined: drain it, remove its
// etcd member (control planes, one at a time, quorum checked), reset it,
// then delete its Node (after the reset: a running kubelet would register
// it again). A host that cannot be reached any more is not reset. Health
// waits for all of it.
func removals(b *builder) error {
	deps := append(append([]string{}, b.after(ClusterScope, "control-planes")...), b.after(ClusterScope, "workers")...)
	if b.g.Has(ClusterScope + "/addons/cni") {
		deps = append(deps, ClusterScope+"/addons/cni")
	}
	var all []string
	lastMember := ""
	for _, r := range b.opt.ConfirmedRemovals(b.c) {
		id := func(kind string) string { return r.Name + "/" + kind }
		last := b.addNamed(id("remove/drain"), b.first, true, kube.DrainNode{Node: r.Name, Timeout: b.c.Health.Timeout}, deps...)
		cp := r.Has(spec.RoleControlPlane)
		if cp {
			last = b.addNamed(id("remove/etcd-member"), b.first, true, kube.RemoveEtcdMember{Member: r.Name, Via: b.first}, last, lastMember)
			lastMember = last
		}
		if !b.opt.Gone[r.Name] {
			op := kube.Reset{ControlPlane: cp}
			last = b.addNamed(id(op.Kind()), r.Name, true, op, last)
		}
		del := kube.DeleteNode{Node: r.Name, Via: b.first}
		all = append(all, b.addNamed(id("remove/node"), b.first, true, del, last))
	}
	b.phaseSteps[ClusterScope+"/removals"] = all
	return nil
}

// stateRecord ends every apply: once everything else succeeded, the
// cluster records what was applied (see provision/state).
func stateRecord(b *builder) error {
	r := state.Record{
		Format:            state.FormatVersion,
		Cluster:           b.c.Name,
		SpecDigest:        b.c.Digest,
		Git:               b.opt.Git,
		Clusterctl:        b.opt.Clusterctl,
		Distribution:      b.c.Kubernetes.Distribution,
		KubernetesVersion: b.c.Kubernetes.Version,
	}
	for _, n := range b.c.Names() {
		s := b.c.SSHFor(n)
		r.Hosts = append(r.Hosts, state.Host{Name: n, Address: s.Address, Roles: b.c.Hosts[n].Roles, User: s.User, Port: s.Port})
	}
	var sinks []string
	for _, id := range b.g.IDs() {
		if len(b.g.Dependents(id)) == 0 {
			sinks = append(sinks, id)
		}
	}
	b.add(ClusterScope, false, state.Save{Record: r, Kubectl: b.admin().OrKubeadm().Kubectl}, sinks...)
	return nil
}
