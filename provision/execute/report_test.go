package execute

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/step"
)

const secret = "K10abc::server:s3cr3t"

func redact(s string) string { return strings.ReplaceAll(s, secret, "[REDACTED]") }

var t0 = time.Date(2025, 1, 2, 12, 0, 0, 0, time.UTC)

// sampleEvents covers every event type and outcome.
var sampleEvents = []Event{
	{Time: t0, Type: EventStart, StepID: "node-1/hostprep/sysctl", Host: "node-1"},
	{Time: t0.Add(100 * time.Millisecond), Type: EventCheck, StepID: "node-1/hostprep/sysctl", Host: "node-1", Action: step.ActionUpdate},
	{Time: t0.Add(100 * time.Millisecond), Type: EventApply, StepID: "node-1/hostprep/sysctl", Host: "node-1", Action: step.ActionUpdate},
	{Time: t0.Add(1 * time.Second), Type: EventDone, StepID: "node-1/hostprep/sysctl", Host: "node-1", Action: step.ActionUpdate, Status: StatusChanged, Duration: 400 * time.Millisecond},
	{Time: t0.Add(1 * time.Second), Type: EventDone, StepID: "node-1/hostprep/swap", Host: "node-1", Action: step.ActionNone, Status: StatusUnchanged, Duration: 50 * time.Millisecond},
	{Time: t0.Add(2 * time.Second), Type: EventDone, StepID: "cluster/health", Action: step.ActionRead, Status: StatusRead, Duration: 1250 * time.Millisecond},
	{Time: t0.Add(2 * time.Second), Type: EventDone, StepID: "node-2/runtime/containerd", Host: "node-2", Action: step.ActionCreate, Status: StatusPlanned, Duration: 10 * time.Millisecond},
	{Time: t0.Add(3 * time.Second), Type: EventFailed, StepID: "node-2/join/agent", Host: "node-2", Action: step.ActionCreate, Status: StatusFailed,
		Err: "node-2: command exited 1: k3s agent --token " + secret + ":\nconnection refused", Duration: 2 * time.Second},
	{Time: t0.Add(3 * time.Second), Type: EventSkipped, StepID: "node-2/health/ready", Host: "node-2", Status: StatusSkipped, Cause: "node-2/join/agent"},
	{Time: t0.Add(4 * time.Second), Type: EventCancelled, StepID: "node-3/join/agent", Host: "node-3", Status: StatusCancelled},
	{Time: t0.Add(4 * time.Second), Type: EventCancelled, StepID: "node-3/runtime/containerd", Host: "node-3", Action: step.ActionCreate, Status: StatusCancelled,
		Err: "context canceled", Duration: 1500 * time.Millisecond},
}

func TestLineReporter(t *testing.T) {
	var b strings.Builder
	r := NewLineReporter(&b, ReportOptions{Redact: redact})
	for _, e := range sampleEvents {
		r.Event(e)
	}
	want := `12:00:00 node-1/hostprep/sysctl  started
12:00:00 node-1/hostprep/sysctl  checked: update
12:00:00 node-1/hostprep/sysctl  applying: update
12:00:01 node-1/hostprep/sysctl  applied (0.4s)
12:00:01 node-1/hostprep/swap  unchanged (0.1s)
12:00:02 cluster/health  read (1.2s)
12:00:02 node-2/runtime/containerd  planned: create (0.0s)
12:00:03 node-2/join/agent  failed (2.0s): node-2: command exited 1: k3s agent --token [REDACTED]:; connection refused
12:00:03 node-2/health/ready  skipped: node-2/join/agent failed
12:00:04 node-3/join/agent  cancelled
12:00:04 node-3/runtime/containerd  cancelled (1.5s)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	if r.Err() != nil {
		t.Error(r.Err())
	}
}

func TestJSONReporter(t *testing.T) {
	var b strings.Builder
	r := NewJSONReporter(&b, ReportOptions{Redact: redact})
	for _, e := range sampleEvents[3:9] {
		r.Event(e)
	}
	want := `{"time":"2025-01-02T12:00:01Z","type":"done","step":"node-1/hostprep/sysctl","host":"node-1","action":"update","status":"changed","durationMs":400}
{"time":"2025-01-02T12:00:01Z","type":"done","step":"node-1/hostprep/swap","host":"node-1","action":"none","status":"unchanged","durationMs":50}
{"time":"2025-01-02T12:00:02Z","type":"done","step":"cluster/health","action":"read","status":"read","durationMs":1250}
{"time":"2025-01-02T12:00:02Z","type":"done","step":"node-2/runtime/containerd","host":"node-2","action":"create","status":"planned","durationMs":10}
{"time":"2025-01-02T12:00:03Z","type":"failed","step":"node-2/join/agent","host":"node-2","action":"create","status":"failed","error":"node-2: command exited 1: k3s agent --token [REDACTED]:\nconnection refused","durationMs":2000}
{"time":"2025-01-02T12:00:03Z","type":"skipped","step":"node-2/health/ready","host":"node-2","status":"skipped","cause":"node-2/join/agent"}
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestReporterWriteError(t *testing.T) {
	errFull := errors.New("disk full")
	tests := []struct {
		name string
		rep  interface {
			Reporter
			Err() error
		}
	}{
		{"line", NewLineReporter(failWriter{errFull}, ReportOptions{})},
		{"json", NewJSONReporter(failWriter{errFull}, ReportOptions{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rep.Event(sampleEvents[0])
			tt.rep.Event(sampleEvents[1])
			if !errors.Is(tt.rep.Err(), errFull) {
				t.Errorf("Err() = %v", tt.rep.Err())
			}
		})
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

// TestLiveTicker checks that the ticker redraws on its own and stops at
// Finish.
func TestLiveTicker(t *testing.T) {
	var out syncBuilder
	l := NewLiveReporter(&out, LiveOptions{Interval: time.Millisecond})
	l.Start()
	l.Event(Event{Time: time.Now(), Type: EventStart, StepID: "n1/a", Host: "n1"})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "checking a") {
		if time.Now().After(deadline) {
			t.Fatalf("ticker never drew the running step:\n%q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	n := len(out.String())
	time.Sleep(20 * time.Millisecond)
	if len(out.String()) != n {
		t.Error("LiveReporter drew after Finish")
	}
}

// syncBuilder is a strings.Builder safe for the ticker goroutine and the
// test to share.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
