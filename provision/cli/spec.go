package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
)

func loadSpec(args []string) (*spec.Cluster, error) {
	return spec.Load(args, spec.LoadOptions{})
}

func newValidateCommand(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [PATH...]",
		Short: "Check a cluster spec against the schema and the semantic rules",
		Long: `Validate loads the spec (a directory of .cue/.yaml/.json files, or files;
default "."), checks it against the embedded schema and the rules CUE cannot
express, and reports every problem with file:line:col and its path in the spec.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadSpec(args)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "The spec is valid: cluster %q, %s (%s, %s), %s %s.\n",
				c.Name, count(len(c.Hosts), "host"), count(len(c.ControlPlanes()), "control plane"), count(len(c.Workers()), "worker"),
				c.Kubernetes.Distribution, c.Kubernetes.Version)
			return nil
		},
	}
}

func newPlanCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan [PATH...]",
		Short: "Show what apply would change",
		Long: `Plan loads the spec, gathers facts from every host (one SSH round trip
each, in parallel) and prints every step apply would run and what it would
change, current -> desired. With --offline no host is contacted and every
host is treated as blank. -o markdown writes the plan for a pull-request
comment, -o json as data (its schema: schema/plan.schema.json). With
-out FILE the plan is also saved for 'apply FILE', which refuses it if the
spec or any host changed since.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := d.planOutput()
			if err != nil {
				return err
			}
			var p *plan.Plan
			if d.v.GetBool("offline") {
				c, err := loadSpec(args)
				if err != nil {
					return err
				}
				if p, err = offlinePlan(cmd.Context(), c); err != nil {
					return err
				}
			} else {
				s, err := openSessionWith(cmd.Context(), d, args, cmd.ErrOrStderr(), sessionOptions{RemoveHosts: removeHostsFlag(cmd)})
				if err != nil {
					return err
				}
				defer s.Close()
				if p, err = s.plan(cmd.Context(), args); err != nil {
					return err
				}
			}
			if file := d.v.GetString("out"); file != "" {
				if err := writePlan(file, p); err != nil {
					return err
				}
			}
			switch out {
			case "json":
				err = render.PlanJSON(cmd.OutOrStdout(), p)
			case "markdown":
				err = render.PlanMarkdown(cmd.OutOrStdout(), p)
			default:
				err = render.PlanText(cmd.OutOrStdout(), p)
			}
			if err != nil {
				return err
			}
			if d.v.GetBool("detailed-exitcode") && p.Summary.Changes() > 0 {
				return &exitError{code: ExitChanges}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Bool("offline", false, "plan without contacting hosts: every host is treated as blank")
	f.Bool("detailed-exitcode", false, "exit 0 when there are no changes, 2 when there are, 1 on error")
	f.String("out", "", "also save the plan to this file (JSON) for 'apply FILE'")
	f.Int("parallel", 20, "hosts probed at once")
	addSelectFlags(f)
	addRemoveHostsFlag(f)
	return cmd
}

// writePlan saves a plan atomically: a reader never sees half a plan.
func writePlan(file string, p *plan.Plan) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := render.PlanJSON(tmp, p); err != nil {
		tmp.Close()
		return fmt.Errorf("save plan: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	return nil
}

func offlinePlan(ctx context.Context, c *spec.Cluster) (*plan.Plan, error) {
	g, err := plan.BuildGraph(c)
	if err != nil {
		return nil, err
	}
	return plan.Make(ctx, c, g, plan.Offline, true)
}

func newGraphCommand(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "graph [PATH...]",
		Short: "Print the plan's step graph in Graphviz DOT",
		Long: `Graph prints the steps of a full cluster build and their dependencies in
Graphviz DOT, one box per host. Render it with: clusterctl graph | dot -Tsvg > plan.svg`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadSpec(args)
			if err != nil {
				return err
			}
			g, err := plan.BuildGraph(c)
			if err != nil {
				return err
			}
			return render.GraphDOT(cmd.OutOrStdout(), c.Name, g)
		},
	}
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
