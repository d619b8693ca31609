package plan

import (
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
	b.add(ClusterScope, false, state.Save{Record: r, Kubectl: kube.Kubectl}, sinks...)
	return nil
}
