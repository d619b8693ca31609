package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/clusterctl/clusterctl/provision/lock"
	"github.com/clusterctl/clusterctl/provision/state"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/steps/addons"
)

func newStatusCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [PATH...]",
		Short: "Look at the cluster's health, from its first reachable control plane",
		Long: `Status checks every host of the spec over SSH (in parallel) and, in one
round trip on the first control plane that answers, looks at the cluster as
the health step of apply does: the API server's /readyz, etcd (the API
server's view and every member's own health), every node of the spec
(registered, Ready, kubelet at the spec's version, control-plane role as the
spec says), kube-system pods not running and ready, workloads not rolled
out, and the spec's HTTP probes. Nodes the cluster has but the spec does not
are listed too (they do not make the cluster unhealthy). A control plane
that does not answer over SSH is reported, and the next one is asked.

One look by default; --wait looks again until the cluster is healthy or
the spec's health.timeout (or --timeout) passes. -o json prints one JSON
document (formatVersion 1) to stdout.

Exit codes: 0 healthy; 1 unhealthy (the report is still printed), or an
error before anything could be looked at (e.g. an invalid spec).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := d.output()
			if err != nil {
				return err
			}
			c, err := loadSpec(args)
			if err != nil {
				return err
			}
			e, err := statusExpect(c)
			if err != nil {
				return err
			}
			wait := d.v.GetBool("wait")
			timeout, err := waitTimeout(d.v.GetString("timeout"), c.Health.Timeout)
			if err != nil {
				return err
			}
			red := host.NewRedactor()
			f, err := connect(c, red)
			if err != nil {
				return err
			}
			defer f.Close()
			lockAt, err := lockHost(c, d.v.GetString("lock-host"))
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			look := func(ctx context.Context) (*addons.Report, error) {
				return lookStatus(ctx, c, f.hosts, lockAt, e, red), nil
			}
			var r *addons.Report
			var unhealthy error
			if wait {
				r, unhealthy = waitStatus(ctx, timeout, look, cmd.ErrOrStderr())
			} else {
				r, _ = look(ctx)
			}
			if out == "json" {
				err = render.StatusJSON(cmd.OutOrStdout(), r)
			} else {
				err = render.StatusText(cmd.OutOrStdout(), r)
			}
			if err != nil {
				return err
			}
			if !r.Healthy {
				if unhealthy == nil {
					unhealthy = fmt.Errorf("%w: %d problems", addons.ErrUnhealthy, len(r.Problems))
				}
				return &exitError{code: ExitError, err: unhealthy}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Bool("wait", false, "look again until the cluster is healthy or the timeout passes")
	f.String("timeout", "", "bound of --wait (default: the spec's health.timeout)")
	addLockHostFlag(f)
	return cmd
}

// statusExpect is what apply's health step expects of the cluster (the
// same step, taken from the plan), with the spec's roles of every host.
func statusExpect(c *spec.Cluster) (addons.Expect, error) {
	g, err := plan.BuildGraph(c)
	if err != nil {
		return addons.Expect{}, err
	}
	s, ok := g.Get(plan.ClusterScope + "/" + addons.Health{}.Kind())
	if !ok {
		return addons.Expect{}, errors.New("the plan has no health step")
	}
	op, ok := s.Op.(addons.Health)
	if !ok {
		return addons.Expect{}, fmt.Errorf("the plan's health step is a %T", s.Op)
	}
	e := op.Expect()
	for i := range e.Nodes {
		e.Nodes[i].Roles = append([]string{}, c.Hosts[e.Nodes[i].Name].Roles...)
	}
	return e, nil
}

func waitTimeout(flag, fromSpec string) (time.Duration, error) {
	s, what := flag, "--timeout"
	if s == "" {
		s, what = fromSpec, "health.timeout"
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q is not a duration", what, s)
	}
	return d, nil
}

// waitStatus looks until healthy or timeout, saying on w what is still
// wrong after each unhealthy look.
func waitStatus(ctx context.Context, timeout time.Duration, look func(context.Context) (*addons.Report, error), w io.Writer) (*addons.Report, error) {
	start := time.Now()
	return addons.Wait(ctx, timeout, func(ctx context.Context) (*addons.Report, error) {
		r, err := look(ctx)
		if err == nil && !r.Healthy {
			first := ""
			if len(r.Problems) > 0 {
				first = ": " + r.Problems[0]
			}
			fmt.Fprintf(w, "status after %.0fs: %d problems%s\n", time.Since(start).Seconds(), len(r.Problems), first)
		}
		return r, err
	})
}

// clusterState reads the record of the last apply from the control plane
// the look ran on (h), and the lock from the lock's host (lockAt), when
// that one answered over SSH (lockErr nil).
func clusterState(ctx context.Context, c *spec.Cluster, h host.Host, lockAt string, lockHost host.Host, lockErr error, red *host.Redactor) *state.Status {
	st := &state.Status{}
	var errs []string
	admin := plan.Admin(c)
	rec, err := state.Read(ctx, h, admin.Kubectl, admin.Kubeconfig, c.Name)
	if err != nil {
		errs = append(errs, red.Redact(err.Error()))
	}
	st.LastApply = rec
	st.SpecChanged = rec != nil && rec.SpecDigest != c.Digest
	var holder *lock.Info
	if lockErr != nil {
		errs = append(errs, fmt.Sprintf("the lock on %s was not read: %s", lockAt, red.Redact(lockErr.Error())))
	} else if holder, err = (lock.File{Host: lockHost, HostName: lockAt}).Read(ctx); err != nil {
		errs = append(errs, red.Redact(err.Error()))
	}
	if holder != nil {
		st.Lock, st.LockStale = holder, holder.Stale(time.Now())
	}
	st.Error = strings.Join(errs, "; ")
	return st
}

// lookStatus is one look: every host over SSH in parallel, and the look at
// the cluster on the first control plane (in spec order) that answers;
// while it runs, the other hosts' SSH checks go on.
func lookStatus(ctx context.Context, c *spec.Cluster, hosts map[string]host.Host, lockAt string, e addons.Expect, red *host.Redactor) *addons.Report {
	type answer struct {
		err  error
		done chan struct{}
	}
	names := c.Names()
	answers := make(map[string]*answer, len(names))
	var wg sync.WaitGroup
	for _, n := range names {
		a := &answer{done: make(chan struct{})}
		answers[n] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(a.done)
			a.err = hosts[n].Run(ctx, host.Cmd{Line: "true"})
		}()
	}
	var r *addons.Report
	lookErrs := map[string]string{}
	for _, cp := range c.ControlPlanes() {
		<-answers[cp].done
		if answers[cp].err != nil {
			continue
		}
		rep, err := addons.Look(ctx, hosts[cp], e)
		if err != nil {
			lookErrs[cp] = red.Redact(err.Error())
			continue
		}
		r = rep
		<-answers[lockAt].done
		r.State = clusterState(ctx, c, hosts[cp], lockAt, hosts[lockAt], answers[lockAt].err, red)
		break
	}
	wg.Wait()
	if r == nil {
		r = addons.NewReport(e, "not checked: no control plane could be reached")
		r.ProbeFromHere(ctx)
	}
	r.Cluster = c.Name
	for _, n := range names {
		row := r.Node(n)
		if row == nil { // cannot happen: every expected node has a row
			continue
		}
		row.SSH = addons.SSHOK
		if err := answers[n].err; err != nil {
			row.SSH = addons.SSHFailed
			if errors.Is(err, host.ErrUnreachable) || errors.Is(err, host.ErrDisconnected) {
				row.SSH = addons.SSHUnreachable
			}
			row.SSHError = strings.TrimPrefix(red.Redact(err.Error()), n+": ")
		}
		row.LookError = lookErrs[n]
	}
	r.Judge()
	return r
}
