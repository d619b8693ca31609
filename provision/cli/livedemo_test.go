package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/viper"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// liveDemoEnv makes the test binary run liveDemo instead of the tests:
// "gated" for the pty test, "timed" to watch the live view by hand:
//
//	go test -c -o /tmp/cli.test ./provision/cli
//	CLUSTERCTL_TEST_LIVE_DEMO=timed /tmp/cli.test
const liveDemoEnv = "CLUSTERCTL_TEST_LIVE_DEMO"

// liveDemo runs apply's walk and report (session.apply) on a synthetic plan
// with no hosts, writing to the real stdout and stderr: on a terminal, the
// live view. Hosts node-01 to node-NN (CLUSTERCTL_TEST_LIVE_HOSTS, default
// 30) each have hostprep/packages then runtime/containerd; cluster-scope
// steps run through node-01; node-27's containerd fails (with 30 hosts).
//
// In "gated" mode every containerd step and cluster/etcd/snapshot wait
// until a line (or EOF) arrives on fd 3, and "running" is written to fd 4
// once all of them are waiting. In "timed" mode steps sleep instead.
func liveDemo(mode string) int {
	hosts := 30
	if n, err := strconv.Atoi(os.Getenv("CLUSTERCTL_TEST_LIVE_HOSTS")); err == nil && n > 0 {
		hosts = n
	}
	demo := &demoRun{gated: mode == "gated", want: int32(hosts + 1), gate: make(chan struct{})}
	demo.clock.now = time.Date(2025, 1, 2, 12, 0, 0, 0, time.UTC)
	if demo.gated {
		go demo.openGateOn(os.NewFile(3, "gate"))
		demo.ready = os.NewFile(4, "ready")
	}
	g := demo.graph(hosts)
	d := &deps{v: viper.New()}
	d.v.Set("parallel", 2*hosts+2)
	d.v.Set("per-host", 1)
	s := &session{graph: g, runner: &hostRunner{}, redactor: host.NewRedactor()}
	if demo.gated {
		s.now = demo.clock.Now
	}
	if err := s.apply(context.Background(), d, os.Stdout, os.Stderr, "text"); err != nil {
		return 1 // the error is node-27's, expected; the screen is what matters
	}
	return 0
}

type demoRun struct {
	gated   bool
	gate    chan struct{}
	ready   *os.File
	waiting atomic.Int32
	want    int32
	once    sync.Once
	clock   demoClock
}

// openGateOn opens the gate when f has a line to read. The clock stands
// still while the gate is closed, so that the live view has nothing new to
// draw; it moves 5s when the gate opens.
func (r *demoRun) openGateOn(f *os.File) {
	bufio.NewReader(f).ReadString('\n')
	r.clock.advance(5 * time.Second)
	close(r.gate)
}

// demoClock is a clock that moves only when told.
type demoClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *demoClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *demoClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (r *demoRun) graph(hosts int) *dag.Graph[step.Step] {
	g := dag.New[step.Step]()
	add := func(id, on string, takesSlot bool, op demoOp, deps ...string) {
		op.run = r
		must(g.Add(id, step.Step{ID: id, Host: on, TakesHostSlot: takesSlot, Op: op}))
		for _, dep := range deps {
			must(g.Connect(dep, id))
		}
	}
	var runtimes []string
	for i := 1; i <= hosts; i++ {
		n := fmt.Sprintf("node-%02d", i)
		add(n+"/hostprep/packages", n, true, demoOp{kind: "hostprep/packages", action: []step.Action{step.ActionNone, step.ActionUpdate}[i%2], sleep: 200 * time.Millisecond})
		op := demoOp{kind: "runtime/containerd", action: step.ActionCreate, gated: true, sleep: time.Duration(1+i%5) * time.Second}
		if i == hosts-3 {
			op.err = "install containerd: exit status 1: \x1b[31mE: Impossible de récupérer le paquet ☃ containerd.io 1.7.27-1 (connexion refusée)\x1b[0m\nretry later"
		}
		add(n+"/runtime/containerd", n, true, op, n+"/hostprep/packages")
		runtimes = append(runtimes, n+"/runtime/containerd")
	}
	first := "node-01"
	add("cluster/etcd/snapshot", first, false, demoOp{kind: "etcd/snapshot", action: step.ActionRead, gated: true, sleep: 3 * time.Second})
	add("cluster/addons/cni", first, true, demoOp{kind: "addons/cni", action: step.ActionCreate, sleep: time.Second}, runtimes...)
	add("cluster/health", first, false, demoOp{kind: "health", action: step.ActionRead, sleep: time.Second}, "cluster/addons/cni", "cluster/etcd/snapshot")
	return g
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// demoOp is a step that checks to action, then waits (for the gate, or
// for sleep) in Apply and fails with err if set.
type demoOp struct {
	run    *demoRun
	kind   string
	action step.Action
	gated  bool
	sleep  time.Duration
	err    string
}

func (o demoOp) Kind() string { return o.kind }

func (o demoOp) Check(context.Context, step.Target) (step.Change, error) {
	return step.Change{Action: o.action}, nil
}

func (o demoOp) Apply(ctx context.Context, _ step.Target) error {
	r := o.run
	switch {
	case o.gated && r.gated:
		if r.waiting.Add(1) == r.want {
			r.once.Do(func() { fmt.Fprintln(r.ready, "running") })
		}
		<-r.gate
	case !r.gated:
		time.Sleep(o.sleep)
	}
	if o.err != "" {
		return errors.New(o.err)
	}
	return nil
}
