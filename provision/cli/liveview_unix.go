//go:build unix

package cli

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/clusterctl/clusterctl/provision/execute"
)

// watchResize resizes live to f's size on every SIGWINCH (the terminal's
// window changed size) until stop is called.
func watchResize(f *os.File, live *execute.LiveReporter) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGWINCH)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-sig:
				live.Resize(termSize(f))
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
		<-exited
	}
}
