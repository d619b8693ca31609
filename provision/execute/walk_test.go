package execute

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

var errExit = errors.New("exit status 1")

// diamond is a -> {b, c} -> d, all taking the slot of one host.
var diamond = []node{
	{id: "n1/a", slot: true},
	{id: "n1/b", slot: true, deps: []string{"n1/a"}},
	{id: "n1/c", slot: true, deps: []string{"n1/a"}},
	{id: "n1/d", slot: true, deps: []string{"n1/b", "n1/c"}},
}

func TestWalkOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []node
		b       map[string]behaviour
		opt     Options
		want    map[string]Status
		causes  map[string]string // skipped step -> root cause
		applies map[string]int    // expected Apply calls; unlisted means 0 or 1 by status
		// roots are the step IDs the error must name, once each, in order;
		// nil means Walk must succeed.
		roots   []string
		errText []string // substrings of the error
		summary Summary
	}{
		{
			name:    "diamond all change",
			nodes:   diamond,
			want:    map[string]Status{"n1/a": StatusChanged, "n1/b": StatusChanged, "n1/c": StatusChanged, "n1/d": StatusChanged},
			summary: Summary{Changed: 4},
		},
		{
			name: "actions map to statuses",
			nodes: []node{
				{id: "n1/none", slot: true}, {id: "n1/read"}, {id: "n1/update", slot: true},
				{id: "n1/delete", slot: true}, {id: "n1/zero", slot: true},
				{id: "n1/after", slot: true, deps: []string{"n1/none", "n1/read", "n1/update", "n1/delete", "n1/zero"}},
			},
			b: map[string]behaviour{
				"n1/none":   {action: step.ActionNone},
				"n1/read":   {action: step.ActionRead},
				"n1/update": {action: step.ActionUpdate},
				"n1/delete": {action: step.ActionDelete},
				"n1/zero":   {zero: true},
			},
			want: map[string]Status{
				"n1/none": StatusUnchanged, "n1/read": StatusRead, "n1/update": StatusChanged,
				"n1/delete": StatusChanged, "n1/zero": StatusUnchanged, "n1/after": StatusChanged,
			},
			summary: Summary{Changed: 3, Unchanged: 2, Read: 1},
		},
		{
			name: "failure skips dependents, independent branch finishes",
			nodes: append([]node{
				{id: "n2/x", slot: true},
				{id: "n2/y", slot: true, deps: []string{"n2/x"}},
				{id: "n2/z", slot: true, deps: []string{"n2/y"}},
			}, diamond...),
			b: map[string]behaviour{
				"n1/b": {applyErr: fmt.Errorf("write sysctl: %w", errExit)},
				"n2/x": {delay: 5 * time.Millisecond},
			},
			want: map[string]Status{
				"n1/a": StatusChanged, "n1/b": StatusFailed, "n1/c": StatusChanged, "n1/d": StatusSkipped,
				"n2/x": StatusChanged, "n2/y": StatusChanged, "n2/z": StatusChanged,
			},
			causes:  map[string]string{"n1/d": "n1/b"},
			roots:   []string{"n1/b"},
			errText: []string{"n1/b (host n1): write sysctl: exit status 1"},
			summary: Summary{Changed: 5, Failed: 1, Skipped: 1},
		},
		{
			name: "independent failures each reported once",
			nodes: []node{
				{id: "n1/a", slot: true}, {id: "n2/a", slot: true}, {id: "n3/ok", slot: true},
				{id: "n1/b", slot: true, deps: []string{"n1/a", "n2/a"}},
				{id: "n1/c", slot: true, deps: []string{"n1/b"}},
				{id: "cluster/cni", host: "-", deps: []string{"n1/c", "n3/ok"}},
			},
			b: map[string]behaviour{
				"n1/a": {applyErr: errExit},
				"n2/a": {checkErr: fmt.Errorf("dial: %w", host.ErrUnreachable)},
			},
			want: map[string]Status{
				"n1/a": StatusFailed, "n2/a": StatusFailed, "n3/ok": StatusChanged,
				"n1/b": StatusSkipped, "n1/c": StatusSkipped, "cluster/cni": StatusSkipped,
			},
			roots:   []string{"n1/a", "n2/a"},
			errText: []string{"n1/a (host n1): exit status 1", "n2/a (host n2): dial: host unreachable"},
			applies: map[string]int{"n2/a": 0},
			summary: Summary{Changed: 1, Failed: 2, Skipped: 3},
		},
		{
			name:    "step without host",
			nodes:   []node{{id: "cluster/cni", host: "-"}},
			b:       map[string]behaviour{"cluster/cni": {applyErr: errExit}},
			want:    map[string]Status{"cluster/cni": StatusFailed},
			roots:   []string{"cluster/cni"},
			errText: []string{"cluster/cni: exit status 1"},
			summary: Summary{Failed: 1},
		},
		{
			name:    "runner already wrapped the step",
			nodes:   []node{{id: "n1/a", slot: true}},
			b:       map[string]behaviour{"n1/a": {applyErr: &StepError{ID: "n1/a", Host: "n1", Err: errExit}}},
			want:    map[string]Status{"n1/a": StatusFailed},
			roots:   []string{"n1/a"},
			errText: []string{"n1/a (host n1): exit status 1"},
			summary: Summary{Failed: 1},
		},
		{
			name:    "unknown action fails the step",
			nodes:   []node{{id: "n1/a", slot: true}, {id: "n1/b", deps: []string{"n1/a"}}},
			b:       map[string]behaviour{"n1/a": {action: "upgrade"}},
			want:    map[string]Status{"n1/a": StatusFailed, "n1/b": StatusSkipped},
			roots:   []string{"n1/a"},
			errText: []string{`n1/a (host n1): check step: unknown action "upgrade"`},
			applies: map[string]int{"n1/a": 0},
			summary: Summary{Failed: 1, Skipped: 1},
		},
		{
			name:    "panic in apply is a failure",
			nodes:   []node{{id: "n1/a", slot: true}, {id: "n1/b", deps: []string{"n1/a"}}, {id: "n2/c"}},
			b:       map[string]behaviour{"n1/a": {panicIn: "apply"}},
			want:    map[string]Status{"n1/a": StatusFailed, "n1/b": StatusSkipped, "n2/c": StatusChanged},
			roots:   []string{"n1/a"},
			errText: []string{"n1/a (host n1): apply panicked: assignment to entry in nil map"},
			summary: Summary{Changed: 1, Failed: 1, Skipped: 1},
		},
		{
			name:    "panic in check is a failure",
			nodes:   []node{{id: "n1/a", slot: true}},
			b:       map[string]behaviour{"n1/a": {panicIn: "check"}},
			want:    map[string]Status{"n1/a": StatusFailed},
			roots:   []string{"n1/a"},
			errText: []string{"n1/a (host n1): check panicked: boom"},
			applies: map[string]int{"n1/a": 0},
			summary: Summary{Failed: 1},
		},
		{
			name:    "dry run never applies",
			nodes:   append([]node{{id: "n2/read"}, {id: "n2/none", slot: true, deps: []string{"n2/read"}}}, diamond...),
			b:       map[string]behaviour{"n2/read": {action: step.ActionRead}, "n2/none": {action: step.ActionNone}},
			opt:     Options{DryRun: true},
			want:    map[string]Status{"n1/a": StatusPlanned, "n1/b": StatusPlanned, "n1/c": StatusPlanned, "n1/d": StatusPlanned, "n2/read": StatusPlanned, "n2/none": StatusUnchanged},
			applies: map[string]int{"n1/a": 0, "n1/b": 0, "n1/c": 0, "n1/d": 0, "n2/read": 0},
			summary: Summary{Planned: 5, Unchanged: 1},
		},
	}
	for _, tt := range tests {
		for _, conc := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/concurrency=%d", tt.name, conc), func(t *testing.T) {
				g := graphOf(t, tt.nodes...)
				fr := newFakeRunner(tt.b)
				opt := tt.opt
				opt.Concurrency = conc
				rec := &recorder{t: t}
				opt.Reporter = rec
				res, err := NewWalker(g, fr, opt).Walk(context.Background())
				if res == nil {
					t.Fatalf("Walk returned no result: %v", err)
				}
				fr.assertOrder(t, g)

				for id, want := range tt.want {
					got, ok := res.Step(id)
					if !ok || got.Status != want {
						t.Errorf("%s: status %q, want %q (err %v)", id, got.Status, want, got.Err)
					}
					wantApplies := 0
					if want == StatusChanged || want == StatusRead {
						wantApplies = 1
					}
					if n, ok := tt.applies[id]; ok {
						wantApplies = n
					} else if want == StatusFailed {
						wantApplies = fr.applies[id] // failed in check or apply; covered by errText
					}
					if fr.applies[id] != wantApplies {
						t.Errorf("%s: Apply called %d times, want %d", id, fr.applies[id], wantApplies)
					}
					if want == StatusSkipped || want == StatusCancelled {
						if fr.checks[id] != 0 {
							t.Errorf("%s: %s step was checked", id, want)
						}
						if got.Ran() {
							t.Errorf("%s: %s step has timings", id, want)
						}
					}
				}
				for id, cause := range tt.causes {
					if got, _ := res.Step(id); got.Cause != cause {
						t.Errorf("%s: cause %q, want %q", id, got.Cause, cause)
					}
				}
				// Every skipped step's cause must be a failed step.
				for _, st := range res.Steps {
					if st.Status == StatusSkipped {
						if c, _ := res.Step(st.Cause); c.Status != StatusFailed {
							t.Errorf("%s: cause %q has status %q", st.ID, st.Cause, c.Status)
						}
					}
				}

				checkRoots(t, err, tt.roots, tt.errText)

				sum := res.Summary()
				sum.Wall = 0
				if sum != tt.summary {
					t.Errorf("Summary = %+v, want %+v", sum, tt.summary)
				}
				checkEvents(t, res, rec.events)
			})
		}
	}
}

// checkRoots asserts err names each root cause exactly once, wraps a
// *StepError for each, and contains the wanted texts.
func checkRoots(t *testing.T, err error, roots []string, texts []string) {
	t.Helper()
	if roots == nil {
		if err != nil {
			t.Fatalf("Walk error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatal("Walk succeeded, want failure")
	}
	msg := err.Error()
	if strings.Contains(msg, "goroutine ") || strings.Contains(msg, ".go:") {
		t.Errorf("error carries a stack trace: %s", msg)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("error %T is not a join", err)
	}
	var ids []string
	for _, e := range joined.Unwrap() {
		var se *StepError
		if !errors.As(e, &se) {
			t.Errorf("joined error %q is not a *StepError", e)
			continue
		}
		ids = append(ids, se.ID)
		n := 0
		for _, line := range strings.Split(msg, "\n") {
			if strings.HasPrefix(line, se.ID+" ") || strings.HasPrefix(line, se.ID+":") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("root %s appears %d times in:\n%s", se.ID, n, msg)
		}
		if strings.Count(e.Error(), "(host") > 1 {
			t.Errorf("double-wrapped: %s", e)
		}
	}
	if fmt.Sprint(ids) != fmt.Sprint(roots) {
		t.Errorf("root causes %v, want %v", ids, roots)
	}
	for _, want := range texts {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

// checkEvents asserts every step got exactly one final event matching its
// result, after its start event when it ran.
func checkEvents(t *testing.T, res *Result, events []Event) {
	t.Helper()
	final := map[string]Event{}
	started := map[string]bool{}
	for _, e := range events {
		switch e.Type {
		case EventStart:
			if started[e.StepID] {
				t.Errorf("%s started twice", e.StepID)
			}
			started[e.StepID] = true
		case EventCheck, EventApply:
			if !started[e.StepID] {
				t.Errorf("%s: %s event before start", e.StepID, e.Type)
			}
		default:
			if _, dup := final[e.StepID]; dup {
				t.Errorf("%s: second final event %s", e.StepID, e.Type)
			}
			final[e.StepID] = e
		}
	}
	for _, st := range res.Steps {
		e, ok := final[st.ID]
		if !ok {
			t.Errorf("%s: no final event", st.ID)
			continue
		}
		if e.Status != st.Status {
			t.Errorf("%s: final event status %q, result %q", st.ID, e.Status, st.Status)
		}
		if st.Ran() != started[st.ID] {
			t.Errorf("%s: ran=%v but start event=%v", st.ID, st.Ran(), started[st.ID])
		}
	}
}

func TestWalkErrorsAs(t *testing.T) {
	g := graphOf(t, node{id: "node-2/hostprep/sysctl", slot: true})
	fr := newFakeRunner(map[string]behaviour{
		"node-2/hostprep/sysctl": {checkErr: fmt.Errorf("read sysctl: %w", host.ErrUnreachable)},
	})
	_, err := NewWalker(g, fr, Options{}).Walk(context.Background())
	if !errors.Is(err, host.ErrUnreachable) {
		t.Errorf("errors.Is(err, ErrUnreachable) = false for %v", err)
	}
	var se *StepError
	if !errors.As(err, &se) || se.ID != "node-2/hostprep/sysctl" || se.Host != "node-2" || se.Phase != "check" {
		t.Errorf("errors.As StepError = %+v", se)
	}
	want := "node-2/hostprep/sysctl (host node-2): read sysctl: host unreachable"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestWalkRejectsBadGraph(t *testing.T) {
	t.Run("cycle", func(t *testing.T) {
		g := graphOf(t, node{id: "n1/a", deps: []string{"n1/b"}}, node{id: "n1/b", deps: []string{"n1/a"}})
		res, err := NewWalker(g, newFakeRunner(nil), Options{}).Walk(context.Background())
		var ce *dag.CycleError
		if res != nil || !errors.As(err, &ce) {
			t.Fatalf("Walk = %v, %v; want nil result and a cycle error", res, err)
		}
	})
	t.Run("ID mismatch", func(t *testing.T) {
		g := dag.New[step.Step]()
		if err := g.Add("n1/a", step.Step{ID: "n1/other"}); err != nil {
			t.Fatal(err)
		}
		res, err := NewWalker(g, newFakeRunner(nil), Options{}).Walk(context.Background())
		if res != nil || err == nil || !strings.Contains(err.Error(), `"n1/other"`) {
			t.Fatalf("Walk = %v, %v", res, err)
		}
	})
}

func TestWalkCancel(t *testing.T) {
	// n1/block hangs until cancelled and gives up; n2/slow ignores the
	// cancel and finishes; n3/quick completes before the cancel. Their
	// dependents never start.
	nodes := []node{
		{id: "n3/quick", slot: true},
		{id: "n1/block", slot: true},
		{id: "n1/after", slot: true, deps: []string{"n1/block"}},
		{id: "n1/later", slot: true, deps: []string{"n1/after"}},
		{id: "n2/slow", slot: true},
		{id: "n2/after", slot: true, deps: []string{"n2/slow"}},
		{id: "n4/fails", slot: true},
		{id: "n4/after", deps: []string{"n4/fails"}},
		{id: "n5/queued", slot: true, deps: []string{"n3/quick"}},
	}
	blockStarted, slowStarted := make(chan struct{}), make(chan struct{})
	fr := newFakeRunner(map[string]behaviour{
		"n1/block": {block: true, started: blockStarted},
		"n2/slow":  {block: true, finish: true, started: slowStarted},
		"n4/fails": {applyErr: errExit},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{t: t}
	// Concurrency 3: n1/block, n2/slow and one of the quick steps fill it.
	w := NewWalker(graphOf(t, nodes...), fr, Options{Concurrency: 3, Reporter: rec})
	go func() {
		<-blockStarted
		<-slowStarted
		// Both blockers hold 2 of 3 slots; wait for the quick steps to
		// drain through the third before cancelling.
		for {
			fr.mu.Lock()
			done := fr.lastReturn["n3/quick"] > 0 && fr.lastReturn["n4/fails"] > 0
			fr.mu.Unlock()
			if done {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	res, err := w.Walk(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Walk error %v does not wrap context.Canceled", err)
	}
	var se *StepError
	if !errors.As(err, &se) || se.ID != "n4/fails" {
		t.Errorf("error does not carry the real failure: %v", err)
	}
	if strings.Contains(err.Error(), "n1/block") {
		t.Errorf("interrupted step reported as a root cause: %v", err)
	}
	want := map[string]Status{
		"n3/quick": StatusChanged,
		"n1/block": StatusCancelled, "n1/after": StatusCancelled, "n1/later": StatusCancelled,
		"n2/slow": StatusChanged, "n2/after": StatusCancelled,
		"n4/fails": StatusFailed, "n4/after": StatusSkipped,
	}
	for id, w := range want {
		if got, _ := res.Step(id); got.Status != w {
			t.Errorf("%s: status %q, want %q", id, got.Status, w)
		}
	}
	// n5/queued became ready when n3/quick finished; whether it started
	// before the cancel depends on scheduling, but it must not have failed.
	if got, _ := res.Step("n5/queued"); got.Status != StatusCancelled && got.Status != StatusChanged {
		t.Errorf("n5/queued: status %q", got.Status)
	}
	if got, _ := res.Step("n1/block"); !got.Ran() || !errors.Is(got.Err, context.Canceled) {
		t.Errorf("n1/block: ran=%v err=%v; want the interruption recorded", got.Ran(), got.Err)
	}
	for _, id := range []string{"n1/after", "n1/later", "n2/after"} {
		if fr.checks[id] != 0 {
			t.Errorf("%s was started after the cancel", id)
		}
	}
	sum := res.Summary()
	if sum.Failed != 1 || sum.Skipped != 1 || sum.Cancelled < 4 {
		t.Errorf("Summary = %+v", sum)
	}
	checkEvents(t, res, rec.events)
}

func TestWalkAlreadyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	errInterrupt := errors.New("interrupt signal")
	cancel(errInterrupt)
	fr := newFakeRunner(nil)
	res, err := NewWalker(graphOf(t, diamond...), fr, Options{}).Walk(ctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errInterrupt) {
		t.Fatalf("Walk error = %v; want context.Canceled and the cause", err)
	}
	if s := res.Summary(); s.Cancelled != 4 || len(fr.checks) != 0 {
		t.Errorf("Summary %+v, checks %v", s, fr.checks)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		want  int // effective limit
	}{
		{"one", 1, 1},
		{"three", 3, 3},
		{"default", 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nodes []node
			b := map[string]behaviour{}
			for i := range 40 {
				id := fmt.Sprintf("h%d/s", i) // one host each: only the global limit applies
				nodes = append(nodes, node{id: id, slot: true})
				b[id] = behaviour{delay: time.Millisecond}
			}
			fr := newFakeRunner(b)
			res, err := NewWalker(graphOf(t, nodes...), fr, Options{Concurrency: tt.limit}).Walk(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if fr.maxRunning > tt.want {
				t.Errorf("max concurrent runner calls %d, limit %d", fr.maxRunning, tt.want)
			}
			if s := res.Summary(); s.Changed != 40 {
				t.Errorf("Summary %+v", s)
			}
		})
	}
}

func TestPerHostLimit(t *testing.T) {
	tests := []struct {
		name    string
		perHost int
		want    int
	}{
		{"default one", 0, 1},
		{"two", 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// On n1: eight independent slot-taking steps and two probes
			// without a slot. The probes and one slot-taking step wait on a
			// barrier of three, so the walk only finishes if slot-free steps
			// overlap each other and a slot-taking step on the same host.
			meet := newBarrier(3)
			nodes := []node{{id: "n1/probe-a"}, {id: "n1/probe-b"}}
			b := map[string]behaviour{
				"n1/probe-a": {action: step.ActionRead, barrier: meet},
				"n1/probe-b": {action: step.ActionRead, barrier: meet},
				"n1/m0":      {barrier: meet},
			}
			for i := range 8 {
				id := fmt.Sprintf("n1/m%d", i)
				nodes = append(nodes, node{id: id, slot: true})
				if i > 0 {
					b[id] = behaviour{delay: time.Millisecond}
				}
				other := fmt.Sprintf("n2/m%d", i)
				nodes = append(nodes, node{id: other, slot: true})
				b[other] = behaviour{delay: time.Millisecond}
			}
			fr := newFakeRunner(b)
			_, err := NewWalker(graphOf(t, nodes...), fr, Options{Concurrency: 10, PerHost: tt.perHost}).Walk(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"n1", "n2"} {
				if fr.maxHostSlot[h] > tt.want {
					t.Errorf("host %s: %d slot-taking steps at once, limit %d", h, fr.maxHostSlot[h], tt.want)
				}
			}
		})
	}
}

func TestCriticalPath(t *testing.T) {
	// a(1s) -> b(5s) -> d(1s); a -> c(2s) -> d; e(3s) alone; f never runs.
	clock := newFakeClock()
	fr := newFakeRunner(map[string]behaviour{
		"n1/a": {advance: 1 * time.Second},
		"n1/b": {advance: 5 * time.Second},
		"n1/c": {advance: 2 * time.Second},
		"n1/d": {advance: 1 * time.Second},
		"n2/e": {advance: 3 * time.Second},
		"n2/g": {applyErr: errExit, advance: 20 * time.Second},
	})
	fr.clock = clock
	g := graphOf(t,
		node{id: "n1/a", slot: true},
		node{id: "n1/b", slot: true, deps: []string{"n1/a"}},
		node{id: "n1/c", slot: true, deps: []string{"n1/a"}},
		node{id: "n1/d", slot: true, deps: []string{"n1/b", "n1/c"}},
		node{id: "n2/e", slot: true},
		node{id: "n2/g", slot: true},
		node{id: "n2/f", slot: true, deps: []string{"n2/g"}},
	)
	// Concurrency 1 runs steps one after another, so the shared fake clock
	// measures each step's own advance exactly.
	res, _ := NewWalker(g, fr, Options{Concurrency: 1, Now: clock.Now}).Walk(context.Background())
	tests := []struct {
		name  string
		res   *Result
		path  []string
		total time.Duration
	}{
		{"failed step counts by its measured time", res, []string{"n2/g"}, 20 * time.Second},
		{"empty", &Result{}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, total := tt.res.CriticalPath()
			if fmt.Sprint(path) != fmt.Sprint(tt.path) || total != tt.total {
				t.Errorf("CriticalPath = %v %v, want %v %v", path, total, tt.path, tt.total)
			}
		})
	}

	// Without the 20s failure the diamond's long side dominates.
	b2 := maps.Clone(fr.b)
	b2["n2/g"] = behaviour{advance: 500 * time.Millisecond}
	fr2 := newFakeRunner(b2)
	fr2.clock = clock
	res2, err := NewWalker(g, fr2, Options{Concurrency: 1, Now: clock.Now}).Walk(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	path, total := res2.CriticalPath()
	if want := "[n1/a n1/b n1/d]"; fmt.Sprint(path) != want || total != 7*time.Second {
		t.Errorf("CriticalPath = %v %v, want %s 7s", path, total, want)
	}
	if got, _ := res2.Step("n1/b"); got.Duration != 5*time.Second {
		t.Errorf("n1/b duration %v", got.Duration)
	}
	sum := res2.Summary()
	if sum.Wall != 12500*time.Millisecond || sum.String() != "7 changed, 0 unchanged, 0 read, 0 failed, 0 skipped, 0 cancelled in 12.5s" {
		t.Errorf("Summary = %+v %q", sum, sum)
	}
}

// TestEventSequence pins the exact event stream of a small walk run one
// step at a time.
func TestEventSequence(t *testing.T) {
	clock := newFakeClock()
	fr := newFakeRunner(map[string]behaviour{
		"n1/a": {action: step.ActionNone},
		"n1/b": {applyErr: errExit, advance: 400 * time.Millisecond},
		"n2/r": {action: step.ActionRead, advance: 100 * time.Millisecond},
	})
	fr.clock = clock
	g := graphOf(t,
		node{id: "n1/a", slot: true},
		node{id: "n1/b", slot: true, deps: []string{"n1/a"}},
		node{id: "n1/c", slot: true, deps: []string{"n1/b"}},
		node{id: "n2/r"},
	)
	rec := &recorder{t: t}
	_, err := NewWalker(g, fr, Options{Concurrency: 1, Now: clock.Now, Reporter: rec}).Walk(context.Background())
	if err == nil {
		t.Fatal("want failure")
	}
	var got []string
	for _, e := range rec.events {
		got = append(got, fmt.Sprintf("%s %s %s action=%s status=%s err=%q cause=%s dur=%s",
			e.Time.Format("05.000"), e.Type, e.StepID, e.Action, e.Status, e.Err, e.Cause, e.Duration))
	}
	want := []string{
		`00.000 start n1/a action= status= err="" cause= dur=0s`,
		`00.000 check n1/a action=none status= err="" cause= dur=0s`,
		`00.000 done n1/a action=none status=unchanged err="" cause= dur=0s`,
		`00.000 start n1/b action= status= err="" cause= dur=0s`,
		`00.000 check n1/b action=create status= err="" cause= dur=0s`,
		`00.000 apply n1/b action=create status= err="" cause= dur=0s`,
		`00.400 failed n1/b action=create status=failed err="exit status 1" cause= dur=400ms`,
		`00.400 skipped n1/c action= status=skipped err="" cause=n1/b dur=0s`,
		`00.400 start n2/r action= status= err="" cause= dur=0s`,
		`00.400 check n2/r action=read status= err="" cause= dur=0s`,
		`00.400 apply n2/r action=read status= err="" cause= dur=0s`,
		`00.500 done n2/r action=read status=read err="" cause= dur=100ms`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestNoGoroutineLeak runs walks that succeed, fail and get cancelled, then
// waits for the goroutine count to settle back.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 5 {
		fr := newFakeRunner(map[string]behaviour{"n1/b": {applyErr: errExit}})
		if _, err := NewWalker(graphOf(t, diamond...), fr, Options{}).Walk(context.Background()); err == nil {
			t.Fatal("want failure")
		}
		started := make(chan struct{})
		fr = newFakeRunner(map[string]behaviour{"n1/a": {block: true, started: started}})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-started; cancel() }()
		if _, err := NewWalker(graphOf(t, diamond...), fr, Options{}).Walk(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("want cancel, got %v", err)
		}
		cancel()
		live := NewLiveReporter(&strings.Builder{}, LiveOptions{Interval: time.Millisecond})
		live.Start()
		if _, err := NewWalker(graphOf(t, diamond...), newFakeRunner(nil), Options{Reporter: live}).Walk(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := live.Finish(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nopRunner changes everything instantly: the walker's own overhead.
type nopRunner struct{}

func (nopRunner) Check(context.Context, step.Step) (step.Change, error) {
	return step.Change{Action: step.ActionUpdate}, nil
}
func (nopRunner) Apply(context.Context, step.Step) error { return nil }

// BenchmarkWalk10k walks 100 hosts x 100 chained slot-taking steps, with a
// cluster-wide barrier every 25 levels that every host's next step waits on
// (fan-in), as control-plane-ready gates do in real plans.
func BenchmarkWalk10k(b *testing.B) {
	const hosts, steps = 100, 100
	var nodes []node
	barrier := ""
	for lvl := range steps {
		for h := range hosts {
			n := node{id: fmt.Sprintf("node-%d/step-%02d", h, lvl), slot: true}
			if lvl > 0 {
				n.deps = append(n.deps, fmt.Sprintf("node-%d/step-%02d", h, lvl-1))
			}
			if barrier != "" && lvl%25 == 0 {
				n.deps = append(n.deps, barrier)
			}
			nodes = append(nodes, n)
		}
		if lvl%25 == 24 && lvl < steps-1 {
			barrier = fmt.Sprintf("cluster/gate-%d", lvl)
			gate := node{id: barrier, host: "-"}
			for h := range hosts {
				gate.deps = append(gate.deps, fmt.Sprintf("node-%d/step-%02d", h, lvl))
			}
			nodes = append(nodes, gate)
		}
	}
	g := graphOf(b, nodes...)
	w := NewWalker(g, nopRunner{}, Options{})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := w.Walk(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if s := res.Summary(); s.Changed != g.Len() {
			b.Fatalf("Summary %+v", s)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(g.Len()), "ns/step")
}
