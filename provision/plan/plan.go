package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/state"
	"github.com/clusterctl/clusterctl/provision/step"
)

// FormatVersion changes when the Plan's JSON changes incompatibly. The JSON
// is described by schema/plan.schema.json (kept in step by a test).
const FormatVersion = 1

// Plan is what apply would do, as data: every step with its action and diff,
// tied to the spec it was made from.
type Plan struct {
	FormatVersion int    `json:"formatVersion"`
	Cluster       string `json:"cluster"`
	SpecDigest    string `json:"specDigest"`
	// Offline plans treat every host as blank; they cannot be applied.
	Offline bool `json:"offline"`
	// SpecPaths are the spec's files or directories (absolute), so
	// `apply plan.json` finds the spec again.
	SpecPaths []string `json:"specPaths,omitempty"`
	// FactsDigest per host: apply refuses a plan whose hosts changed since.
	FactsDigest map[string]string `json:"factsDigest,omitempty"`
	// Warnings are what a reviewer should read before the steps (hosts
	// waiting for --remove-hosts, a record that could not be read),
	// already redacted. The CLI also prints them to stderr as it finds them.
	Warnings []string `json:"warnings,omitempty"`
	// Previous is the cluster's record of its last apply, when online and
	// the cluster has one.
	Previous *state.Record `json:"previous,omitempty"`
	Steps    []PlannedStep `json:"steps"`
	Summary  Summary       `json:"summary"`
}

// PlannedStep is one step of the plan.
type PlannedStep struct {
	ID        string          `json:"id"`
	Host      string          `json:"host,omitempty"`
	Kind      string          `json:"kind"`
	Action    step.Action     `json:"action"`
	Diff      []step.DiffLine `json:"diff,omitempty"`
	Note      string          `json:"note,omitempty"`
	DependsOn []string        `json:"dependsOn,omitempty"`
	// Params are the step's typed parameters (its Op); read back from a
	// plan file they are generic JSON values.
	Params any `json:"params"`
}

// Summary counts the actions; recurring steps (Read) are not changes.
type Summary struct {
	Add       int `json:"add"`
	Change    int `json:"change"`
	Remove    int `json:"remove"`
	Unchanged int `json:"unchanged"`
	Read      int `json:"read"`
}

// Changes is how many steps would change something.
func (s Summary) Changes() int { return s.Add + s.Change + s.Remove }

// CheckFunc decides one step's action: from facts and cheap commands when
// online, from the spec alone when offline.
type CheckFunc func(ctx context.Context, s step.Step) (step.Change, error)

// Offline treats every host as blank: each step would create what it
// describes; recurring steps read.
func Offline(_ context.Context, s step.Step) (step.Change, error) {
	if o, ok := s.Op.(step.OfflineChecker); ok {
		return o.CheckOffline(), nil
	}
	if r, ok := s.Op.(step.Recurring); ok && r.RunsEveryApply() {
		return step.Change{Action: step.ActionRead, Diff: describe(s.Op)}, nil
	}
	return step.Change{Action: step.ActionCreate, Diff: describe(s.Op)}, nil
}

func describe(op step.Op) []step.DiffLine {
	if d, ok := op.(step.Describer); ok {
		return d.Describe()
	}
	return nil
}

// Make checks every step of g in topological order and records the result.
func Make(ctx context.Context, c *spec.Cluster, g *Graph, check CheckFunc, offline bool) (*Plan, error) {
	order, err := g.TopoOrder()
	if err != nil {
		return nil, fmt.Errorf("order steps: %w", err)
	}
	p := &Plan{FormatVersion: FormatVersion, Cluster: c.Name, SpecDigest: c.Digest, Offline: offline, Steps: make([]PlannedStep, 0, len(order))}
	// Every step's problem is reported, not only the first one's.
	var errs []error
	for _, id := range order {
		s, _ := g.Get(id)
		ch, err := check(ctx, s)
		if err != nil {
			errs = append(errs, &CheckError{ID: id, Host: s.Host, Err: err})
			continue
		}
		p.Steps = append(p.Steps, PlannedStep{
			ID: id, Host: s.Host, Kind: s.Op.Kind(),
			Action: ch.Action, Diff: ch.Diff, Note: ch.Note,
			DependsOn: g.Deps(id), Params: s.Op,
		})
		p.Summary.Count(ch.Action)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// CheckError is a step whose check failed while planning.
type CheckError struct {
	ID, Host string
	Err      error
}

func (e *CheckError) Error() string { return fmt.Sprintf("%s (host %s): %v", e.ID, e.Host, e.Err) }
func (e *CheckError) Unwrap() error { return e.Err }

// Count adds one step with action a.
func (s *Summary) Count(a step.Action) {
	switch a {
	case step.ActionCreate:
		s.Add++
	case step.ActionUpdate:
		s.Change++
	case step.ActionDelete:
		s.Remove++
	case step.ActionRead:
		s.Read++
	default:
		s.Unchanged++
	}
}

// Load reads a plan file written by `plan -out`.
func Load(r io.Reader) (*Plan, error) {
	var p Plan
	dec := json.NewDecoder(r)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	if p.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("read plan: format version %d, this clusterctl reads %d", p.FormatVersion, FormatVersion)
	}
	return &p, nil
}
