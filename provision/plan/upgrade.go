package plan

import (
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// Upgrade steps are in every plan: each checks the versions the hosts run
// and has nothing to do unless the spec's version is newer (a fresh host
// joins at the spec's version).

// controlPlaneUpgrades: an etcd snapshot first (once every host has the
// new version's images, since `kubeadm upgrade apply` rolls kube-proxy and
// CoreDNS onto every node), then the control planes one at a time, each
// after its own join. A control plane that still has to join does so after
// the one before it is upgraded, so it joins a control plane of its version.
func controlPlaneUpgrades(b *builder) error {
	k := b.c.Kubernetes
	cl := b.kubeCluster()
	members := b.after(ClusterScope, "control-planes") // init, then each join
	deps := append([]string{}, members[0])
	for _, n := range b.c.Names() {
		deps = append(deps, b.after(n, "kube")...)
	}
	deps = append(deps, b.after(ClusterScope, "runtime-migrations")...)
	// Takes no host slot: it only adds its own file, and
	// a fresh build's cluster steps on the first host (CNI) need not wait.
	prev := b.add(ClusterScope, false, kube.EtcdSnapshot{Cluster: cl, Node: b.first, Dir: kube.BackupDir}, deps...)
	var ups []string
	for i, n := range b.cps {
		role := kube.RoleControlPlane
		if i == 0 {
			role = kube.RoleFirstControlPlane
		} else {
			b.needs(members[i], prev) // the join waits for the previous upgrade
		}
		op := kube.UpgradeNode{Cluster: cl, Node: n, Role: role, Via: b.first, DrainTimeout: k.Upgrade.DrainTimeout, WaitTimeout: b.c.Health.Timeout}
		prev = b.add(n, true, op, append([]string{members[i], prev}, b.after(n, "kube")...)...)
		ups = append(ups, prev)
	}
	b.phaseSteps[ClusterScope+"/control-plane-upgrades"] = ups
	b.phaseSteps[ClusterScope+"/control-planes"] = append(members, ups...)
	return nil
}

// workerUpgrades: after every control plane, workers in batches of
// kubernetes.upgrade.maxUnavailable in spec order; a batch starts when the
// one before it is done, so a failure stops the roll.
func workerUpgrades(b *builder) error {
	k := b.c.Kubernetes
	cl := b.kubeCluster()
	cpUps := b.after(ClusterScope, "control-plane-upgrades")
	batch := max(1, k.Upgrade.MaxUnavailable)
	prev := cpUps[len(cpUps)-1:]
	var cur, ups []string
	for _, n := range b.c.Workers() {
		op := kube.UpgradeNode{Cluster: cl, Node: n, Role: kube.RoleWorker, Via: b.first, DrainTimeout: k.Upgrade.DrainTimeout, WaitTimeout: b.c.Health.Timeout}
		deps := append(append([]string{b.joinOf(n)}, prev...), b.after(n, "kube")...)
		cur = append(cur, b.add(n, true, op, deps...))
		if len(cur) == batch {
			ups = append(ups, cur...)
			prev, cur = cur, nil
		}
	}
	ups = append(ups, cur...)
	b.phaseSteps[ClusterScope+"/workers"] = append(b.after(ClusterScope, "workers"), ups...)
	return nil
}

// joinOf is a worker's join step.
func (b *builder) joinOf(n string) string {
	return n + "/" + kube.JoinWorker{}.Kind()
}

// runtimeMigrations: nodes of a running cluster whose pods run on a
// distribution's containerd 1.x move to the bundle's containerd one at a
// time, control planes first, once every host's runtime and Kubernetes
// binaries are in place and before any upgrade. On other nodes (fresh, or
// already moved) the step has nothing to do.
func runtimeMigrations(b *builder) error {
	if b.c.Artifacts.Mode != "bundle" {
		return nil
	}
	k := b.c.Kubernetes
	prev := append([]string{}, b.after(ClusterScope, "control-planes")[0])
	for _, n := range b.c.Names() {
		prev = append(prev, b.after(n, "kube")...)
	}
	var ids []string
	for _, n := range append(append([]string{}, b.cps...), b.c.Workers()...) {
		op := kube.MigrateRuntime{Node: n, ControlPlane: b.c.Hosts[n].Has(spec.RoleControlPlane), Via: b.first,
			DrainTimeout: k.Upgrade.DrainTimeout, WaitTimeout: b.c.Health.Timeout, Runtime: b.containerd()}
		id := b.add(n, true, op, prev...)
		prev = []string{id}
		ids = append(ids, id)
	}
	b.phaseSteps[ClusterScope+"/runtime-migrations"] = ids
	return nil
}
