// Package execute walks a plan's graph of steps and runs them in parallel:
// context-aware, with global and per-host concurrency limits, dependents of a
// failure reported as skipped, root causes reported once, and events sent to
// a reporter.
package execute

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Runner checks and applies one step. The CLI supplies one that talks to
// hosts; tests supply fakes.
type Runner interface {
	Check(ctx context.Context, s step.Step) (step.Change, error)
	Apply(ctx context.Context, s step.Step) error
}

// Reporter receives progress events. The walker never calls Event from two
// goroutines at once, so implementations need no locking of their own.
// Event should return quickly: it holds up the step that emitted it.
type Reporter interface {
	Event(Event)
}

// Event types.
const (
	EventStart     = "start"     // a step began (before its check)
	EventCheck     = "check"     // the check finished; Action says what it found
	EventApply     = "apply"     // Apply is about to run
	EventDone      = "done"      // the step succeeded; Status says how
	EventFailed    = "failed"    // the step failed; Err says why
	EventSkipped   = "skipped"   // a dependency failed; Cause names the root cause
	EventCancelled = "cancelled" // the walk was cancelled before or while it ran
)

// Event is one progress report about one step.
type Event struct {
	Time   time.Time
	Type   string
	StepID string
	Host   string
	Action step.Action
	Status Status
	// Err is the step's own error text, not redacted: reporters pass it
	// through their Redact option before showing it.
	Err string
	// Cause is the ID of the failed step that made this one skipped.
	Cause    string
	Duration time.Duration
}

// Status is the outcome of one step.
type Status string

const (
	StatusPending   Status = ""          // never reached an outcome (not in a finished Result)
	StatusUnchanged Status = "unchanged" // check said ActionNone; Apply not called
	StatusChanged   Status = "changed"   // create/update/delete applied
	StatusRead      Status = "read"      // ActionRead applied; not a change
	StatusPlanned   Status = "planned"   // DryRun: check found work, Apply not called
	StatusFailed    Status = "failed"
	StatusSkipped   Status = "skipped"   // a transitive dependency failed
	StatusCancelled Status = "cancelled" // not started, or interrupted, because ctx ended
)

// ok reports whether dependents may run after a step with this status.
func (s Status) ok() bool {
	switch s {
	case StatusUnchanged, StatusChanged, StatusRead, StatusPlanned:
		return true
	}
	return false
}

// Options tunes a Walker. The zero value is usable.
type Options struct {
	// Concurrency bounds steps running at once; <= 0 means 10.
	Concurrency int
	// PerHost bounds the steps that take a host slot (step.TakesHostSlot)
	// running at once on one host; 0 means 1 and < 0 means no per-host
	// limit. Other steps and steps with no host never wait for a slot.
	PerHost int
	// Reporter receives events; nil discards them.
	Reporter Reporter
	// DryRun checks every step and never calls Apply.
	DryRun bool
	// Now is the clock for timings and events; nil means time.Now.
	Now func() time.Time
}

// Walker runs the steps of a graph in dependency order.
type Walker struct {
	g   *dag.Graph[step.Step]
	r   Runner
	opt Options
}

// NewWalker returns a Walker for g that runs steps with r. The graph must
// not change while Walk runs.
func NewWalker(g *dag.Graph[step.Step], r Runner, opt Options) *Walker {
	if opt.Concurrency <= 0 {
		opt.Concurrency = 10
	}
	if opt.PerHost == 0 {
		opt.PerHost = 1
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Walker{g: g, r: r, opt: opt}
}

// StepError is a step's failure, carrying the step ID and host exactly once.
type StepError struct {
	ID   string
	Host string
	// Phase is "check" or "apply": where the step failed.
	Phase string
	Err   error
}

func (e *StepError) Error() string {
	if e.Host == "" {
		return fmt.Sprintf("%s: %v", e.ID, e.Err)
	}
	return fmt.Sprintf("%s (host %s): %v", e.ID, e.Host, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Walk runs every step whose dependencies succeeded and returns what
// happened to each. Each step is checked right before it is applied, while
// holding its host slot, so the decision reflects what earlier steps did:
// ActionNone ends as unchanged without Apply, ActionRead runs Apply and ends
// as read, create/update/delete run Apply and end as changed. The error is nil when every step succeeded; otherwise it
// joins one *StepError per root-cause failure (skipped dependents add none)
// and, when steps were cancelled, the context's error. Result is nil only
// when the graph cannot be walked at all (a cycle, a mislabelled step).
func (w *Walker) Walk(ctx context.Context) (*Result, error) {
	wk, err := w.prepare()
	if err != nil {
		return nil, err
	}
	wk.res.Start = w.opt.Now()
	wk.schedule(ctx)
	wk.res.End = w.opt.Now()
	return wk.res, wk.err(ctx)
}

// walk is the state of one Walk call. The scheduler goroutine owns the
// scheduling fields; a worker owns res.Steps[i] from launch until it sends i
// on done, which hands it back.
type walk struct {
	w     *Walker
	res   *Result
	steps []step.Step
	// dependents[i] lists the topological indexes of steps that depend on i.
	dependents [][]int
	pending    []int // unfinished dependencies per step
	hostOf     []int // index into hosts, or -1 when no host slot is needed
	hosts      []hostSlots
	ready      intHeap // launchable steps, lowest topological index first
	done       chan int
	repMu      sync.Mutex
}

// hostSlots is one host's slot budget and its queue of ready steps
// waiting for a slot.
type hostSlots struct {
	busy int
	wait []int
}

func (w *Walker) prepare() (*walk, error) {
	order, err := w.g.TopoOrder()
	if err != nil {
		return nil, fmt.Errorf("order steps: %w", err)
	}
	n := len(order)
	pos := make(map[string]int, n)
	for i, id := range order {
		pos[id] = i
	}
	wk := &walk{
		w:          w,
		steps:      make([]step.Step, n),
		dependents: make([][]int, n),
		pending:    make([]int, n),
		hostOf:     make([]int, n),
		done:       make(chan int, w.opt.Concurrency),
	}
	res := &Result{
		DryRun: w.opt.DryRun,
		Steps:  make([]StepResult, n),
		index:  pos,
		deps:   make([][]int, n),
	}
	wk.res = res
	hostIdx := map[string]int{}
	for i, id := range order {
		s, _ := w.g.Get(id)
		if s.ID != id {
			return nil, fmt.Errorf("check graph: step %q is stored under ID %q", s.ID, id)
		}
		wk.steps[i] = s
		res.Steps[i] = StepResult{ID: id, Host: s.Host}
		deps := w.g.Deps(id)
		res.deps[i] = make([]int, len(deps))
		for k, d := range deps {
			j := pos[d]
			res.deps[i][k] = j
			wk.dependents[j] = append(wk.dependents[j], i)
		}
		wk.pending[i] = len(deps)
		wk.hostOf[i] = -1
		if s.TakesHostSlot && s.Host != "" && w.opt.PerHost > 0 {
			h, ok := hostIdx[s.Host]
			if !ok {
				h = len(wk.hosts)
				hostIdx[s.Host] = h
				wk.hosts = append(wk.hosts, hostSlots{})
			}
			wk.hostOf[i] = h
		}
	}
	return wk, nil
}

// schedule is the event loop: launch what may run, wait for one step to
// finish or for ctx to end, repeat. It blocks on channels only, and returns
// after every launched step has finished, so no goroutine outlives Walk.
func (wk *walk) schedule(ctx context.Context) {
	for i, p := range wk.pending {
		if p == 0 {
			wk.enqueue(i)
		}
	}
	limit := wk.w.opt.Concurrency
	running := 0
	stopping := false
	ctxDone := ctx.Done()
	for {
		if !stopping && ctx.Err() != nil {
			stopping = true
		}
		for !stopping && running < limit && len(wk.ready) > 0 {
			i := wk.ready.pop()
			running++
			go wk.run(ctx, i)
		}
		if running == 0 {
			break
		}
		select {
		case i := <-wk.done:
			running--
			wk.finish(i)
		case <-ctxDone:
			stopping = true
			ctxDone = nil
		}
	}
	// Whatever has no outcome yet never started: the walk was cancelled.
	for i := range wk.res.Steps {
		r := &wk.res.Steps[i]
		if r.Status == StatusPending {
			r.Status = StatusCancelled
			wk.emit(Event{Time: wk.w.opt.Now(), Type: EventCancelled, StepID: r.ID, Host: r.Host, Status: StatusCancelled})
		}
	}
}

// enqueue makes step i launchable, or parks it behind its host's slot.
func (wk *walk) enqueue(i int) {
	h := wk.hostOf[i]
	if h < 0 {
		wk.ready.push(i)
		return
	}
	hs := &wk.hosts[h]
	if hs.busy < wk.w.opt.PerHost {
		// Take the slot now, while still queued for a global slot, so two
		// slot-taking steps of one host can never both be launched.
		hs.busy++
		wk.ready.push(i)
		return
	}
	hs.wait = append(hs.wait, i)
}

// finish handles step i's outcome on the scheduler goroutine.
func (wk *walk) finish(i int) {
	if h := wk.hostOf[i]; h >= 0 {
		hs := &wk.hosts[h]
		hs.busy--
		if len(hs.wait) > 0 {
			next := hs.wait[0]
			hs.wait = hs.wait[1:]
			hs.busy++
			wk.ready.push(next)
		}
	}
	r := &wk.res.Steps[i]
	switch {
	case r.Status.ok():
		for _, j := range wk.dependents[i] {
			wk.pending[j]--
			if wk.pending[j] == 0 && wk.res.Steps[j].Status == StatusPending {
				wk.enqueue(j)
			}
		}
	case r.Status == StatusFailed:
		wk.skipDependents(i)
	}
	// An interrupted (cancelled) step leaves its dependents pending; they
	// are reported cancelled when the loop ends.
}

// skipDependents marks every transitive dependent of the failed step i as
// skipped with i as the root cause. None of them can have started, since
// each needs i to succeed. A dependent already skipped by another failure
// keeps its first cause, and so do its own dependents.
func (wk *walk) skipDependents(i int) {
	cause := wk.res.Steps[i].ID
	var skipped []int
	stack := []int{i}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, j := range wk.dependents[n] {
			if wk.res.Steps[j].Status != StatusPending {
				continue
			}
			wk.res.Steps[j].Status = StatusSkipped
			wk.res.Steps[j].Cause = cause
			skipped = append(skipped, j)
			stack = append(stack, j)
		}
	}
	slices.Sort(skipped) // report in topological order
	now := wk.w.opt.Now()
	for _, j := range skipped {
		r := &wk.res.Steps[j]
		wk.emit(Event{Time: now, Type: EventSkipped, StepID: r.ID, Host: r.Host, Status: StatusSkipped, Cause: cause})
	}
}

// run executes step i on its own goroutine and hands the result back.
func (wk *walk) run(ctx context.Context, i int) {
	s := wk.steps[i]
	r := &wk.res.Steps[i]
	now := wk.w.opt.Now
	r.Start = now()
	wk.emit(Event{Time: r.Start, Type: EventStart, StepID: s.ID, Host: s.Host})

	status, change, phase, err := wk.exec(ctx, s)

	r.End = now()
	r.Duration = r.End.Sub(r.Start)
	r.Change = change
	r.Action = change.Action
	ev := Event{Time: r.End, StepID: s.ID, Host: s.Host, Action: change.Action, Duration: r.Duration}
	if err != nil {
		status = StatusFailed
		ev.Type = EventFailed
		if interrupted(ctx, err) {
			status = StatusCancelled
			ev.Type = EventCancelled
		}
		r.Err = stepError(s, phase, err)
		ev.Err = err.Error()
	} else {
		ev.Type = EventDone
	}
	r.Status = status
	ev.Status = status
	wk.emit(ev)
	wk.done <- i
}

// exec is check, then apply when the check found work.
func (wk *walk) exec(ctx context.Context, s step.Step) (Status, step.Change, string, error) {
	change, err := wk.check(ctx, s)
	if err != nil {
		return StatusFailed, change, "check", err
	}
	if change.Action == "" {
		// The zero Change means nothing to do.
		change.Action = step.ActionNone
	}
	wk.emit(Event{Time: wk.w.opt.Now(), Type: EventCheck, StepID: s.ID, Host: s.Host, Action: change.Action})
	switch change.Action {
	case step.ActionNone:
		return StatusUnchanged, change, "check", nil
	case step.ActionCreate, step.ActionUpdate, step.ActionDelete, step.ActionRead:
	default:
		return StatusFailed, change, "check", fmt.Errorf("check step: unknown action %q", change.Action)
	}
	if wk.w.opt.DryRun {
		return StatusPlanned, change, "check", nil
	}
	wk.emit(Event{Time: wk.w.opt.Now(), Type: EventApply, StepID: s.ID, Host: s.Host, Action: change.Action})
	if err := wk.apply(ctx, s); err != nil {
		return StatusFailed, change, "apply", err
	}
	if change.Action == step.ActionRead {
		return StatusRead, change, "apply", nil
	}
	return StatusChanged, change, "apply", nil
}

func (wk *walk) check(ctx context.Context, s step.Step) (ch step.Change, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError("check", v)
		}
	}()
	return wk.w.r.Check(ctx, s)
}

func (wk *walk) apply(ctx context.Context, s step.Step) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError("apply", v)
		}
	}()
	return wk.w.r.Apply(ctx, s)
}

// panicError turns a recovered value into an error without the stack: the
// message is for users, and a runner bug is still reported as this step's
// failure instead of killing the whole apply.
func panicError(phase string, v any) error {
	if err, ok := v.(error); ok {
		return fmt.Errorf("%s panicked: %w", phase, err)
	}
	return fmt.Errorf("%s panicked: %v", phase, v)
}

// interrupted reports whether err is the step giving up because ctx ended,
// as opposed to a failure of its own.
func interrupted(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// stepError adds the step ID and host unless the runner already did.
func stepError(s step.Step, phase string, err error) error {
	var se *StepError
	if errors.As(err, &se) && se.ID == s.ID {
		return err
	}
	return &StepError{ID: s.ID, Host: s.Host, Phase: phase, Err: err}
}

func (wk *walk) emit(e Event) {
	rep := wk.w.opt.Reporter
	if rep == nil {
		return
	}
	wk.repMu.Lock()
	defer wk.repMu.Unlock()
	rep.Event(e)
}

// err joins the root causes in topological order, then the context's error
// if anything was cancelled.
func (wk *walk) err(ctx context.Context) error {
	var errs []error
	cancelled := false
	for i := range wk.res.Steps {
		switch r := &wk.res.Steps[i]; r.Status {
		case StatusFailed:
			errs = append(errs, r.Err)
		case StatusCancelled:
			cancelled = true
		}
	}
	if cancelled {
		err := ctx.Err()
		if err == nil {
			// Unreachable in practice: only ctx ending cancels steps.
			err = context.Canceled
		}
		errs = append(errs, fmt.Errorf("walk steps: %w", err))
		if cause := context.Cause(ctx); cause != nil && cause != err {
			errs = append(errs, cause)
		}
	}
	return errors.Join(errs...)
}

// intHeap is a min-heap of step indexes; lower topological index first
// keeps launch order deterministic for a given graph.
type intHeap []int

func (h *intHeap) push(v int) {
	*h = append(*h, v)
	s := *h
	k := len(s) - 1
	for k > 0 {
		p := (k - 1) / 2
		if s[p] <= s[k] {
			break
		}
		s[p], s[k] = s[k], s[p]
		k = p
	}
}

func (h *intHeap) pop() int {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	k := 0
	for {
		l := 2*k + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && s[r] < s[l] {
			m = r
		}
		if s[k] <= s[m] {
			break
		}
		s[k], s[m] = s[m], s[k]
		k = m
	}
	*h = s
	return top
}
