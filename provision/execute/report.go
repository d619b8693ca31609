package execute

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// ReportOptions are shared by the reporters.
type ReportOptions struct {
	// Redact rewrites error text before it is shown, removing secrets
	// (join tokens, passwords). Nil shows errors as they are.
	Redact func(string) string
}

func (o ReportOptions) redact(s string) string {
	if o.Redact == nil || s == "" {
		return s
	}
	return o.Redact(s)
}

// LineReporter writes one human line per event, for logs and non-terminal
// stderr:
//
//	12:00:01 node-1/hostprep/sysctl  applied (0.4s)
type LineReporter struct {
	w   io.Writer
	opt ReportOptions
	buf []byte
	err error
}

var _ Reporter = (*LineReporter)(nil)

// NewLineReporter returns a LineReporter writing to w.
func NewLineReporter(w io.Writer, opt ReportOptions) *LineReporter {
	return &LineReporter{w: w, opt: opt}
}

// Event writes e as one line.
func (r *LineReporter) Event(e Event) {
	if r.err != nil {
		return
	}
	r.buf = e.Time.AppendFormat(r.buf[:0], "15:04:05")
	r.buf = append(r.buf, ' ')
	r.buf = append(r.buf, e.StepID...)
	r.buf = append(r.buf, "  "...)
	r.buf = append(r.buf, r.describe(e)...)
	r.buf = append(r.buf, '\n')
	_, r.err = r.w.Write(r.buf)
}

// Err returns the first write error; after one, events are dropped.
func (r *LineReporter) Err() error { return r.err }

func (r *LineReporter) describe(e Event) string {
	switch e.Type {
	case EventStart:
		return "started"
	case EventCheck:
		return "checked: " + string(e.Action)
	case EventApply:
		return "applying: " + string(e.Action)
	case EventDone:
		word := string(e.Status)
		switch e.Status {
		case StatusChanged:
			word = "applied"
		case StatusPlanned:
			word = "planned: " + string(e.Action)
		}
		return fmt.Sprintf("%s (%s)", word, seconds(e.Duration))
	case EventFailed:
		return fmt.Sprintf("failed (%s): %s", seconds(e.Duration), oneLine(r.opt.redact(e.Err)))
	case EventSkipped:
		return fmt.Sprintf("skipped: %s failed", e.Cause)
	case EventCancelled:
		if e.Duration > 0 {
			return fmt.Sprintf("cancelled (%s)", seconds(e.Duration))
		}
		return "cancelled"
	}
	return e.Type
}

// oneLine keeps a multi-line error on its event's line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}

// JSONReporter writes one JSON object per event and line. Field names are
// part of the CLI's machine interface and must not change:
// time, type, step, host, action, status, error, cause, durationMs.
type JSONReporter struct {
	enc *json.Encoder
	opt ReportOptions
	err error
}

var _ Reporter = (*JSONReporter)(nil)

// NewJSONReporter returns a JSONReporter writing to w.
func NewJSONReporter(w io.Writer, opt ReportOptions) *JSONReporter {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &JSONReporter{enc: enc, opt: opt}
}

type jsonEvent struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	Step       string    `json:"step"`
	Host       string    `json:"host,omitempty"`
	Action     string    `json:"action,omitempty"`
	Status     string    `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	Cause      string    `json:"cause,omitempty"`
	DurationMS float64   `json:"durationMs,omitempty"`
}

// Event writes e as one JSON line.
func (r *JSONReporter) Event(e Event) {
	if r.err != nil {
		return
	}
	r.err = r.enc.Encode(jsonEvent{
		Time:       e.Time,
		Type:       e.Type,
		Step:       e.StepID,
		Host:       e.Host,
		Action:     string(e.Action),
		Status:     string(e.Status),
		Error:      r.opt.redact(e.Err),
		Cause:      e.Cause,
		DurationMS: float64(e.Duration.Microseconds()) / 1000,
	})
}

// Err returns the first write error; after one, events are dropped.
func (r *JSONReporter) Err() error { return r.err }

// LiveOptions tunes a LiveReporter.
type LiveOptions struct {
	ReportOptions
	// Now is the clock for elapsed times; nil means time.Now.
	Now func() time.Time
	// Interval is the time between redraws; <= 0 means 100ms. Redrawing
	// more often only makes terminals flicker.
	Interval time.Duration
}

// LiveReporter shows one line per host with its current step and elapsed
// time, redrawn in place, and a summary at the end. Use it on terminals only:
// it moves the cursor with ANSI escapes.
//
// Event only records state; drawing happens on a ticker started by Start
// and once more in Finish, so the redraw rate is bounded whatever the event
// rate.
type LiveReporter struct {
	w   io.Writer
	opt LiveOptions

	mu    sync.Mutex
	hosts map[string]*liveHost
	lines int // lines drawn by the last frame, to move back over
	err   error

	stop, stopped chan struct{}
}

var _ Reporter = (*LiveReporter)(nil)

type liveHost struct {
	running map[string]liveStep
	done    int
	changed int
	failed  int
	skipped int
	lastErr string
}

type liveStep struct {
	phase string
	since time.Time
}

// NewLiveReporter returns a LiveReporter writing to w.
func NewLiveReporter(w io.Writer, opt LiveOptions) *LiveReporter {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Interval <= 0 {
		opt.Interval = 100 * time.Millisecond
	}
	return &LiveReporter{w: w, opt: opt, hosts: map[string]*liveHost{}}
}

// Event records e; it does not draw.
func (l *LiveReporter) Event(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hosts[e.Host]
	if h == nil {
		h = &liveHost{running: map[string]liveStep{}}
		l.hosts[e.Host] = h
	}
	switch e.Type {
	case EventStart:
		h.running[e.StepID] = liveStep{phase: "checking", since: e.Time}
	case EventApply:
		if s, ok := h.running[e.StepID]; ok {
			s.phase = "applying"
			h.running[e.StepID] = s
		}
	case EventDone:
		delete(h.running, e.StepID)
		h.done++
		if e.Status == StatusChanged {
			h.changed++
		}
	case EventFailed:
		delete(h.running, e.StepID)
		h.failed++
		h.lastErr = l.opt.redact(e.Err)
	case EventSkipped:
		h.skipped++
	case EventCancelled:
		delete(h.running, e.StepID)
	}
}

// Start redraws every Interval until Finish.
func (l *LiveReporter) Start() {
	l.stop, l.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.stopped)
		t := time.NewTicker(l.opt.Interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.redraw()
			case <-l.stop:
				return
			}
		}
	}()
}

// Finish stops redrawing, draws the final state and the summary of res
// (which may be nil), and returns the first write error.
func (l *LiveReporter) Finish(res *Result) error {
	if l.stop != nil {
		close(l.stop)
		<-l.stopped
		l.stop = nil
	}
	l.redraw()
	l.mu.Lock()
	defer l.mu.Unlock()
	if res != nil && l.err == nil {
		_, l.err = fmt.Fprintln(l.w, res.Summary())
	}
	return l.err
}

// redraw replaces the previous frame with the current one.
func (l *LiveReporter) redraw() {
	snap := l.Snapshot()
	var b bytes.Buffer
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	if l.lines > 0 {
		// Up to the first line of the last frame, then clear to the end
		// of the screen.
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", l.lines)
	}
	RenderLive(&b, snap)
	l.lines = snap.lineCount()
	_, l.err = l.w.Write(b.Bytes())
}

// LiveSnapshot is the state a LiveReporter draws, taken at one instant.
type LiveSnapshot struct {
	Hosts []HostView
}

func (s LiveSnapshot) lineCount() int { return len(s.Hosts) }

// HostView is one host's line.
type HostView struct {
	Name string // "cluster" for steps without a host
	// Step is the longest-running current step, "" when idle; Phase is
	// "checking" or "applying"; Elapsed is how long Step has run.
	Step    string
	Phase   string
	Elapsed time.Duration
	// Others counts further steps running on the host (non-mutating steps
	// run alongside the mutating one).
	Others                         int
	Done, Changed, Failed, Skipped int
	LastErr                        string // already redacted
}

// Snapshot copies the current state, hosts sorted by name.
func (l *LiveReporter) Snapshot() LiveSnapshot {
	now := l.opt.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.hosts))
	for name := range l.hosts {
		names = append(names, name)
	}
	slices.Sort(names)
	snap := LiveSnapshot{Hosts: make([]HostView, 0, len(names))}
	for _, name := range names {
		h := l.hosts[name]
		v := HostView{Name: name, Done: h.done, Changed: h.changed, Failed: h.failed, Skipped: h.skipped, LastErr: h.lastErr}
		if name == "" {
			v.Name = "cluster"
		}
		var oldest string
		for id, s := range h.running {
			if oldest == "" || s.since.Before(h.running[oldest].since) || s.since.Equal(h.running[oldest].since) && id < oldest {
				oldest = id
			}
		}
		if oldest != "" {
			s := h.running[oldest]
			v.Step = strings.TrimPrefix(oldest, name+"/")
			v.Phase = s.phase
			v.Elapsed = now.Sub(s.since)
			v.Others = len(h.running) - 1
		}
		snap.Hosts = append(snap.Hosts, v)
	}
	return snap
}

// RenderLive writes one line per host of snap:
//
//	node-1  applying hostprep/sysctl (3.2s) +1  [4 done, 2 changed]
//	node-2  idle  [7 done, 0 changed, 1 failed: exit 1]
func RenderLive(w io.Writer, snap LiveSnapshot) {
	width := 0
	for _, h := range snap.Hosts {
		width = max(width, len(h.Name))
	}
	for _, h := range snap.Hosts {
		var b strings.Builder
		fmt.Fprintf(&b, "%-*s  ", width, h.Name)
		if h.Step == "" {
			b.WriteString("idle")
		} else {
			fmt.Fprintf(&b, "%s %s (%s)", h.Phase, h.Step, seconds(h.Elapsed))
			if h.Others > 0 {
				fmt.Fprintf(&b, " +%d", h.Others)
			}
		}
		fmt.Fprintf(&b, "  [%d done, %d changed", h.Done, h.Changed)
		if h.Skipped > 0 {
			fmt.Fprintf(&b, ", %d skipped", h.Skipped)
		}
		if h.Failed > 0 {
			fmt.Fprintf(&b, ", %d failed: %s", h.Failed, truncate(oneLine(h.LastErr), 60))
		}
		b.WriteString("]\n")
		io.WriteString(w, b.String())
	}
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
