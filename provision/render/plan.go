// Package render shows plans to people (Terraform-style text) and machines
// (stable JSON).
package render

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/step"
)

// PlanText writes the human view: every step that would do something, its
// diff, and a closing summary line. Unchanged steps are counted, not listed.
func PlanText(w io.Writer, p *plan.Plan) error {
	bw := bufio.NewWriter(w)
	digest := p.SpecDigest
	if len(digest) > 12 {
		digest = digest[:12]
	}
	fmt.Fprintf(bw, "Cluster %q, spec sha256:%s\n", p.Cluster, digest)
	if p.Offline {
		fmt.Fprintln(bw, "Offline plan: facts were not gathered, so every host is treated as blank.")
	}
	if r := p.Previous; r != nil {
		fmt.Fprintf(bw, "Last %s.\n", r.Summary())
		if r.SpecDigest == p.SpecDigest {
			fmt.Fprintln(bw, "The spec is unchanged since.")
		} else {
			fmt.Fprintf(bw, "The spec changed since (sha256:%.12s then).\n", r.SpecDigest)
		}
	}
	if p.Summary.Changes() > 0 || p.Summary.Read > 0 {
		fmt.Fprintln(bw, "\nclusterctl will perform these actions (+ create, ~ update, - remove, <= read):")
	}
	for _, s := range p.Steps {
		if s.Action == step.ActionNone {
			continue
		}
		fmt.Fprintf(bw, "\n  %-2s %s", s.Action.Symbol(), s.ID)
		if where := stepHost(s); where != "" {
			fmt.Fprintf(bw, "  (on %s)", where)
		}
		fmt.Fprintln(bw)
		for _, d := range s.Diff {
			fmt.Fprintf(bw, "        %s\n", diffLine(s.Action, d))
		}
		if s.Note != "" {
			fmt.Fprintf(bw, "        # %s\n", s.Note)
		}
	}
	fmt.Fprintln(bw)
	fmt.Fprintln(bw, SummaryLine(p.Summary))
	return bw.Flush()
}

// stepHost names the executing host when the ID does not already start
// with it (cluster-wide steps).
func stepHost(s plan.PlannedStep) string {
	if s.Host == "" || strings.HasPrefix(s.ID, s.Host+"/") {
		return ""
	}
	return s.Host
}

func diffLine(a step.Action, d step.DiffLine) string {
	switch {
	case a == step.ActionDelete:
		return fmt.Sprintf("%s: %s", d.Key, d.From)
	case d.From == "" && a != step.ActionUpdate:
		return fmt.Sprintf("%s: %s", d.Key, d.To)
	default:
		from := d.From
		if from == "" {
			from = "(unset)"
		}
		return fmt.Sprintf("%s: %s -> %s", d.Key, from, d.To)
	}
}

// SummaryLine is the last line of every plan.
func SummaryLine(s plan.Summary) string {
	if s.Changes() == 0 {
		return fmt.Sprintf("No changes. %d steps up to date.", s.Unchanged)
	}
	return fmt.Sprintf("Plan: %d to add, %d to change, %d to remove, %d unchanged.", s.Add, s.Change, s.Remove, s.Unchanged)
}

// PlanJSON writes the plan as indented JSON; map keys are sorted by
// encoding/json and steps are in topological order, so output is stable.
func PlanJSON(w io.Writer, p *plan.Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}
