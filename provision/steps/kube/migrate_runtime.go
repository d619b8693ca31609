package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/runtime"
)

// MigrateRuntime moves one node of a running cluster from a distribution's
// containerd 1.x (what clusterctl installed before it built containerd 2)
// to the bundle's containerd: cordon, drain, swap the runtime, wait until
// the node is Ready on it with its pods running, uncordon. The planner runs
// nodes one at a time, control planes first. A failure after the drain puts
// the node back on its old containerd and uncordons it.
type MigrateRuntime struct {
	Node         string `json:"node"`
	ControlPlane bool   `json:"controlPlane"`
	// Via is the first control plane: its admin.conf drives kubectl.
	Via          string             `json:"via"`
	DrainTimeout string             `json:"drainTimeout"`
	WaitTimeout  string             `json:"waitTimeout"`
	Runtime      runtime.Containerd `json:"runtime"`
}

func (MigrateRuntime) Kind() string { return "kube/migrate-runtime" }
func (o MigrateRuntime) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "containerd", To: "the bundle's, when the node runs its pods on a containerd 1.x (cordon, drain, swap, Ready, uncordon)"}}
}

// CheckOffline: a blank host runs no pods to move.
func (MigrateRuntime) CheckOffline() step.Change { return step.Change{Action: step.ActionNone} }

func (MigrateRuntime) Needs() facts.Request { return facts.Request{Files: []string{KubeletConf}} }

func (o MigrateRuntime) validate() error {
	if err := (Node{Name: o.Node, Address: "127.0.0.1"}).validate(); err != nil {
		return err
	}
	if o.Via == "" {
		return fmt.Errorf("runtime migration of %s: no control plane to drive it (via)", o.Node)
	}
	for _, d := range []string{o.DrainTimeout, o.WaitTimeout} {
		if _, err := seconds(d); err != nil {
			return err
		}
	}
	return nil
}

func (o MigrateRuntime) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	from, to, needed, err := runtime.Migration(t, o.Runtime.Source)
	if err != nil || !needed {
		return step.Change{Action: step.ActionNone}, err
	}
	timeout := o.DrainTimeout
	if timeout == "" {
		timeout = "5m"
	}
	return step.Change{Action: step.ActionUpdate, Diff: []step.DiffLine{
		{Key: "containerd", From: from + " (distribution package)", To: to + " (bundle)"},
		{Key: "node", From: "schedulable", To: "cordoned, drained --ignore-daemonsets --delete-emptydir-data (timeout " + timeout + "), kubelet and containers stopped, runtime swapped, uncordoned once Ready on containerd " + to},
	}, Note: "one node at a time, control planes first; a failure puts the node back on containerd " + from + ", uncordoned"}, nil
}

// Apply moves the node; a re-run after a swap that went through only
// finishes the waits and the uncordon.
func (o MigrateRuntime) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	from, to, needed, err := runtime.Migration(t, o.Runtime.Source)
	if err != nil || !needed {
		return err
	}
	cp, err := peer(t, o.Via)
	if err != nil {
		return err
	}
	secs, _ := seconds(o.WaitTimeout)
	cur, err := runtime.InstalledVersion(ctx, t.Host)
	if err != nil {
		return err
	}
	cordoned, err := o.cordon(ctx, cp, to)
	if err != nil {
		return err
	}
	if strings.HasPrefix(cur, "1.") {
		if err := o.drain(ctx, cp); err != nil {
			if cordoned {
				if uerr := o.uncordon(ctx, cp); uerr != nil {
					return errors.Join(err, uerr)
				}
				err = fmt.Errorf("%w (%s was uncordoned and still runs containerd %s)", err, o.Node, from)
			}
			return err
		}
		if err := o.Runtime.Migrate(ctx, t); err != nil {
			return o.revert(ctx, t, cp, cordoned, from, err)
		}
	}
	if err := o.waitBack(ctx, t, cp, to, secs); err != nil {
		return o.revert(ctx, t, cp, cordoned, from, err)
	}
	if cordoned {
		return o.uncordon(ctx, cp)
	}
	return nil
}

// waitBack waits for the node Ready on the new runtime, a control plane's
// API server steady, and the node's pods running and ready.
func (o MigrateRuntime) waitBack(ctx context.Context, t step.Target, cp host.Host, to string, secs int) error {
	if err := waitNodeRuntime(ctx, cp, o.Node, to, secs); err != nil {
		return err
	}
	if o.ControlPlane {
		if err := waitAPIStable(ctx, t.Host, secs); err != nil {
			return err
		}
	}
	return waitNodePods(ctx, cp, o.Node, secs)
}

// revert puts the node back on its old containerd after a failed move and
// uncordons it; the error names both.
func (o MigrateRuntime) revert(ctx context.Context, t step.Target, cp host.Host, cordoned bool, from string, cause error) error {
	cause = fmt.Errorf("move %s to the bundle's containerd: %w", o.Node, cause)
	if err := o.Runtime.Revert(ctx, t); err != nil {
		return errors.Join(cause, fmt.Errorf("and putting containerd %s back failed too; the node stays cordoned: %w", from, err))
	}
	if cordoned {
		if err := o.uncordon(ctx, cp); err != nil {
			return errors.Join(cause, err)
		}
	}
	return fmt.Errorf("%w (%s is back on containerd %s and uncordoned)", cause, o.Node, from)
}

// cordon marks the node unschedulable with clusterctl's annotation unless
// someone else cordoned it; it says whether the cordon is clusterctl's (a
// re-run finds its own annotation and keeps treating it as its own).
func (o MigrateRuntime) cordon(ctx context.Context, cp host.Host, to string) (bool, error) {
	get := Kubectl + " get node " + host.Quote(o.Node) + " -o jsonpath=" +
		host.Quote(`{.spec.unschedulable} {.metadata.annotations.clusterctl\.dev/upgrade-cordoned}`)
	out, err := host.Output(ctx, cp, get)
	if err != nil {
		return false, fmt.Errorf("read %s's schedulability: %w", o.Node, err)
	}
	f := strings.Fields(out)
	if len(f) == 1 && f[0] == "true" {
		return false, nil // cordoned by someone else: left so
	}
	if err := markAndCordon(ctx, cp, o.Node, "containerd-"+to); err != nil {
		return false, err
	}
	return true, nil
}

func (o MigrateRuntime) drain(ctx context.Context, cp host.Host) error {
	return UpgradeNode{Node: o.Node, DrainTimeout: o.DrainTimeout}.drainNode(ctx, cp)
}

func (o MigrateRuntime) uncordon(ctx context.Context, cp host.Host) error {
	return UpgradeNode{Node: o.Node}.uncordonNode(ctx, cp)
}

// waitNodeRuntime waits until the node is Ready on containerd version
// (a major version alone, "2", when the bundle does not say more).
func waitNodeRuntime(ctx context.Context, cp host.Host, node, version string, secs int) error {
	get := Kubectl + " --request-timeout=5s get node " + host.Quote(node) + " -o jsonpath=" +
		host.Quote(`{.status.nodeInfo.containerRuntimeVersion} {.status.conditions[?(@.type=="Ready")].status}`)
	want := host.Quote("containerd://"+version) + host.Quote(" True")
	if !strings.Contains(version, ".") {
		want = host.Quote("containerd://"+version+".") + "*" + host.Quote(" True")
	}
	check := "case \"$(" + get + " 2>/dev/null)\" in " + want + ") true;; *) false;; esac"
	show := "echo " + host.Quote("node "+node+":") + " \"$(" + get + " 2>&1)\" " + host.Quote("(want containerd "+version+", Ready)") + " >&2"
	return waitUntil(ctx, cp, fmt.Sprintf("node %s Ready on containerd %s", node, version), check, show, secs)
}
