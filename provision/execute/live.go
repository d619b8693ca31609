package execute

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/text/width"
)

// LiveOptions tunes a LiveReporter.
type LiveOptions struct {
	ReportOptions
	// Now is the clock for elapsed times; nil means time.Now.
	Now func() time.Time
	// Interval is the time between redraws; <= 0 means 100ms. Redrawing
	// more often only makes terminals flicker.
	Interval time.Duration
	// Total is the number of steps the walk reports on, for the header's
	// "done of total"; 0 leaves the total out.
	Total int
	// ClusterScope is the first part of the IDs of cluster-wide steps
	// (plan.ClusterScope): their line comes right after the header, apart
	// from the host they run on. "" gives them no special place.
	ClusterScope string
	// Width and Height are the terminal's size in columns and rows; <= 0
	// means no limit. Resize changes them.
	Width, Height int
}

// LiveReporter shows a header with the overall progress, then one line per
// host (and one for cluster-wide steps) with its current step, redrawn in
// place. Use it on terminals only: it moves the cursor with ANSI escapes.
// Every line is clipped to the terminal's width and the frame to its
// height, so that moving back over the last frame lands where it began.
//
// Event only records state; drawing happens on a ticker started by Start,
// on Resize, and once more in Finish, so the redraw rate is bounded
// whatever the event rate. The summary of the walk is the caller's to print.
type LiveReporter struct {
	w     io.Writer
	opt   LiveOptions
	start time.Time

	mu    sync.Mutex // guards lines
	lines map[string]*liveLine

	// drawMu serialises drawing (ticker, Resize, Finish) and guards the
	// fields below.
	drawMu        sync.Mutex
	width, height int
	last          []string // the last frame's lines, to skip identical frames
	lastCols      []int    // and their widths, to move back over them
	lastWidth     int
	finished      bool
	err           error

	stop, stopped chan struct{}
}

var _ Reporter = (*LiveReporter)(nil)

// liveLine is the state of one line: a host's steps, or the cluster's.
type liveLine struct {
	running                                   map[string]liveStep
	done, changed, failed, skipped, cancelled int
	lastErr                                   string
}

type liveStep struct {
	phase string
	since time.Time
	host  string
}

// NewLiveReporter returns a LiveReporter writing to w.
func NewLiveReporter(w io.Writer, opt LiveOptions) *LiveReporter {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Interval <= 0 {
		opt.Interval = 100 * time.Millisecond
	}
	return &LiveReporter{w: w, opt: opt, start: opt.Now(), lines: map[string]*liveLine{},
		width: opt.Width, height: opt.Height}
}

// lineOf names the line a step is shown on: the first part of its ID. That
// is its host for a host's steps, and the cluster scope for cluster-wide
// steps, which run through a host but are not that host's work.
func lineOf(e Event) string {
	if i := strings.IndexByte(e.StepID, '/'); i > 0 {
		return e.StepID[:i]
	}
	if e.Host != "" {
		return e.Host
	}
	return e.StepID
}

// Event records e; it does not draw.
func (l *LiveReporter) Event(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := lineOf(e)
	ln := l.lines[name]
	if ln == nil {
		ln = &liveLine{running: map[string]liveStep{}}
		l.lines[name] = ln
	}
	switch e.Type {
	case EventStart:
		ln.running[e.StepID] = liveStep{phase: "checking", since: e.Time, host: e.Host}
	case EventApply:
		if s, ok := ln.running[e.StepID]; ok {
			s.phase = "applying"
			ln.running[e.StepID] = s
		}
	case EventDone:
		delete(ln.running, e.StepID)
		ln.done++
		if e.Status == StatusChanged {
			ln.changed++
		}
	case EventFailed:
		delete(ln.running, e.StepID)
		ln.failed++
		ln.lastErr = l.opt.redact(e.Err)
	case EventSkipped:
		ln.skipped++
	case EventCancelled:
		delete(ln.running, e.StepID)
		ln.cancelled++
	}
}

// Start draws the first frame, then redraws every Interval until Finish.
func (l *LiveReporter) Start() {
	l.redraw()
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

// Resize takes the terminal's new size and redraws at once, so that a
// narrower terminal shows wrapped lines for as short a time as possible.
func (l *LiveReporter) Resize(width, height int) {
	l.drawMu.Lock()
	defer l.drawMu.Unlock()
	l.width, l.height = width, height
	if !l.finished {
		l.draw()
	}
}

// Finish stops redrawing, draws the final state and returns the first
// write error. It draws no summary: the caller prints one, whatever the
// reporter.
func (l *LiveReporter) Finish() error {
	if l.stop != nil {
		close(l.stop)
		<-l.stopped
		l.stop = nil
	}
	l.drawMu.Lock()
	defer l.drawMu.Unlock()
	if !l.finished {
		l.draw()
		l.finished = true
	}
	return l.err
}

func (l *LiveReporter) redraw() {
	l.drawMu.Lock()
	defer l.drawMu.Unlock()
	if !l.finished {
		l.draw()
	}
}

// draw replaces the previous frame with the current one; drawMu is held.
func (l *LiveReporter) draw() {
	if l.err != nil {
		return
	}
	lines, cols := frameLines(l.Snapshot(), l.width, l.height)
	if l.last != nil && l.width == l.lastWidth && slices.Equal(lines, l.last) {
		return
	}
	var b bytes.Buffer
	if up := rowsTaken(l.lastCols, l.width); up > 0 {
		// Up to the first row of the last frame, then clear to the end of
		// the screen.
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", up)
	}
	for _, line := range lines {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	_, l.err = l.w.Write(b.Bytes())
	l.last, l.lastCols, l.lastWidth = lines, cols, l.width
}

// rowsTaken is how many rows lines of these widths take on a terminal of
// this width. Lines were clipped to the width they were drawn at; a
// terminal made narrower since then reflows them (tmux, VTE, iTerm2 and
// Windows Terminal do), so each takes one row per width's worth of
// columns. A terminal that does not reflow (xterm) then has fewer rows to
// go back over, and the new frame clears a few rows above it.
func rowsTaken(cols []int, width int) int {
	n := 0
	for _, c := range cols {
		if width > 0 && c > width {
			n += (c + width - 1) / width
		} else {
			n++
		}
	}
	return n
}

// LiveSnapshot is the state a LiveReporter draws, taken at one instant.
type LiveSnapshot struct {
	Elapsed time.Duration
	// Total is LiveOptions.Total; Done counts steps with an outcome, any
	// outcome, so that Done reaches Total when the walk ends.
	Total, Done                         int
	Running, Failed, Skipped, Cancelled int
	// Cluster is the line of the cluster-wide steps, nil before the first.
	Cluster *HostView
	Hosts   []HostView
}

// HostView is one host's line, or the cluster's.
type HostView struct {
	Name string
	// Step is the longest-running current step, "" when idle; Phase is
	// "checking" or "applying"; Elapsed is how long Step has run; On is the
	// host it runs on when that is not Name (cluster-wide steps).
	Step    string
	Phase   string
	On      string
	Elapsed time.Duration
	// Others counts further steps running on the line (steps without a
	// host slot run alongside the one holding it).
	Others                         int
	Done, Changed, Failed, Skipped int
	LastErr                        string // already redacted
}

// Snapshot copies the current state, hosts sorted by name.
func (l *LiveReporter) Snapshot() LiveSnapshot {
	now := l.opt.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.lines))
	for name := range l.lines {
		names = append(names, name)
	}
	slices.Sort(names)
	snap := LiveSnapshot{Elapsed: now.Sub(l.start), Total: l.opt.Total, Hosts: make([]HostView, 0, len(names))}
	for _, name := range names {
		ln := l.lines[name]
		snap.Done += ln.done + ln.failed + ln.skipped + ln.cancelled
		snap.Running += len(ln.running)
		snap.Failed += ln.failed
		snap.Skipped += ln.skipped
		snap.Cancelled += ln.cancelled
		v := ln.view(name, now)
		if name == l.opt.ClusterScope {
			snap.Cluster = &v
			continue
		}
		snap.Hosts = append(snap.Hosts, v)
	}
	return snap
}

func (ln *liveLine) view(name string, now time.Time) HostView {
	v := HostView{Name: name, Done: ln.done, Changed: ln.changed, Failed: ln.failed, Skipped: ln.skipped, LastErr: ln.lastErr}
	var oldest string
	for id, s := range ln.running {
		if oldest == "" || s.since.Before(ln.running[oldest].since) || s.since.Equal(ln.running[oldest].since) && id < oldest {
			oldest = id
		}
	}
	if oldest == "" {
		return v
	}
	s := ln.running[oldest]
	v.Step = strings.TrimPrefix(oldest, name+"/")
	v.Phase = s.phase
	if s.host != name {
		v.On = s.host
	}
	v.Elapsed = now.Sub(s.since)
	v.Others = len(ln.running) - 1
	return v
}

// RenderLive writes the frame of snap for a terminal of width columns and
// height rows (<= 0: no limit):
//
//	[1m5s] 12/45 done, 3 running, 1 failed
//	cluster  applying addons/cni on node-1 (3.2s)  [2 done, 1 changed]
//	node-1   applying hostprep/sysctl (3.2s) +1  [4 done, 2 changed]
//	node-2   idle  [7 done, 0 changed, 1 failed: exit 1]
func RenderLive(w io.Writer, snap LiveSnapshot, width, height int) error {
	lines, _ := frameLines(snap, width, height)
	_, err := io.WriteString(w, strings.Join(lines, "\n")+"\n")
	return err
}

// frameLines lays out the frame: the header, the cluster's line, then the
// hosts' lines, all clipped to width. With a height, the frame keeps to
// height-1 rows (the cursor waits on the row below it): hosts that do not
// fit are counted on a last line, failed and busy hosts shown first.
func frameLines(snap LiveSnapshot, width, height int) (lines []string, cols []int) {
	out := []string{header(snap)}
	var named []HostView
	if snap.Cluster != nil {
		named = append(named, *snap.Cluster)
	}
	room := -1
	if height > 0 {
		room = max(0, height-1-len(out)-len(named))
	}
	shown, more := fitHosts(snap.Hosts, room)
	named = append(named, shown...)
	pad := 0
	for _, v := range named {
		pad = max(pad, len([]rune(v.Name)))
	}
	for _, v := range named {
		out = append(out, hostLine(v, pad))
	}
	if more != "" {
		out = append(out, more)
	}
	if height > 0 && len(out) > height-1 {
		out = out[:max(1, height-1)]
	}
	cols = make([]int, len(out))
	for i, s := range out {
		out[i], cols[i] = clip(s, width)
	}
	return out, cols
}

func header(s LiveSnapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] ", s.Elapsed.Truncate(time.Second))
	if s.Total > 0 {
		fmt.Fprintf(&b, "%d/%d done", s.Done, s.Total)
	} else {
		fmt.Fprintf(&b, "%d done", s.Done)
	}
	fmt.Fprintf(&b, ", %d running, %d failed", s.Running, s.Failed)
	if s.Skipped > 0 {
		fmt.Fprintf(&b, ", %d skipped", s.Skipped)
	}
	if s.Cancelled > 0 {
		fmt.Fprintf(&b, ", %d cancelled", s.Cancelled)
	}
	return b.String()
}

// fitHosts keeps the hosts that fit in room lines (< 0: all), in name
// order. When some do not fit, the last line counts them instead, and
// hosts with failures, then busy hosts, are the ones kept.
func fitHosts(hosts []HostView, room int) (shown []HostView, more string) {
	if room < 0 || len(hosts) <= room {
		return hosts, ""
	}
	if room == 0 {
		return nil, ""
	}
	rank := func(v HostView) int {
		switch {
		case v.Failed > 0:
			return 0
		case v.Step != "":
			return 1
		}
		return 2
	}
	order := make([]int, len(hosts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return rank(hosts[a]) - rank(hosts[b]) })
	keep, hidden := order[:room-1], order[room-1:]
	slices.Sort(keep)
	for _, i := range keep {
		shown = append(shown, hosts[i])
	}
	var busy, failed int
	for _, i := range hidden {
		if hosts[i].Step != "" {
			busy++
		}
		if hosts[i].Failed > 0 {
			failed++
		}
	}
	more = fmt.Sprintf("+%d more hosts", len(hidden))
	var notes []string
	if busy > 0 {
		notes = append(notes, fmt.Sprintf("%d running", busy))
	}
	if failed > 0 {
		notes = append(notes, fmt.Sprintf("%d failed", failed))
	}
	if len(notes) > 0 {
		more += " (" + strings.Join(notes, ", ") + ")"
	}
	return shown, more
}

func hostLine(h HostView, pad int) string {
	var b strings.Builder
	b.WriteString(h.Name)
	b.WriteString(strings.Repeat(" ", max(0, pad-len([]rune(h.Name)))+2))
	if h.Step == "" {
		b.WriteString("idle")
	} else {
		fmt.Fprintf(&b, "%s %s", h.Phase, h.Step)
		if h.On != "" {
			fmt.Fprintf(&b, " on %s", h.On)
		}
		fmt.Fprintf(&b, " (%s)", seconds(h.Elapsed))
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
	b.WriteString("]")
	return b.String()
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// clip makes s safe and short enough for one terminal row, and returns it
// with the columns it takes. Control characters (escape sequences in a
// remote command's stderr) become '?' and invalid UTF-8 becomes U+FFFD, so
// the terminal draws exactly what is counted; past width columns (<= 0: no
// limit) the text is cut at a rune boundary and ends with an ellipsis.
func clip(s string, width int) (string, int) {
	var b strings.Builder
	cols := 0
	cut, cutCols := -1, 0 // where the text stops if it must be cut
	for _, r := range s {
		switch {
		case r == '\t':
			r = ' '
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			r = '?'
		}
		w := runeWidth(r)
		if width > 0 && cut < 0 && cols+w > width-1 {
			cut, cutCols = b.Len(), cols
		}
		if width > 0 && cols+w > width {
			out := b.String()[:cut] + "…"
			return out, cutCols + 1
		}
		b.WriteRune(r)
		cols += w
	}
	return b.String(), cols
}

// runeWidth is the columns a terminal gives r: none for combining marks
// and format characters, two for East Asian wide and fullwidth runes.
func runeWidth(r rune) int {
	if unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf) {
		return 0
	}
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}
