package execute

import (
	"fmt"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/step"
)

// StepResult is what happened to one step.
type StepResult struct {
	ID     string
	Host   string
	Status Status
	// Action and Change are what the last check found; empty if the step
	// never ran or its check failed.
	Action step.Action
	Change step.Change
	// Err is a *StepError for failed steps and for steps interrupted by
	// cancellation; nil otherwise.
	Err error
	// Cause is the ID of the failed step that made this one skipped.
	Cause string
	// Start and End are zero for steps that never ran.
	Start, End time.Time
	Duration   time.Duration
}

// Ran reports whether the step was started.
func (r StepResult) Ran() bool { return !r.Start.IsZero() }

// Result is the outcome of one Walk.
type Result struct {
	// Steps holds every step of the graph in topological order.
	Steps      []StepResult
	Start, End time.Time
	DryRun     bool

	index map[string]int
	deps  [][]int // deps[i]: indexes into Steps that step i depends on
}

// Step returns the result of the step with the given ID.
func (r *Result) Step(id string) (StepResult, bool) {
	i, ok := r.index[id]
	if !ok {
		return StepResult{}, false
	}
	return r.Steps[i], true
}

// Summary counts outcomes.
type Summary struct {
	Changed, Unchanged, Read, Planned int
	Failed, Skipped, Cancelled        int
	Wall                              time.Duration
}

// String is the one-line summary printed after an apply, e.g.
// "3 changed, 5 unchanged, 1 read, 1 failed, 2 skipped, 0 cancelled in 4.2s".
// Planned appears only for dry runs, where it is the interesting number.
func (s Summary) String() string {
	var b strings.Builder
	if s.Planned > 0 {
		fmt.Fprintf(&b, "%d planned, ", s.Planned)
	}
	fmt.Fprintf(&b, "%d changed, %d unchanged, %d read, %d failed, %d skipped, %d cancelled in %s",
		s.Changed, s.Unchanged, s.Read, s.Failed, s.Skipped, s.Cancelled, seconds(s.Wall))
	return b.String()
}

// Summary counts the steps by status.
func (r *Result) Summary() Summary {
	s := Summary{Wall: r.End.Sub(r.Start)}
	for _, st := range r.Steps {
		switch st.Status {
		case StatusChanged:
			s.Changed++
		case StatusUnchanged:
			s.Unchanged++
		case StatusRead:
			s.Read++
		case StatusPlanned:
			s.Planned++
		case StatusFailed:
			s.Failed++
		case StatusSkipped:
			s.Skipped++
		case StatusCancelled:
			s.Cancelled++
		}
	}
	return s
}

// CriticalPath returns the dependency chain of steps with the largest total
// measured duration, and that total: the chain that bounded the wall time,
// and so the place to look when an apply is slow. Steps that never ran are
// left out. Ties go to the smallest IDs, so the answer is deterministic.
func (r *Result) CriticalPath() ([]string, time.Duration) {
	n := len(r.Steps)
	dist := make([]time.Duration, n)
	prev := make([]int, n)
	end := -1
	// Steps are in topological order, so each step's dependencies are
	// final before it is visited.
	for i, st := range r.Steps {
		prev[i] = -1
		if !st.Ran() {
			continue
		}
		var best time.Duration
		for _, d := range r.deps[i] {
			if !r.Steps[d].Ran() {
				continue
			}
			if prev[i] < 0 || dist[d] > best || dist[d] == best && r.Steps[d].ID < r.Steps[prev[i]].ID {
				best, prev[i] = dist[d], d
			}
		}
		dist[i] = best + st.Duration
		if end < 0 || dist[i] > dist[end] || dist[i] == dist[end] && st.ID < r.Steps[end].ID {
			end = i
		}
	}
	if end < 0 {
		return nil, 0
	}
	var path []string
	for i := end; i >= 0; i = prev[i] {
		path = append(path, r.Steps[i].ID)
	}
	for a, b := 0, len(path)-1; a < b; a, b = a+1, b-1 {
		path[a], path[b] = path[b], path[a]
	}
	return path, dist[end]
}

// seconds formats d as "0.4s": compact, and steady in column layouts.
func seconds(d time.Duration) string {
	return fmt.Sprintf("%.1fs", d.Seconds())
}
