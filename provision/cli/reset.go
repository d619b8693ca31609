package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
)

func newResetCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reset [PATH...]",
		Short: "Tear the cluster down, leaving prepared hosts",
		Long: `Reset tears Kubernetes down on every host of the spec (or the --hosts named):
kubeadm reset, the kubelet stopped and disabled, the cluster's state, etcd
data, CNI configuration and interfaces, Kubernetes' packet filter rules and
the pods' containers removed. Host preparation, containerd with its images
and the Kubernetes binaries stay: the hosts are prepared hosts, and a later
apply builds or joins them quickly. The user's files are not touched.

Workers go first, then control planes one by one, the spec's first control
plane last. Control planes may only go while a majority of them stays
(etcd's quorum), unless the whole cluster goes; when the cluster lives on,
the reset hosts' Node objects are deleted through a control plane that stays.
Reset shows its plan and asks for confirmation unless --yes is given. Take a
backup first ('clusterctl backup'): a reset cluster is gone.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := d.output()
			if err != nil {
				return err
			}
			c, err := loadSpec(args)
			if err != nil {
				return err
			}
			scope, err := plan.NewResetScope(c, d.v.GetStringSlice("hosts"))
			if err != nil {
				return err
			}
			g, err := plan.BuildResetGraph(c, scope)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := openGraphSession(ctx, d, c, g, false, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer s.Close() // releases the lock too
			if s.lock, err = takeLock(ctx, c, s.fleet, d.v.GetString("lock-host"), "reset", cmd.ErrOrStderr()); err != nil {
				return err
			}
			p, err := s.plan(ctx, args)
			if err != nil {
				return err
			}
			if out == "text" {
				if err := render.PlanText(cmd.OutOrStdout(), p); err != nil {
					return err
				}
			}
			for _, w := range scope.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s.\n", w)
			}
			if p.Summary.Changes() == 0 {
				return nil
			}
			if !d.v.GetBool("yes") {
				q := fmt.Sprintf("Reset %s of cluster %q? Their Kubernetes state is removed for good.", strings.Join(scope.Hosts, ", "), c.Name)
				if err := confirmAction(cmd.InOrStdin(), cmd.ErrOrStderr(), "reset", q); err != nil {
					return err
				}
			}
			return s.apply(ctx, d, cmd.OutOrStdout(), cmd.ErrOrStderr(), out)
		},
	}
	f := cmd.Flags()
	f.StringSlice("hosts", nil, "reset only these hosts (spec names); default: every host")
	f.Bool("yes", false, "reset without asking for confirmation")
	f.Int("parallel", 20, "steps (and fact probes) run at once across hosts")
	f.Int("per-host", 1, "changing steps run at once on one host")
	addLockHostFlag(f)
	return cmd
}

// openGraphSession is openSession for a graph other than the cluster's
// build (reset, restore): it connects to the spec's hosts and gathers the
// facts of the hosts that run g's steps only, so a host outside the
// operation may be down. The bundle is opened only when asked for.
func openGraphSession(ctx context.Context, d *deps, c *spec.Cluster, g *plan.Graph, withBundle bool, stderr io.Writer) (*session, error) {
	var b *bundle.Bundle
	if withBundle && c.Artifacts.Mode == "bundle" {
		var err error
		if b, err = bundle.Open(specPath(c.Dir, c.Artifacts.BundleDir)); err != nil {
			return nil, fmt.Errorf("artifacts.bundleDir: %w", err)
		}
	}
	red := host.NewRedactor()
	f, err := connect(c, red)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, id := range g.IDs() {
		st, _ := g.Get(id)
		used[st.Host] = true
	}
	view := &fleet{pool: f.pool, redactor: red, hosts: f.hosts}
	for _, n := range c.Names() {
		if used[n] {
			view.names = append(view.names, n)
		}
	}
	start := time.Now()
	all, err := gatherAll(ctx, view, factsRequest(g), d.v.GetInt("parallel"))
	if err != nil {
		f.Close()
		return nil, red.Error(err)
	}
	fmt.Fprintf(stderr, "Gathered facts from %d hosts in %.2fs.\n", len(all), time.Since(start).Seconds())
	return &session{c: c, graph: g, fleet: f, redactor: red,
		runner: &hostRunner{hosts: f.hosts, facts: all, bundle: b, redactor: red}}, nil
}

// confirmAction asks question on a terminal; only "yes" goes on.
func confirmAction(in io.Reader, w io.Writer, verb, question string) error {
	if f, ok := in.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		return fmt.Errorf("%s needs confirmation, and standard input is not a terminal: run with --yes", verb)
	}
	fmt.Fprintf(w, "\n%s Only 'yes' is accepted: ", question)
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return fmt.Errorf("%s cancelled", verb)
	}
	return nil
}
