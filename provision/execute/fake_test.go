package execute

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/step"
)

// node describes one step of a test graph. The step's host is the ID's
// first path element unless host is set; "-" means no host.
type node struct {
	id   string
	slot bool
	deps []string
	host string
}

func graphOf(t testing.TB, nodes ...node) *dag.Graph[step.Step] {
	t.Helper()
	g := dag.New[step.Step]()
	for _, n := range nodes {
		h := n.host
		if h == "" {
			h, _, _ = strings.Cut(n.id, "/")
		}
		if h == "-" {
			h = ""
		}
		if err := g.Add(n.id, step.Step{ID: n.id, Host: h, TakesHostSlot: n.slot}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		for _, d := range n.deps {
			if err := g.Connect(d, n.id); err != nil {
				t.Fatal(err)
			}
		}
	}
	return g
}

// behaviour is what the fake runner does for one step.
type behaviour struct {
	action   step.Action // what Check reports; "" means create
	zero     bool        // Check returns the zero Change
	checkErr error
	applyErr error
	panicIn  string        // "check" or "apply": panic with "boom"
	delay    time.Duration // real sleep in Apply, for overlap only
	advance  time.Duration // fake clock advance in Apply
	block    bool          // Apply waits for ctx and returns its error
	finish   bool          // with block: Apply returns nil once ctx ends
	barrier  *barrier      // Apply waits for the barrier
	started  chan struct{} // closed when Apply starts
}

// barrier releases its waiters once n of them have arrived. Waiting gives
// up after a while so a broken limit fails the test instead of hanging it.
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	all     chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) error {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return errors.New("barrier: peers never arrived (steps did not overlap)")
	}
}

// fakeRunner runs steps in process and records what happened.
type fakeRunner struct {
	b     map[string]behaviour
	clock *fakeClock

	mu          sync.Mutex
	seq         int
	checks      map[string]int
	applies     map[string]int
	firstCall   map[string]int // sequence number of the step's first call
	lastReturn  map[string]int // sequence number of the step's last return
	running     int
	maxRunning  int
	hostSlot    map[string]int
	maxHostSlot map[string]int
}

var _ Runner = (*fakeRunner)(nil)

func newFakeRunner(b map[string]behaviour) *fakeRunner {
	return &fakeRunner{
		b:           b,
		checks:      map[string]int{},
		applies:     map[string]int{},
		firstCall:   map[string]int{},
		lastReturn:  map[string]int{},
		hostSlot:    map[string]int{},
		maxHostSlot: map[string]int{},
	}
}

func (f *fakeRunner) enter(s step.Step, apply bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	if apply {
		f.applies[s.ID]++
	} else {
		f.checks[s.ID]++
		f.firstCall[s.ID] = f.seq
	}
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	if s.TakesHostSlot {
		f.hostSlot[s.Host]++
		f.maxHostSlot[s.Host] = max(f.maxHostSlot[s.Host], f.hostSlot[s.Host])
	}
}

func (f *fakeRunner) leave(s step.Step) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.lastReturn[s.ID] = f.seq
	f.running--
	if s.TakesHostSlot {
		f.hostSlot[s.Host]--
	}
}

func (f *fakeRunner) Check(ctx context.Context, s step.Step) (step.Change, error) {
	f.enter(s, false)
	defer f.leave(s)
	b := f.b[s.ID]
	if b.panicIn == "check" {
		panic("boom")
	}
	if b.checkErr != nil || b.zero {
		return step.Change{}, b.checkErr
	}
	a := b.action
	if a == "" {
		a = step.ActionCreate
	}
	return step.Change{Action: a}, nil
}

func (f *fakeRunner) Apply(ctx context.Context, s step.Step) error {
	f.enter(s, true)
	defer f.leave(s)
	b := f.b[s.ID]
	if b.started != nil {
		close(b.started)
	}
	if b.panicIn == "apply" {
		var m map[string]int
		m["x"]++ //nolint:staticcheck // deliberate: a runtime error panic, as a buggy runner would raise
	}
	if b.advance > 0 {
		f.clock.Advance(b.advance)
	}
	if b.delay > 0 {
		time.Sleep(b.delay)
	}
	if b.barrier != nil {
		if err := b.barrier.wait(ctx); err != nil {
			return err
		}
	}
	if b.block {
		<-ctx.Done()
		if b.finish {
			return nil
		}
		return fmt.Errorf("wait for rollout: %w", ctx.Err())
	}
	return b.applyErr
}

// assertOrder checks that no step was checked before all its dependencies
// had returned for the last time.
func (f *fakeRunner) assertOrder(t *testing.T, g *dag.Graph[step.Step]) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range g.IDs() {
		first, ok := f.firstCall[id]
		if !ok {
			continue
		}
		for _, d := range g.Deps(id) {
			if f.lastReturn[d] == 0 || f.lastReturn[d] > first {
				t.Errorf("%s started before its dependency %s finished", id, d)
			}
		}
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 2, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder is a Reporter that keeps events and fails the test if it is ever
// called concurrently.
type recorder struct {
	t        *testing.T
	inFlight sync.Mutex
	events   []Event
}

func (r *recorder) Event(e Event) {
	if !r.inFlight.TryLock() {
		r.t.Error("Reporter.Event called concurrently")
		return
	}
	defer r.inFlight.Unlock()
	time.Sleep(10 * time.Microsecond) // widen the window for overlap
	r.events = append(r.events, e)
}
