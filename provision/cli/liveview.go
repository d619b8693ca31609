package cli

import (
	"os"

	"golang.org/x/term"

	"github.com/clusterctl/clusterctl/provision/execute"
)

// liveView is the live reporter on a terminal, kept to the terminal's size
// as it changes.
type liveView struct {
	*execute.LiveReporter
	stopWatch func()
}

// startLiveView sizes the live view to the terminal f, starts it, and
// redraws it whenever the terminal is resized.
func startLiveView(f *os.File, opt execute.LiveOptions) *liveView {
	opt.Width, opt.Height = termSize(f)
	l := &liveView{LiveReporter: execute.NewLiveReporter(f, opt)}
	l.stopWatch = watchResize(f, l.LiveReporter)
	l.Start()
	return l
}

// Finish stops watching for resizes, then draws the last frame.
func (l *liveView) Finish() error {
	l.stopWatch()
	return l.LiveReporter.Finish()
}

// termSize is f's size in columns and rows, or zeros (no limit) when f is
// not a terminal.
func termSize(f *os.File) (width, height int) {
	w, h, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0, 0
	}
	return w, h
}
