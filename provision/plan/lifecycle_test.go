package plan_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/state"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// Hosts the cluster recorded but the spec no longer has are taken out in
// order, after the remaining hosts joined and before health; control-plane
// members leave one at a time; unreachable ones are not reset.
func TestRemovedHostsArePlanned(t *testing.T) {
	c := load(t, "ha")
	prev := &state.Record{Hosts: []state.Host{
		{Name: "cp1", Roles: []string{"control-plane"}},
		{Name: "old-cp", Address: "10.0.0.90", Roles: []string{"control-plane"}, User: "ops", Port: 22},
		{Name: "old-cp2", Address: "10.0.0.91", Roles: []string{"control-plane"}, User: "ops", Port: 22},
		{Name: "old-w", Address: "10.0.0.92", Roles: []string{"worker"}, User: "ops", Port: 22},
	}}
	g, err := plan.Build(c, plan.BuildOptions{Previous: prev, Gone: map[string]bool{"old-cp2": true}, RemoveHosts: []string{"old-cp", "old-cp2", "old-w"}})
	if err != nil {
		t.Fatal(err)
	}
	has := func(id string) bool { return g.Has(id) }
	before, _ := ordering(t, g)
	for _, id := range []string{"old-w/remove/drain", "old-w/remove/node", "old-cp/remove/drain", "old-cp/remove/node", "old-cp/remove/etcd-member", "old-cp2/remove/etcd-member"} {
		if !has(id) {
			t.Errorf("no step %s", id)
		}
	}
	if has("old-w/remove/etcd-member") {
		t.Error("a worker has an etcd member to remove")
	}
	if has("cp1/remove/drain") {
		t.Error("a host still in the spec is removed")
	}
	before("w3/kube/join-worker", "old-w/remove/drain")
	before("cp3/kube/join-control-plane", "old-cp/remove/drain")
	before("old-cp/remove/drain", "old-cp/remove/etcd-member")
	before("old-cp/remove/etcd-member", "old-cp/kube/reset")
	before("old-cp/kube/reset", "old-cp/remove/node")
	before("old-w/kube/reset", "old-w/remove/node")
	if has("old-cp2/kube/reset") {
		t.Error("an unreachable host is reset")
	}
	if s, _ := g.Get("old-w/kube/reset"); s.Host != "old-w" {
		t.Errorf("the reset runs on %s, want the leaving host", s.Host)
	}
	before("old-cp/remove/etcd-member", "old-cp2/remove/etcd-member")
	before("old-w/remove/node", "cluster/addons/health")
	before("old-cp2/remove/etcd-member", "cluster/addons/health")
	before("cluster/addons/health", "cluster/state/record")
	s, _ := g.Get("old-cp/remove/etcd-member")
	if s.Host != "cp1" || s.Op.(kube.RemoveEtcdMember).Via != "cp1" {
		t.Errorf("etcd member removal runs on %s via %+v, want the first control plane", s.Host, s.Op)
	}
	// The record written at the end lists the spec's hosts only.
	rec, _ := g.Get("cluster/state/record")
	var names []string
	for _, h := range rec.Op.(state.Save).Record.Hosts {
		names = append(names, h.Name)
	}
	if !slices.Equal(names, c.Names()) {
		t.Errorf("recorded hosts %v, want the spec's %v", names, c.Names())
	}
}

// Without a record (first apply, offline) nothing is removed.
func TestNoRecordNoRemovals(t *testing.T) {
	g, err := plan.Build(load(t, "ha"), plan.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range g.IDs() {
		if kind := id[len(id)-len("/remove/drain"):]; kind == "/remove/drain" {
			t.Errorf("unexpected removal %s", id)
		}
	}
}

// A host that only the cluster's record lists is taken out (drained,
// reset, deleted) only when the operator named it: the record is written
// by whoever can write a ConfigMap in kube-system.
func TestRemovalNeedsConfirmation(t *testing.T) {
	c := load(t, "ha")
	prev := &state.Record{Hosts: []state.Host{
		{Name: "cp1", Roles: []string{"control-plane"}},
		{Name: "old-w", Address: "10.0.0.92", Roles: []string{"worker"}},
		{Name: "never-ours", Address: "10.9.9.9", Roles: []string{"worker"}},
	}}
	o := plan.BuildOptions{Previous: prev, RemoveHosts: []string{"old-w"}}
	g, err := plan.Build(c, o)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Has("old-w/kube/reset") || !g.Has("old-w/remove/node") {
		t.Error("the named host's removal is not planned")
	}
	for _, id := range g.IDs() {
		if strings.HasPrefix(id, "never-ours/") {
			t.Errorf("a host nobody named is planned: %s", id)
		}
	}
	if got := o.PendingRemovals(c); !slices.Equal(got, []string{"never-ours"}) {
		t.Errorf("pending %v, want never-ours", got)
	}
	for _, bad := range []string{"cp1", "w9"} {
		_, err := plan.Build(c, plan.BuildOptions{Previous: prev, RemoveHosts: []string{bad}})
		if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "old-w, never-ours") {
			t.Errorf("removing %s: err = %v, want it refused, listing the hosts that left", bad, err)
		}
	}
}
