package kube

import (
	"fmt"
	"time"

	"github.com/clusterctl/clusterctl/provision/step"
)

// Upgrade roles: the first control plane runs `kubeadm upgrade apply`, the
// others `kubeadm upgrade node`, workers are drained around theirs.
const (
	RoleFirstControlPlane = "first-control-plane"
	RoleControlPlane      = "control-plane"
	RoleWorker            = "worker"
)

// BackupDir keeps the etcd snapshots clusterctl takes, on the control plane
// that took them (mode 0700: a snapshot holds every Secret).
const BackupDir = "/var/lib/clusterctl/backups"

// CordonAnnotation marks a node clusterctl cordoned for an upgrade, with
// the version it upgrades to, so that a re-run uncordons what it cordoned
// and never a node someone else cordoned.
const CordonAnnotation = "clusterctl.dev/upgrade-cordoned"

// EtcdSnapshot saves an etcd snapshot on the first control plane before a
// roll starts (once per target version), with its sha256 beside it.
type EtcdSnapshot struct {
	Cluster Cluster `json:"cluster"`
	// Node is the control plane whose etcd member takes the snapshot.
	Node string `json:"node"`
	Dir  string `json:"dir"`
}

func (EtcdSnapshot) Kind() string { return "kube/etcd-snapshot" }
func (o EtcdSnapshot) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "etcd snapshot", To: fmt.Sprintf("%s/%s (+ .sha256), before an upgrade to %s", o.Dir, snapshotGlob(o.Cluster.Version), o.Cluster.Version)}}
}

// CheckOffline: a blank host has no cluster to snapshot.
func (EtcdSnapshot) CheckOffline() step.Change { return step.Change{Action: step.ActionNone} }

// UpgradeNode moves one node of a running cluster to the spec's version.
// The planner runs control planes one at a time (the first with `kubeadm
// upgrade apply`), then workers in batches; a node already at the version
// is left alone, so a re-run after a failure continues where it stopped.
type UpgradeNode struct {
	Cluster Cluster `json:"cluster"`
	Node    string  `json:"node"`
	Role    string  `json:"role"` // first-control-plane | control-plane | worker
	// Via is the first control plane: its admin.conf drives kubectl
	// (versions, cordon, drain, waits).
	Via string `json:"via"`
	// DrainTimeout bounds `kubectl drain` (evictions wait for
	// PodDisruptionBudgets); WaitTimeout bounds each wait for the node and
	// its pods to be back.
	DrainTimeout string `json:"drainTimeout"`
	WaitTimeout  string `json:"waitTimeout"`
}

func (UpgradeNode) Kind() string { return "kube/upgrade" }
func (o UpgradeNode) Describe() []step.DiffLine {
	how := "kubeadm upgrade node"
	if o.Role == RoleFirstControlPlane {
		how = "kubeadm upgrade apply"
	}
	return []step.DiffLine{{Key: "upgrade", To: fmt.Sprintf("to %s when the node runs an older version (%s, drain, kubelet restart)", o.Cluster.Version, how)}}
}

// CheckOffline: a blank host runs no version to upgrade from.
func (UpgradeNode) CheckOffline() step.Change { return step.Change{Action: step.ActionNone} }

func (o UpgradeNode) validate() error {
	if err := o.Cluster.validate(); err != nil {
		return err
	}
	if err := (Node{Name: o.Node, Address: "127.0.0.1"}).validate(); err != nil {
		return err
	}
	switch o.Role {
	case RoleFirstControlPlane, RoleControlPlane, RoleWorker:
	default:
		return fmt.Errorf("upgrade role %q: want %s, %s or %s", o.Role, RoleFirstControlPlane, RoleControlPlane, RoleWorker)
	}
	if o.Via == "" {
		return fmt.Errorf("upgrade of %s: no control plane to drive it (via)", o.Node)
	}
	for _, d := range []string{o.DrainTimeout, o.WaitTimeout} {
		if _, err := seconds(d); err != nil {
			return err
		}
	}
	return nil
}

func (o UpgradeNode) controlPlane() bool { return o.Role != RoleWorker }

// seconds reads a duration ("5m"; "" is 5 minutes) as whole seconds.
func seconds(d string) (int, error) {
	if d == "" {
		return 300, nil
	}
	v, err := time.ParseDuration(d)
	if err != nil || v < time.Second {
		return 0, fmt.Errorf("timeout %q is not a duration of a second or more", d)
	}
	return int(v.Seconds()), nil
}
