// Command clusterctl is a declarative provisioner for Kubernetes clusters on
// SSH hosts.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/clusterctl/clusterctl/provision/cli"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Options{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Version: version, Commit: commit,
	})
	stop()
	os.Exit(code)
}
