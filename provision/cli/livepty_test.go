//go:build unix

package cli

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestLiveViewOnPTY runs apply's reporting (liveDemo: the real
// session.apply with a synthetic plan of 30 hosts) in a child process whose
// controlling terminal is an 80x24 pseudo-terminal, and reads back what a
// terminal would show. Midway it resizes the terminal to 40 columns, as a
// user dragging the window would: the kernel sends SIGWINCH.
func TestLiveViewOnPTY(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	gateR, gateW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), liveDemoEnv+"=gated")
	cmd.ExtraFiles = []*os.File{gateR, readyW} // fds 3 and 4
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	gateR.Close()
	readyW.Close()
	defer gateW.Close()

	term := &lockedVT{vt: newVT(80, 24)}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			term.write(buf[:n])
			if err != nil {
				return // EIO once the child has exited
			}
		}
	}()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(readyR).ReadString('\n')
		ready <- line
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the demo's steps never all ran; %s", term)
	}

	// 80x24, with the 30 gated containerd steps and the cluster's snapshot
	// running: 30 hosts do not fit in 23 rows.
	running := regexp.MustCompile(`^\[0s\] 30/63 done, 31 running, 0 failed$`)
	term.waitFor(t, "a frame with every gated step running", func(v *vt) bool { return hasRow(v, running) })
	term.check(t, func(v *vt) {
		frame := liveFrame(t, v, running, 80, false)
		if v.wraps > 0 {
			t.Errorf("%d lines wrapped at 80 columns", v.wraps)
		}
		if len(frame) > 23 {
			t.Errorf("the frame has %d rows; at most 23 fit with the cursor below", len(frame))
		}
		cluster := regexp.MustCompile(`^cluster  applying etcd/snapshot on node-01 \(0\.0s\)  \[0 done, 0 changed\]$`)
		if !hasRow(v, cluster) {
			t.Errorf("no cluster-scope line on the %s", v)
		} else if len(frame) > 1 && !cluster.MatchString(frame[1]) {
			t.Errorf("row 2 is not the cluster-scope line: %q", frame[1])
		}
		for _, row := range frame[min(2, len(frame)):] {
			if strings.Contains(row, "etcd/snapshot") || strings.Contains(row, "cluster/") {
				t.Errorf("a host row shows a cluster-scope step: %q", row)
			}
		}
		if last := frame[max(0, len(frame)-1):]; len(last) != 1 || last[0] != "+10 more hosts (10 running)" {
			t.Errorf("last row %q, want the count of hosts left out", last)
		}
	})

	// Resize to 40 columns: the child redraws on SIGWINCH. The demo's
	// clock is frozen while the gate is closed, so no frame is in flight.
	term.mu.Lock()
	frames := term.vt.erases
	term.vt.Resize(40, 24)
	term.mu.Unlock()
	if err := pty.Setsize(ptmx, &pty.Winsize{Cols: 40, Rows: 24}); err != nil {
		t.Fatal(err)
	}
	term.waitFor(t, "a redraw after the resize", func(v *vt) bool { return v.erases > frames })
	term.check(t, func(v *vt) {
		frame := liveFrame(t, v, running, 40, false)
		if len(frame) != 23 || frame[1] != "cluster  applying etcd/snapshot on node…" {
			t.Errorf("at 40 columns, want 23 rows with the cluster's second:\n%s", strings.Join(frame, "\n"))
		}
	})

	gateW.WriteString("go\n")
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("demo exit: %v, want exit status 1 (node-27 fails)", err)
	}
	<-readDone

	term.check(t, func(v *vt) {
		final := regexp.MustCompile(`^\[5s\] 63/63 done, 0 running, 1 failed, 2…$`)
		frame := liveFrame(t, v, final, 40, true)
		if !slices.Contains(frame, "node-27  idle  [1 done, 1 changed, 1 fa…") {
			t.Errorf("the failed host is not shown:\n%s", strings.Join(frame, "\n"))
		}
		if len(v.bad) > 0 {
			t.Errorf("the terminal got sequences it does not know: %q", v.bad)
		}
		summary := 0
		for _, l := range v.Lines() {
			if strings.Contains(l, " changed, ") && strings.Contains(l, " unchanged, ") {
				summary++
				if want := "44 changed, 15 unchanged, 1 read, 1 failed, 2 skipped, 0 cancelled in "; !strings.HasPrefix(l, want) {
					t.Errorf("summary %q, want it to start %q", l, want)
				}
			}
		}
		if summary != 1 {
			t.Errorf("the summary is shown %d times, want once:\n%s", summary, strings.Join(v.Lines(), "\n"))
		}
	})
}

// liveFrame finds the live view on the screen, from its one header row to
// the cursor row or the first blank row, and checks that each row fits the
// width without wrapping. With scrolled, the frame may have scrolled up
// (the summary was printed below it): the last header row is taken,
// scrollback included.
func liveFrame(t *testing.T, v *vt, header *regexp.Regexp, width int, scrolled bool) []string {
	t.Helper()
	from := v.top
	if scrolled {
		from = 0
	}
	start, n := -1, 0
	for i := from; i < len(v.rows); i++ {
		if header.MatchString(string(v.rows[i].cells)) {
			start, n = i, n+1
		}
	}
	if n == 0 || n > 1 && !scrolled {
		t.Errorf("want 1 header row matching %s, found %d on the %s", header, n, v)
		return nil
	}
	var frame []string
	for i := start; i < len(v.rows) && len(v.rows[i].cells) > 0 && i != v.cur; i++ {
		row := v.rows[i]
		frame = append(frame, string(row.cells))
		if row.wrapped || len(row.cells) > width {
			t.Errorf("row %d does not fit %d columns: %q", i, width, string(row.cells))
		}
	}
	return frame
}

func hasRow(v *vt, re *regexp.Regexp) bool {
	for _, s := range v.Screen() {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// lockedVT shares a vt between the pty reader and the test.
type lockedVT struct {
	mu sync.Mutex
	vt *vt
}

func (l *lockedVT) write(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.vt.Write(p)
}

func (l *lockedVT) check(t *testing.T, f func(*vt)) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l.vt)
}

func (l *lockedVT) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.vt.String()
}

// waitFor polls until cond holds, for up to 10s; then it reports and goes
// on, so one missed frame does not hide the other checks.
func (l *lockedVT) waitFor(t *testing.T, what string, cond func(*vt) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		ok := cond(l.vt)
		l.mu.Unlock()
		if ok {
			return
		}
	}
	t.Errorf("waited 10s for %s; %s", what, l)
}
