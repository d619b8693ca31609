package plan_test

import (
	"testing"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// The upgrade roll: snapshot once every host has the new images, control
// planes one at a time (a joining one after the one before it is
// upgraded), then workers in batches of maxUnavailable, everything before
// the manifests and health.
func TestUpgradeOrdering(t *testing.T) {
	c := load(t, "ha")
	c.Kubernetes.Upgrade.MaxUnavailable = 2
	g, err := plan.BuildGraph(c)
	if err != nil {
		t.Fatal(err)
	}
	before, independent := ordering(t, g)
	for _, h := range []string{"cp1", "cp3", "w1", "w3"} {
		before(h+"/kube/install", "cluster/kube/etcd-snapshot")
	}
	before("cp1/kube/init", "cluster/kube/etcd-snapshot")
	before("cluster/kube/etcd-snapshot", "cp1/kube/upgrade")
	before("cp1/kube/upgrade", "cp2/kube/join-control-plane")
	before("cp2/kube/join-control-plane", "cp2/kube/upgrade")
	before("cp2/kube/upgrade", "cp3/kube/upgrade")
	before("cp3/kube/upgrade", "w1/kube/upgrade")
	before("w1/kube/join-worker", "w1/kube/upgrade")
	before("cp1/kube/upgrade", "w1/kube/join-worker")
	// Batches of two: w1 and w2 together, w3 after both.
	independent("w1/kube/upgrade", "w2/kube/upgrade")
	before("w1/kube/upgrade", "w3/kube/upgrade")
	before("w2/kube/upgrade", "w3/kube/upgrade")
	before("w3/kube/upgrade", "cluster/addons/manifest/ingress")
	before("cp3/kube/upgrade", "cluster/addons/health")

	s, _ := g.Get("cp1/kube/upgrade")
	if op := s.Op.(kube.UpgradeNode); op.Role != kube.RoleFirstControlPlane || op.Via != "cp1" || op.DrainTimeout != "5m" || !s.TakesHostSlot {
		t.Errorf("cp1 upgrade: %+v", s)
	}
	for id, role := range map[string]string{"cp2/kube/upgrade": kube.RoleControlPlane, "w3/kube/upgrade": kube.RoleWorker} {
		s, _ := g.Get(id)
		if op := s.Op.(kube.UpgradeNode); op.Role != role {
			t.Errorf("%s: role %s, want %s", id, op.Role, role)
		}
	}
	// Offline, every upgrade step is unchanged: blank hosts run no version.
	_, p := offline(t, c)
	for _, ps := range p.Steps {
		if (ps.Kind == "kube/upgrade" || ps.Kind == "kube/etcd-snapshot") && ps.Action != step.ActionNone {
			t.Errorf("offline %s: %s", ps.ID, ps.Action)
		}
	}
}
