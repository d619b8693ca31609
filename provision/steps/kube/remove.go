package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Taking a host out of the cluster (it left the spec): drain it, remove
// its etcd member when it was a control plane, reset it (see Reset), then
// delete its Node (see DeleteNode). The Node goes after the reset because
// a running kubelet registers a deleted Node again.

// DrainNode cordons a leaving node and evicts its pods: evictions respect
// PodDisruptionBudgets, so a budget that cannot be met stops the removal
// (after Timeout) with the cluster untouched but for the cordon.
type DrainNode struct {
	Node    string `json:"node"`
	Timeout string `json:"timeout"` // Go duration; kubectl drain --timeout
}

func (DrainNode) Kind() string { return "remove/drain" }

func (o DrainNode) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "node " + o.Node, From: "schedulable", To: "cordoned, drained (PodDisruptionBudgets respected, timeout " + o.timeout().String() + ")"}}
}

func (o DrainNode) timeout() time.Duration {
	d, err := time.ParseDuration(o.Timeout)
	if err != nil || d <= 0 {
		return 5 * time.Minute
	}
	return d
}

func (o DrainNode) validate() error {
	if !nameRE.MatchString(o.Node) {
		return fmt.Errorf("node name %q is not a DNS name", o.Node)
	}
	return nil
}

func (o DrainNode) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	there, err := nodeRegistered(ctx, t.Host, o.Node)
	if err != nil || !there {
		return step.Change{Action: step.ActionNone}, err
	}
	return step.Change{Action: step.ActionDelete, Diff: o.Describe()}, nil
}

func (o DrainNode) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	there, err := nodeRegistered(ctx, t.Host, o.Node)
	if err != nil || !there {
		return err
	}
	n := host.Quote(o.Node)
	line := Kubectl + " cordon " + n + " && " + Kubectl + " drain " + n +
		" --ignore-daemonsets --delete-emptydir-data --timeout=" + o.timeout().String()
	if _, err := runOut(ctx, t.Host, line); err != nil {
		return fmt.Errorf("drain node %s (it stays cordoned; a PodDisruptionBudget that cannot be met blocks the eviction): %w", o.Node, err)
	}
	return nil
}

// nodeRegistered asks the API server whether the Node exists.
func nodeRegistered(ctx context.Context, h host.Host, name string) (bool, error) {
	out, err := runOut(ctx, h, Kubectl+" get nodes -o name")
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "node/"+name {
			return true, nil
		}
	}
	return false, nil
}

// RemoveEtcdMember removes a leaving control plane's member from the
// stacked etcd, through etcdctl in the etcd pod of the control plane the
// step runs on. It refuses when the members left would not be a healthy
// quorum: losing the cluster's data is never a side effect of a removal.
type RemoveEtcdMember struct {
	Member string `json:"member"` // the leaving node's name (kubeadm names members after nodes)
	Via    string `json:"via"`    // the node whose etcd pod runs etcdctl
}

func (RemoveEtcdMember) Kind() string { return "remove/etcd-member" }

func (o RemoveEtcdMember) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "etcd member " + o.Member, From: "member", To: "removed"}}
}

// EtcdCtl runs etcdctl in the etcd static pod of node via, with the
// kubeadm certificates that pod mounts.
func EtcdCtl(via string, args ...string) string {
	return Kubectl + " -n kube-system exec " + host.Quote("etcd-"+via) + " -- etcdctl --endpoints=https://127.0.0.1:2379" +
		" --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key " +
		host.Join(args...)
}

type etcdMember struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	ClientURLs []string `json:"clientURLs"`
}

func (o RemoveEtcdMember) members(ctx context.Context, h host.Host) ([]etcdMember, error) {
	out, err := runOut(ctx, h, EtcdCtl(o.Via, "member", "list", "-w", "json"))
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	var list struct {
		Members []etcdMember `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("list etcd members: %w in %.120q", err, out)
	}
	return list.Members, nil
}

func (o RemoveEtcdMember) find(ctx context.Context, h host.Host) (*etcdMember, []etcdMember, error) {
	if !nameRE.MatchString(o.Member) || !nameRE.MatchString(o.Via) {
		return nil, nil, fmt.Errorf("etcd member %q or node %q is not a DNS name", o.Member, o.Via)
	}
	all, err := o.members(ctx, h)
	if err != nil {
		return nil, nil, err
	}
	for i := range all {
		if all[i].Name == o.Member {
			return &all[i], all, nil
		}
	}
	return nil, all, nil
}

func (o RemoveEtcdMember) Check(ctx context.Context, t step.Target) (step.Change, error) {
	m, _, err := o.find(ctx, t.Host)
	if err != nil || m == nil {
		return step.Change{Action: step.ActionNone}, err
	}
	return step.Change{Action: step.ActionDelete, Diff: o.Describe()}, nil
}

// ErrQuorum: removing the member would leave etcd without a healthy quorum.
var ErrQuorum = errors.New("etcd would lose quorum")

func (o RemoveEtcdMember) Apply(ctx context.Context, t step.Target) error {
	m, all, err := o.find(ctx, t.Host)
	if err != nil || m == nil {
		return err
	}
	healthy, err := o.healthy(ctx, t.Host, all, m.ID)
	if err != nil {
		return err
	}
	left := len(all) - 1
	if need := left/2 + 1; left == 0 || healthy < need {
		return fmt.Errorf("%w: removing %s leaves %d members of which %d are healthy, and %d are needed; bring the other members back first",
			ErrQuorum, o.Member, left, healthy, need)
	}
	if _, err := runOut(ctx, t.Host, EtcdCtl(o.Via, "member", "remove", fmt.Sprintf("%x", m.ID))); err != nil {
		return fmt.Errorf("remove etcd member %s: %w", o.Member, err)
	}
	return nil
}

// healthy counts the members other than skip whose endpoint answers.
func (o RemoveEtcdMember) healthy(ctx context.Context, h host.Host, all []etcdMember, skip uint64) (int, error) {
	var eps []string
	for _, m := range all {
		if m.ID != skip && len(m.ClientURLs) > 0 {
			eps = append(eps, m.ClientURLs[0])
		}
	}
	if len(eps) == 0 {
		return 0, nil
	}
	// endpoint health exits non-zero when any endpoint is down; the JSON
	// still lists each one.
	out, _ := runOut(ctx, h, EtcdCtl(o.Via, "endpoint", "health", "-w", "json", "--endpoints="+strings.Join(eps, ","))+" || true")
	var res []struct {
		Endpoint string `json:"endpoint"`
		Health   bool   `json:"health"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return 0, fmt.Errorf("check etcd health: %w in %.120q", err, out)
	}
	n := 0
	for _, r := range res {
		if r.Health {
			n++
		}
	}
	return n, nil
}
