package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/execute"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/lock"
	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/state"
	"github.com/clusterctl/clusterctl/provision/step"
)

// session is one online run: spec, graph of steps, connections,
// facts and the runner that binds steps to hosts.
type session struct {
	c        *spec.Cluster
	graph    *plan.Graph
	fleet    *fleet
	redactor *host.Redactor
	runner   *hostRunner
	// warnings found while opening the session, for the plan (already
	// printed to stderr).
	warnings []string
	lock     *lock.Lock       // held for changing commands
	previous *state.Record    // the cluster's record of its last apply
	now      func() time.Time // the clock of apply's walk and live view; nil means time.Now
}

// sessionOptions: what a command needs of its session beyond facts.
type sessionOptions struct {
	// Lock names the changing command that locks the cluster for the
	// session's life ("" for read-only commands).
	Lock string
	// RemoveHosts confirms the removal of hosts that left the spec. It is
	// read from the command line only, never from CLUSTERCTL_REMOVE_HOSTS
	// or the preferences file: a confirmation to wipe a machine must not
	// outlive the command that gave it.
	RemoveHosts []string
}

// openSessionWith loads the spec, connects and gathers facts from every
// host; it also locks the cluster when asked, and reads the cluster's
// record of its last apply before planning.
func openSessionWith(ctx context.Context, d *deps, args []string, stderr io.Writer, o sessionOptions) (_ *session, err error) {
	c, err := loadSpec(args)
	if err != nil {
		return nil, err
	}
	// What can be checked here is checked before contacting any host.
	var b *bundle.Bundle
	if c.Artifacts.Mode == "bundle" {
		b, err = bundle.Open(specPath(c.Dir, c.Artifacts.BundleDir))
		if err != nil {
			return nil, fmt.Errorf("artifacts.bundleDir: %w", err)
		}
	}
	red := host.NewRedactor()
	f, err := connect(c, red)
	if err != nil {
		return nil, err
	}
	s := &session{c: c, fleet: f, redactor: red}
	warn := s.warner(stderr)
	defer func() {
		if err != nil {
			s.Close()
			err = red.Error(err)
		}
	}()
	if o.Lock != "" {
		if s.lock, err = takeLock(ctx, c, f, d.v.GetString("lock-host"), o.Lock, stderr); err != nil {
			return nil, err
		}
	}
	s.previous = readPrevious(ctx, c, f, warn)
	if s.lock != nil && s.previous != nil {
		if err := s.lock.NoteRecord(ctx, s.previous.Digest); err != nil {
			fmt.Fprintln(stderr, "warning:", red.Redact(err.Error()))
		}
	}
	bo := plan.BuildOptions{Previous: s.previous, Git: gitOf(ctx, c.Dir, warn), Clusterctl: d.opt.Version, RemoveHosts: o.RemoveHosts}
	if pending := bo.PendingRemovals(c); len(pending) > 0 {
		if o.Lock != "" {
			return nil, fmt.Errorf("%s refused: %s", o.Lock, pendingRemovals(pending))
		}
		warn(pendingRemovals(pending))
	}
	bo.Gone = connectRemoved(ctx, c, f, bo.ConfirmedRemovals(c), warn)
	full, err := plan.Build(c, bo)
	if err != nil {
		return nil, err
	}
	g, err := plan.Select(full, d.v.GetStringSlice("only"), d.v.GetStringSlice("skip"))
	if err != nil {
		return nil, err
	}
	s.graph = g
	start := time.Now()
	all, err := gatherAll(ctx, f, factsRequest(g), d.v.GetInt("parallel"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "Gathered facts from %d hosts in %.2fs.\n", len(all), time.Since(start).Seconds())
	ws, err := plan.VersionSupport(c, all, s.previous != nil || clusterExists(c, all))
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		warn(w)
	}
	s.runner = &hostRunner{hosts: f.hosts, facts: all, bundle: b, redactor: red}
	return s, nil
}

// clusterExists says whether a control plane already runs Kubernetes (a
// cluster made before state records, or one whose record cannot be read):
// its kubelet or k3s is installed.
func clusterExists(c *spec.Cluster, all map[string]*facts.Facts) bool {
	for _, name := range c.ControlPlanes() {
		if f := all[name]; f != nil && (f.Kubelet != "" || f.K3s != "") {
			return true
		}
	}
	return false
}

// warner prints warnings that concern the plan to stderr as they are found,
// and keeps them for the plan, so every renderer of the plan shows them.
func (s *session) warner(stderr io.Writer) func(string) {
	return func(msg string) {
		msg = s.redactor.Redact(msg)
		printWarning(stderr)(msg)
		s.warnings = append(s.warnings, msg)
	}
}

// gitOf is the spec repository's commit for the record; a repository that
// cannot or may not be read is a warning, never a failed apply.
func gitOf(ctx context.Context, dir string, warn func(string)) *state.Git {
	g, err := state.GitOf(ctx, dir)
	if err != nil {
		warn(fmt.Sprintf("the record of this apply will name no git commit: %v", err))
	}
	return g
}

// Close releases the lock (if held) and closes every connection.
func (s *session) Close() error {
	var err error
	if s.lock != nil {
		err = s.lock.Release(context.Background())
	}
	return errors.Join(err, s.fleet.Close())
}

// plan checks every step against the facts.
func (s *session) plan(ctx context.Context, args []string) (*plan.Plan, error) {
	p, err := plan.Make(ctx, s.c, s.graph, s.runner.Check, false)
	if err != nil {
		return nil, s.redactor.Error(err)
	}
	p.FactsDigest = map[string]string{}
	for name, f := range s.runner.facts {
		p.FactsDigest[name] = f.Digest()
	}
	p.Warnings = s.warnings
	p.Previous = s.previous
	for _, a := range args {
		if abs, err := filepath.Abs(a); err == nil {
			p.SpecPaths = append(p.SpecPaths, abs)
		}
	}
	if len(p.SpecPaths) == 0 {
		p.SpecPaths = []string{s.c.Dir}
	}
	return p, nil
}

// hostRunner binds steps to their host, facts and bundle for the walker.
type hostRunner struct {
	hosts    map[string]host.Host
	facts    map[string]*facts.Facts
	bundle   *bundle.Bundle
	redactor *host.Redactor

	mu       sync.Mutex
	warnings []string // from steps, shown once the walk is over (a live view owns the terminal until then)
}

func (r *hostRunner) target(s step.Step) step.Target {
	warn := func(msg string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.warnings = append(r.warnings, s.ID+": "+msg)
	}
	return step.Target{Host: r.hosts[s.Host], Facts: r.facts[s.Host], Bundle: r.bundle, Redactor: r.redactor, Peers: r.hosts, Warn: warn}
}

// takeWarnings returns the steps' warnings so far, and forgets them.
func (r *hostRunner) takeWarnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.warnings
	r.warnings = nil
	return w
}

func (r *hostRunner) Check(ctx context.Context, s step.Step) (step.Change, error) {
	return s.Op.Check(ctx, r.target(s))
}

func (r *hostRunner) Apply(ctx context.Context, s step.Step) error {
	return s.Op.Apply(ctx, r.target(s))
}

func newApplyCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply [PLAN.json | PATH...]",
		Short: "Converge the hosts to the spec",
		Long: `Apply gathers facts from every host, shows the plan, asks for confirmation
(--yes skips it) and runs the steps in parallel: at most one changing step
per host at a time, each re-checked right before it runs. A second apply
right after a successful one has nothing to do.

Given a plan file written by 'plan -out', apply refuses it when the spec or
any host changed since the plan was made.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := d.output()
			if err != nil {
				return err
			}
			saved, args, err := readPlanArg(args)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := openSessionWith(ctx, d, args, cmd.ErrOrStderr(), sessionOptions{Lock: "apply", RemoveHosts: removeHostsFlag(cmd)})
			if err != nil {
				return err
			}
			defer func() {
				if cerr := s.Close(); cerr != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning:", cerr)
				}
			}()
			p, err := s.plan(ctx, args)
			if err != nil {
				return err
			}
			if saved != nil {
				if err := stale(saved, p); err != nil {
					return err
				}
			}
			if out == "text" {
				if err := render.PlanText(cmd.OutOrStdout(), p); err != nil {
					return err
				}
			}
			if p.Summary.Changes() == 0 && p.Summary.Read == 0 {
				return nil
			}
			if saved == nil && !d.v.GetBool("yes") {
				if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			return s.apply(ctx, d, cmd.OutOrStdout(), cmd.ErrOrStderr(), out)
		},
	}
	f := cmd.Flags()
	f.Bool("yes", false, "apply without asking for confirmation")
	f.Int("parallel", 20, "steps (and fact probes) run at once across hosts")
	f.Int("per-host", 1, "changing steps run at once on one host")
	addSelectFlags(f)
	addRemoveHostsFlag(f)
	addLockHostFlag(f)
	return cmd
}

// addRemoveHostsFlag: hosts that left the spec are taken out of the
// cluster (drained, reset, deleted) only when named here, since only the
// in-cluster record says they were ever part of it.
func addRemoveHostsFlag(f *pflag.FlagSet) {
	f.StringSlice("remove-hosts", nil, "confirm the removal of these hosts, which left the spec but are in the cluster's record of its last apply: "+
		"they are drained, their etcd members removed, reset and their Nodes deleted (names, comma-separated)")
}

// removeHostsFlag is --remove-hosts as typed on the command line.
func removeHostsFlag(cmd *cobra.Command) []string {
	hosts, _ := cmd.Flags().GetStringSlice("remove-hosts")
	return hosts
}

// pendingRemovals says which hosts wait for --remove-hosts, and why.
func pendingRemovals(names []string) string {
	return fmt.Sprintf("host %s left the spec but the cluster's record of its last apply (kube-system/%s) still lists it; "+
		"its removal (drain, etcd member, reset, Node deleted) is not planned until you confirm it: check that this is the machine you mean to wipe, then pass --remove-hosts %s",
		strings.Join(names, ", "), state.ConfigMapName, strings.Join(names, ","))
}

// readPlanArg takes a leading plan file (*.json) off the arguments and
// returns the spec paths it recorded when no others are given.
func readPlanArg(args []string) (*plan.Plan, []string, error) {
	if len(args) == 0 || filepath.Ext(args[0]) != ".json" {
		return nil, args, nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, nil, fmt.Errorf("read plan: %w", err)
	}
	defer f.Close()
	p, err := plan.Load(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", args[0], err)
	}
	if p.Offline {
		return nil, nil, fmt.Errorf("%s is an offline plan: it treats every host as blank and cannot be applied; run plan without --offline", args[0])
	}
	rest := args[1:]
	if len(rest) == 0 {
		rest = p.SpecPaths
	}
	return p, rest, nil
}

// stale refuses a saved plan whose spec or hosts changed since.
func stale(saved, now *plan.Plan) error {
	if saved.SpecDigest != now.SpecDigest {
		return fmt.Errorf("the plan is stale: the spec changed since it was made (digest %.12s, now %.12s); run plan again", saved.SpecDigest, now.SpecDigest)
	}
	var changed []string
	for name, d := range now.FactsDigest {
		if saved.FactsDigest[name] != d {
			changed = append(changed, name)
		}
	}
	for name := range saved.FactsDigest {
		if _, ok := now.FactsDigest[name]; !ok {
			changed = append(changed, name)
		}
	}
	if len(changed) > 0 {
		slices.Sort(changed)
		return fmt.Errorf("the plan is stale: host %s changed since it was made; run plan again", strings.Join(changed, ", "))
	}
	return nil
}

func confirm(in io.Reader, w io.Writer) error {
	if f, ok := in.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		return errors.New("apply needs confirmation, and standard input is not a terminal: run with --yes")
	}
	fmt.Fprint(w, "\nApply these changes? Only 'yes' is accepted: ")
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return errors.New("apply cancelled")
	}
	return nil
}

// apply walks the graph with a reporter suited to the output.
func (s *session) apply(ctx context.Context, d *deps, stdout, stderr io.Writer, out string) error {
	ropt := execute.ReportOptions{Redact: s.redactor.Redact}
	var rep execute.Reporter
	var live *liveView
	switch {
	case out == "json":
		rep = execute.NewJSONReporter(stdout, ropt)
	case isTerminal(stderr):
		live = startLiveView(stderr.(*os.File), execute.LiveOptions{
			ReportOptions: ropt, Now: s.now, Total: s.graph.Len(), ClusterScope: plan.ClusterScope,
		})
		rep = live
	default:
		rep = execute.NewLineReporter(stderr, ropt)
	}
	w := execute.NewWalker(s.graph, s.runner, execute.Options{
		Concurrency: d.v.GetInt("parallel"),
		PerHost:     d.v.GetInt("per-host"),
		Reporter:    rep,
		Now:         s.now,
	})
	res, err := w.Walk(ctx)
	if live != nil {
		_ = live.Finish()
	}
	for _, msg := range s.runner.takeWarnings() {
		fmt.Fprintln(stderr, "warning:", s.redactor.Redact(msg))
	}
	// The summary is printed here only, for every reporter: the live view's
	// last frame leaves it out.
	if res != nil && out == "text" {
		path, total := res.CriticalPath()
		fmt.Fprintf(stderr, "\n%s\n", res.Summary())
		if len(path) > 0 {
			fmt.Fprintf(stderr, "Critical path (%.2fs of %.2fs wall): %s\n", total.Seconds(), res.End.Sub(res.Start).Seconds(), strings.Join(path, " -> "))
		}
	}
	if err != nil {
		return s.redactor.Error(err)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// addSelectFlags: --only and --skip take step IDs ("h1/hostprep/sysctl"),
// globs ("*/hostprep/*"), kinds ("hostprep/sysctl") or kind prefixes
// ("hostprep", "kube").
func addSelectFlags(f *pflag.FlagSet) {
	f.StringSlice("only", nil, "run only these steps (IDs, globs, kinds or kind prefixes such as hostprep,runtime)")
	f.StringSlice("skip", nil, "leave these steps out (same patterns as --only)")
}
