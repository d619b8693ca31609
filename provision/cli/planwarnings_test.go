package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Warnings found while opening a session (hosts waiting for
// --remove-hosts, a record that could not be read) are printed to stderr
// as before and kept in the plan, redacted, so the JSON and markdown plans
// show them too.
func TestSessionWarningsReachThePlan(t *testing.T) {
	red := host.NewRedactor()
	red.Add("s3cr3t-pass")
	s := &session{c: testSpec(t, oneCPSpec), graph: dag.New[step.Step](), redactor: red, runner: &hostRunner{}}
	var stderr bytes.Buffer
	warn := s.warner(&stderr)
	warn(pendingRemovals([]string{"old"}))
	warn("could not read the cluster's record of its last apply (h1: sudo -S with s3cr3t-pass failed)")

	if got := stderr.String(); !strings.HasPrefix(got, "warning: host old left the spec but the cluster's record") ||
		!strings.Contains(got, "\nwarning: could not read the cluster's record of its last apply (h1: sudo -S with *** failed)\n") {
		t.Errorf("stderr:\n%s", got)
	}
	p, err := s.plan(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{pendingRemovals([]string{"old"}), "could not read the cluster's record of its last apply (h1: sudo -S with *** failed)"}
	if !slices.Equal(p.Warnings, want) {
		t.Errorf("plan warnings %q, want %q", p.Warnings, want)
	}
	var md, js bytes.Buffer
	if err := render.PlanMarkdown(&md, p); err != nil {
		t.Fatal(err)
	}
	if err := render.PlanJSON(&js, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "then pass --remove-hosts old") || !strings.Contains(js.String(), `"warnings": [`) {
		t.Errorf("the pending removal is missing from the plan:\n%s\n%s", md.String(), js.String())
	}
	if strings.Contains(md.String()+js.String(), "s3cr3t-pass") {
		t.Error("a secret reached the plan")
	}
}
