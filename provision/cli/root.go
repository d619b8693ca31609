// Package cli holds clusterctl's commands: cobra for commands and flags, one
// viper instance for CLI preferences (flags, CLUSTERCTL_* environment, an
// optional config file). The cluster spec itself is CUE only.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/spec"
)

// Exit codes, documented in the README and `clusterctl --help`.
const (
	ExitOK      = 0
	ExitError   = 1
	ExitChanges = 2 // plan --detailed-exitcode: the plan has changes
)

// Options are main's gifts to the commands: streams and build info.
type Options struct {
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Version string
	Commit  string
}

// exitError carries an exit code other than 1 up to Run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// deps is what every command shares.
type deps struct {
	opt Options
	v   *viper.Viper
}

// Run executes one clusterctl invocation and returns its exit code.
func Run(ctx context.Context, args []string, opt Options) int {
	d := &deps{opt: opt, v: viper.New()}
	root := newRootCommand(d)
	root.SetArgs(args)
	root.SetIn(opt.Stdin)
	root.SetOut(opt.Stdout)
	root.SetErr(opt.Stderr)
	return report(opt.Stderr, root.ExecuteContext(ctx))
}

// report prints a command's error and returns the exit code. The text it
// prints may come from inside a *host.RedactedError (an exit code's error,
// spec errors), so it is redacted again.
func report(w io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	redact := redactorsIn(err)
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			printError(w, ee.err, redact)
		}
		return ee.code
	}
	printError(w, err, redact)
	return ExitError
}

// redactorsIn returns a function that redacts with every
// *host.RedactedError's Redactor found in err's tree.
func redactorsIn(err error) func(string) string {
	var found []*host.RedactedError
	var walk func(error)
	walk = func(e error) {
		if r, ok := e.(*host.RedactedError); ok {
			found = append(found, r)
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			if next := u.Unwrap(); next != nil {
				walk(next)
			}
		case interface{ Unwrap() []error }:
			for _, next := range u.Unwrap() {
				walk(next)
			}
		}
	}
	walk(err)
	return func(s string) string {
		for _, r := range found {
			s = r.Redact(s)
		}
		return s
	}
}

// printError shows spec errors one per line, like a compiler.
func printError(w io.Writer, err error, redact func(string) string) {
	var es spec.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintln(w, redact(e.Error()))
		}
		noun := "error"
		if len(es) > 1 {
			noun = "errors"
		}
		fmt.Fprintf(w, "Error: the spec is invalid (%d %s)\n", len(es), noun)
		return
	}
	fmt.Fprintf(w, "Error: %s\n", redact(err.Error()))
}

func newRootCommand(d *deps) *cobra.Command {
	root := &cobra.Command{
		Use:   "clusterctl",
		Short: "A declarative provisioner for Kubernetes clusters on SSH hosts",
		Long: `clusterctl: a declarative provisioner for Kubernetes clusters on SSH hosts.

Not Cluster API's CLI of the same name. One cluster spec, written in CUE and
kept in git, describes the hosts, the Kubernetes version and distribution,
networks, runtime, CNI and workloads; plan shows what would change on the
hosts and apply converges them.

Exit codes: 0 success; 1 error (invalid spec, unreachable host, failed step),
or with status: the cluster is unhealthy; 2 with plan --detailed-exitcode:
the plan has changes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(d.opt),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return d.loadPreferences(cmd)
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	pf.String("config", "", "CLI preferences file (default $XDG_CONFIG_HOME/clusterctl/config.yaml)")
	pf.StringP("output", "o", "text", "output format: text or json (plan also: markdown)")
	root.AddCommand(
		newValidateCommand(d),
		newPlanCommand(d),
		newGraphCommand(d),
		newFactsCommand(d),
		newApplyCommand(d),
		newForceUnlockCommand(d),
		newBundleCommand(d),
		newStatusCommand(d),
		newKubeconfigCommand(d),
		newResetCommand(d),
		newBackupCommand(d),
		newRestoreCommand(d),
		newImportCommand(d),
		newVersionCommand(d),
	)
	return root
}

// loadPreferences binds flags, CLUSTERCTL_* variables and the config file
// into the one viper instance; flags win, then environment, then file.
func (d *deps) loadPreferences(cmd *cobra.Command) error {
	v := d.v
	v.SetEnvPrefix("CLUSTERCTL")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(cmd.Flags()); err != nil {
		return fmt.Errorf("bind flags: %w", err)
	}
	file, _ := cmd.Flags().GetString("config")
	explicit := file != ""
	if !explicit {
		if dir, err := os.UserConfigDir(); err == nil {
			file = filepath.Join(dir, "clusterctl", "config.yaml")
		}
	}
	if file == "" {
		return nil
	}
	v.SetConfigFile(file)
	if err := v.ReadInConfig(); err != nil {
		var notFound viper.ConfigFileNotFoundError
		if !explicit && (errors.As(err, &notFound) || errors.Is(err, os.ErrNotExist)) {
			return nil
		}
		return fmt.Errorf("read preferences %s: %w", file, err)
	}
	return nil
}

// output is the chosen format, validated.
func (d *deps) output() (string, error) {
	o := d.v.GetString("output")
	switch o {
	case "text", "json":
		return o, nil
	}
	return "", fmt.Errorf("--output %q: want text or json", o)
}

// planOutput is output() for plan, which also writes markdown (for a
// pull-request comment).
func (d *deps) planOutput() (string, error) {
	switch o := d.v.GetString("output"); o {
	case "text", "json", "markdown":
		return o, nil
	default:
		return "", fmt.Errorf("--output %q: want text, json or markdown", o)
	}
}

func versionString(o Options) string {
	v := "clusterctl " + o.Version
	if o.Commit != "" {
		v += " (" + o.Commit + ")"
	}
	return v
}

func newVersionCommand(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the clusterctl version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := d.output()
			if err != nil {
				return err
			}
			if out == "json" {
				fmt.Fprintf(cmd.OutOrStdout(), "{\"version\":%q,\"commit\":%q}\n", d.opt.Version, d.opt.Commit)
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), versionString(d.opt))
			return nil
		},
	}
}
