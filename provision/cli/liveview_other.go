//go:build !unix

package cli

import (
	"os"

	"github.com/clusterctl/clusterctl/provision/execute"
)

// watchResize does nothing where there is no SIGWINCH: the view keeps the
// size it started with.
func watchResize(*os.File, *execute.LiveReporter) (stop func()) { return func() {} }
