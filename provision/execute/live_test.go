package execute

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func TestLiveRender(t *testing.T) {
	clock := newFakeClock() // starts at t0
	l := NewLiveReporter(&strings.Builder{}, LiveOptions{ReportOptions: ReportOptions{Redact: redact}, Now: clock.Now, Total: 12, ClusterScope: "cluster"})
	for _, e := range sampleEvents {
		l.Event(e)
	}
	// node-1 is busy with two steps; the older one is shown.
	l.Event(Event{Time: t0.Add(2 * time.Second), Type: EventStart, StepID: "node-1/kube/kubelet", Host: "node-1"})
	l.Event(Event{Time: t0.Add(3 * time.Second), Type: EventApply, StepID: "node-1/kube/kubelet", Host: "node-1"})
	l.Event(Event{Time: t0.Add(4 * time.Second), Type: EventStart, StepID: "node-1/health/probe", Host: "node-1"})
	// A cluster-scope step runs through node-1 but is the cluster's work.
	l.Event(Event{Time: t0.Add(4 * time.Second), Type: EventStart, StepID: "cluster/addons/cni", Host: "node-1"})
	l.Event(Event{Time: t0.Add(4 * time.Second), Type: EventApply, StepID: "cluster/addons/cni", Host: "node-1"})
	clock.Advance(65*time.Second + 300*time.Millisecond)

	var b strings.Builder
	if err := RenderLive(&b, l.Snapshot(), 0, 0); err != nil {
		t.Fatal(err)
	}
	want := `[1m5s] 8/12 done, 3 running, 1 failed, 1 skipped, 2 cancelled
cluster  applying addons/cni on node-1 (61.3s)  [1 done, 0 changed]
node-1   applying kube/kubelet (63.3s) +1  [2 done, 1 changed]
node-2   idle  [1 done, 0 changed, 1 skipped, 1 failed: node-2: command exited 1: k3s agent --token [REDACTED]:; co…]
node-3   idle  [0 done, 0 changed]
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestLiveHeaderWithoutTotal: with no total, the header counts what is done.
func TestLiveHeaderWithoutTotal(t *testing.T) {
	l := NewLiveReporter(&strings.Builder{}, LiveOptions{Now: newFakeClock().Now})
	l.Event(Event{Time: t0, Type: EventStart, StepID: "a/x", Host: "a"})
	l.Event(Event{Time: t0, Type: EventDone, StepID: "a/x", Host: "a", Status: StatusUnchanged})
	if got, want := header(l.Snapshot()), "[0s] 1 done, 0 running, 0 failed"; got != want {
		t.Errorf("header %q, want %q", got, want)
	}
}

// nastyReporter has more hosts than 24 rows, a long cluster-scope step, and
// an error with escape sequences, wide and combining runes, a newline and
// invalid UTF-8.
func nastyReporter(width, height int) (*LiveReporter, *strings.Builder) {
	var out strings.Builder
	l := NewLiveReporter(&out, LiveOptions{Now: newFakeClock().Now, Total: 100, ClusterScope: "cluster", Width: width, Height: height})
	for i := 1; i <= 30; i++ {
		h := fmt.Sprintf("worker-%02d", i)
		l.Event(Event{Time: t0, Type: EventStart, StepID: h + "/runtime/containerd", Host: h})
		l.Event(Event{Time: t0, Type: EventApply, StepID: h + "/runtime/containerd", Host: h})
	}
	l.Event(Event{Time: t0, Type: EventStart, StepID: "cluster/manifest/a-rather-long-manifest-name-漢字-for-the-ingress-controller", Host: "worker-01"})
	l.Event(Event{Time: t0, Type: EventFailed, StepID: "worker-07/runtime/containerd", Host: "worker-07",
		Err: "exit 100: \x1b[31mE: cafe\u0301 漢字漢字漢字漢字漢字漢字漢字漢字漢字漢字\x1b[0m\nbad byte \xff here"})
	return l, &out
}

// TestLiveLinesFitWidth draws through the real path at several widths and
// checks every emitted line: valid UTF-8, no control characters left, and
// no wider than the terminal.
func TestLiveLinesFitWidth(t *testing.T) {
	escape := regexp.MustCompile(`\x1b\[\d+A\x1b\[J`)
	for _, width := range []int{1, 20, 40, 80} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			l, out := nastyReporter(width, 24)
			l.redraw()
			l.Event(Event{Time: t0, Type: EventDone, StepID: "worker-02/runtime/containerd", Host: "worker-02", Status: StatusChanged})
			l.redraw()
			// Two frames, unless clipping made them the same (width 1).
			text := escape.ReplaceAllString(out.String(), "")
			lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
			if n := len(lines); n != 2*23 && !(width == 1 && n == 23) {
				t.Errorf("%d lines, want 2 frames of 23 (24 rows, cursor below)", n)
			}
			for _, line := range lines {
				if !utf8.ValidString(line) {
					t.Errorf("invalid UTF-8: %q", line)
				}
				if strings.IndexFunc(line, unicode.IsControl) >= 0 {
					t.Errorf("control character: %q", line)
				}
				if w := displayWidth(line); w > width {
					t.Errorf("%d columns, more than %d: %q", w, width, line)
				}
			}
			lines = lines[len(lines)-23:] // the second frame
			if width == 80 {
				if want := "[0s] 2/100 done, 29 running, 1 failed"; lines[0] != want {
					t.Errorf("header %q, want %q", lines[0], want)
				}
				if want := "cluster    checking manifest/a-rather-long-manifest-name-漢字-for-the-ingress-c…"; lines[1] != want {
					t.Errorf("cluster line\n%q, want\n%q", lines[1], want)
				}
				// The failed host is kept, shown in name order; a wide rune
				// that would end in the last column gives way to the ellipsis.
				if want := "worker-07  idle  [0 done, 0 changed, 1 failed: exit 100: ?[31mE: cafe\u0301 漢字漢字…"; lines[7] != want {
					t.Errorf("failed host's line\n%q, want\n%q", lines[7], want)
				}
				if want := "+10 more hosts (9 running)"; lines[22] != want {
					t.Errorf("last line %q, want %q", lines[22], want)
				}
			}
		})
	}
}

// displayWidth counts columns independently of the code under test: Han
// runes take two, combining marks none.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Han, r):
			n += 2
		case unicode.Is(unicode.Mn, r):
		default:
			n++
		}
	}
	return n
}

func TestClip(t *testing.T) {
	tests := []struct {
		in    string
		width int
		want  string
		cols  int
	}{
		{"hello", 0, "hello", 5},
		{"hello", 5, "hello", 5},
		{"hello!", 5, "hell…", 5},
		{"abc", 1, "…", 1},
		{"a", 1, "a", 1},
		{"漢字漢字", 8, "漢字漢字", 8},
		{"漢字漢字", 7, "漢字漢…", 7},
		{"漢字漢字", 6, "漢字…", 5}, // a wide rune does not fit the last column before the ellipsis
		{"cafe\u0301 au lait", 5, "cafe\u0301…", 5},
		{"\x1b[31mred\x1b[0m", 0, "?[31mred?[0m", 12},
		{"a\tb\nc\u009bd", 0, "a b?c?d", 7},
		{"ok\xffok", 0, "ok\uFFFDok", 5},
		{"ok\xffok", 3, "ok…", 3},
	}
	for _, tt := range tests {
		got, cols := clip(tt.in, tt.width)
		if got != tt.want || cols != tt.cols {
			t.Errorf("clip(%q, %d) = %q, %d; want %q, %d", tt.in, tt.width, got, cols, tt.want, tt.cols)
		}
	}
}

// TestLiveFitsHeight: with more hosts than rows, failed and busy hosts are
// kept and the rest counted on the last line.
func TestLiveFitsHeight(t *testing.T) {
	l := NewLiveReporter(&strings.Builder{}, LiveOptions{Now: newFakeClock().Now, Total: 62, ClusterScope: "cluster"})
	for i := 1; i <= 30; i++ {
		h := fmt.Sprintf("w%02d", i)
		l.Event(Event{Time: t0, Type: EventDone, StepID: h + "/hostprep/packages", Host: h, Status: StatusUnchanged})
		switch {
		case i == 25:
			l.Event(Event{Time: t0, Type: EventFailed, StepID: h + "/runtime/containerd", Host: h, Err: "exit 1"})
		case i >= 27:
			l.Event(Event{Time: t0, Type: EventStart, StepID: h + "/runtime/containerd", Host: h})
		}
	}
	l.Event(Event{Time: t0, Type: EventDone, StepID: "cluster/etcd/snapshot", Host: "w01", Status: StatusRead})
	var b strings.Builder
	if err := RenderLive(&b, l.Snapshot(), 80, 8); err != nil {
		t.Fatal(err)
	}
	want := `[0s] 32/62 done, 4 running, 1 failed
cluster  idle  [1 done, 0 changed]
w25      idle  [1 done, 0 changed, 1 failed: exit 1]
w27      checking runtime/containerd (0.0s)  [1 done, 0 changed]
w28      checking runtime/containerd (0.0s)  [1 done, 0 changed]
w29      checking runtime/containerd (0.0s)  [1 done, 0 changed]
+26 more hosts (1 running)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	// Too few rows for any host: the header and cluster lines only.
	b.Reset()
	if err := RenderLive(&b, l.Snapshot(), 80, 2); err != nil {
		t.Fatal(err)
	}
	if want := "[0s] 32/62 done, 4 running, 1 failed\n"; b.String() != want {
		t.Errorf("at 2 rows got %q, want %q", b.String(), want)
	}
}

func TestLiveRedrawAndFinish(t *testing.T) {
	clock := newFakeClock()
	var out strings.Builder
	l := NewLiveReporter(&out, LiveOptions{Now: clock.Now, Total: 2})
	l.Event(Event{Time: t0, Type: EventStart, StepID: "a/x", Host: "a"})
	l.Event(Event{Time: t0, Type: EventStart, StepID: "b/y", Host: "b"})
	l.redraw()
	first := out.String()
	if strings.Contains(first, "\x1b[") {
		t.Errorf("first frame moves the cursor: %q", first)
	}
	out.Reset()
	l.redraw()
	if out.Len() > 0 {
		t.Errorf("an unchanged frame was drawn again: %q", out.String())
	}
	clock.Advance(time.Second)
	l.Event(Event{Time: t0.Add(time.Second), Type: EventDone, StepID: "a/x", Host: "a", Status: StatusChanged})
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	// The last frame, and no summary: apply prints that once, for every
	// reporter.
	want := "\x1b[3A\x1b[J" +
		"[1s] 1/2 done, 1 running, 0 failed\n" +
		"a  idle  [1 done, 1 changed]\n" +
		"b  checking y (1.0s)  [0 done, 0 changed]\n"
	if out.String() != want {
		t.Errorf("got %q\nwant %q", out.String(), want)
	}
}

// TestLiveResize: a resize redraws at once at the new width, moving back
// over the rows the old frame takes once the terminal has reflowed it; no
// drawing after Finish.
func TestLiveResize(t *testing.T) {
	var out strings.Builder
	l := NewLiveReporter(&out, LiveOptions{Now: newFakeClock().Now, Width: 80, Height: 24})
	for _, h := range []string{"a", "b", "c"} {
		l.Event(Event{Time: t0, Type: EventStart, StepID: h + "/some/long/step/name/here", Host: h})
	}
	l.redraw()
	// The header (32 columns) and three lines of 64 take 2 + 3*3 rows
	// once reflowed at 30.
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n != 32 && n != 64 {
			t.Fatalf("the test's arithmetic is off: %d columns in %q", n, line)
		}
	}
	out.Reset()
	l.Resize(30, 24)
	if !strings.HasPrefix(out.String(), "\x1b[11A\x1b[J") {
		t.Errorf("want the cursor moved up 11 rows, got %q", out.String())
	}
	for _, line := range strings.Split(strings.TrimSuffix(out.String()[len("\x1b[11A\x1b[J"):], "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > 30 {
			t.Errorf("%d columns after the resize: %q", n, line)
		}
	}
	out.Reset()
	l.Resize(80, 24) // back to wide: each clipped line takes one row
	if !strings.HasPrefix(out.String(), "\x1b[4A\x1b[J") {
		t.Errorf("want the cursor moved up 4 rows, got %q", out.String())
	}
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	l.Resize(40, 24)
	if out.Len() > 0 {
		t.Errorf("drawn after Finish: %q", out.String())
	}
}
