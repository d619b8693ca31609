// Package step defines the unit of work: a typed operation bound to a host,
// with a stable ID, that can say what it would change and then change it.
package step

import (
	"context"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
)

// Action is what a step would do to converge its host.
type Action string

const (
	ActionNone   Action = "none"
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
	// ActionRead steps run on every apply and never count as changes (see
	// Recurring); some write, but nothing the spec converges.
	ActionRead Action = "read"
)

// Symbol is the one-character marker used in the human plan.
func (a Action) Symbol() string {
	switch a {
	case ActionCreate:
		return "+"
	case ActionUpdate:
		return "~"
	case ActionDelete:
		return "-"
	case ActionRead:
		return "<="
	default:
		return " "
	}
}

// DiffLine is one setting's current and desired value.
type DiffLine struct {
	Key  string `json:"key"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// Change is the result of a check: the action and a human diff.
type Change struct {
	Action Action     `json:"action"`
	Diff   []DiffLine `json:"diff,omitempty"`
	Note   string     `json:"note,omitempty"`
}

// Op is the work of a step: a struct of typed parameters mapped from the spec
// by the planner. Steps never import spec.
type Op interface {
	// Kind is the step's family, e.g. "hostprep/sysctl"; with the host name
	// it forms the step ID.
	Kind() string
	// Check says what Apply would change, from facts and cheap commands.
	Check(ctx context.Context, t Target) (Change, error)
	// Apply converges the host. It must be idempotent.
	Apply(ctx context.Context, t Target) error
}

// Describer is an Op that can list the settings it converges to; the offline
// plan shows them as the diff of a blank host.
type Describer interface {
	Describe() []DiffLine
}

// Recurring is an Op that runs on every apply and is never counted as a
// change, though it may write outside the hosts' converged state (the
// health check, the operator's kubeconfig, the state record). Its action
// is ActionRead, offline too.
type Recurring interface {
	RunsEveryApply() bool
}

// OfflineChecker is an Op that acts only on hosts already in some state (an
// upgrade of a running node): an offline plan, where every host is blank,
// shows its CheckOffline instead of a create.
type OfflineChecker interface {
	CheckOffline() Change
}

// Target is what an Op acts on. Facts is nil when planning offline; Bundle
// is nil unless artifacts come from an air-gapped bundle.
type Target struct {
	Host   host.Host
	Facts  *facts.Facts
	Bundle *bundle.Bundle
	// Redactor takes the secrets a step makes while it runs (join tokens,
	// certificate keys) so no log, plan or error shows them; nil redacts
	// nothing.
	Redactor *host.Redactor
	// Warn takes what the operator should know about a step that still
	// succeeded (fields dropped from a host's kubeconfig); nil drops it.
	Warn func(msg string)
	// Peers are the cluster's hosts by spec name, for steps that need
	// another host than their own (a join asks the first control plane for
	// its credentials); nil when planning offline.
	Peers map[string]host.Host
}

// FactsNeeder is an Op whose Check reads facts beyond the basics (sysctl
// keys, modules, packages, file digests): the planner gathers their union
// in the one probe round trip per host.
type FactsNeeder interface {
	Needs() facts.Request
}

// Step is one node of the plan's graph.
type Step struct {
	// ID is stable and readable: "node-1/hostprep/sysctl", or "cluster/cni"
	// for steps that act on the cluster as a whole.
	ID string
	// Host is the host the step runs on ("" for none).
	Host string
	// TakesHostSlot steps must not overlap other such steps on their host
	// (package installs, kubeadm runs): the walker runs at most
	// Options.PerHost of them per host at a time, one by default.
	TakesHostSlot bool
	Op            Op
}
