package plan_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/step"
)

func TestResetScope(t *testing.T) {
	ha := load(t, "ha") // cp1..cp3, w1..w3
	for _, tc := range []struct {
		name   string
		hosts  []string
		whole  bool
		via    string
		err    error
		errMsg string
		warns  []string
	}{
		{name: "all", whole: true},
		{name: "all named", hosts: []string{"w3", "cp1", "cp2", "cp3", "w1", "w2"}, whole: true},
		{name: "one worker", hosts: []string{"w2"}, via: "cp1", warns: []string{"Node objects of w2 are deleted through cp1"}},
		{name: "one control plane", hosts: []string{"cp2"}, via: "cp1", warns: []string{"control plane cp2 leaves", "2 of 3 control planes stay"}},
		{name: "first control plane", hosts: []string{"cp1"}, via: "cp2", warns: []string{"cp1 is the spec's first control plane", "deleted through cp2"}},
		{name: "two of three", hosts: []string{"cp1", "cp3"}, err: plan.ErrQuorum, errMsg: "reset of control plane cp1, cp3: 1 of 3 etcd members would stay, a quorum needs 2"},
		{name: "every control plane, not the workers", hosts: []string{"cp1", "cp2", "cp3"}, err: plan.ErrQuorum},
		{name: "unknown", hosts: []string{"w9"}, errMsg: "reset: no host w9 in the spec (hosts: cp1, cp2, cp3, w1, w2, w3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := plan.NewResetScope(ha, tc.hosts)
			if tc.err != nil || tc.errMsg != "" {
				if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) || !strings.Contains(err.Error(), tc.errMsg) {
					t.Fatalf("error %v, want %v %q", err, tc.err, tc.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Whole != tc.whole || s.Via != tc.via {
				t.Errorf("whole %v via %q, want %v %q", s.Whole, s.Via, tc.whole, tc.via)
			}
			all := strings.Join(s.Warnings, "\n")
			for _, w := range tc.warns {
				if !strings.Contains(all, w) {
					t.Errorf("warnings lack %q:\n%s", w, all)
				}
			}
			if tc.whole && len(s.Warnings) > 0 {
				t.Errorf("whole reset warns: %s", all)
			}
		})
	}
}

// The order: workers together, control planes one by one, the first last;
// Node objects deleted after their host's reset when the cluster stays.
func TestResetGraph(t *testing.T) {
	ha := load(t, "ha")
	s, err := plan.NewResetScope(ha, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := plan.BuildResetGraph(ha, s)
	if err != nil {
		t.Fatal(err)
	}
	deps := func(id string) string { return strings.Join(g.Deps(id), ",") }
	for id, want := range map[string]string{
		"w1/kube/reset":  "",
		"w3/kube/reset":  "",
		"cp3/kube/reset": "w1/kube/reset,w2/kube/reset,w3/kube/reset",
		"cp2/kube/reset": "cp3/kube/reset",
		"cp1/kube/reset": "cp2/kube/reset",
	} {
		if got := deps(id); got != want {
			t.Errorf("%s depends on %q, want %q", id, got, want)
		}
	}
	if n := len(g.IDs()); n != 6 {
		t.Errorf("%d steps, want 6: %v", n, g.IDs())
	}
	// Offline, as the ops themselves see it (plan.Offline assumes creation).
	check := func(ctx context.Context, s step.Step) (step.Change, error) {
		return s.Op.Check(ctx, step.Target{})
	}
	p, err := plan.Make(context.Background(), ha, g, check, true)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := render.PlanText(&b, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "6 to remove") {
		t.Errorf("plan:\n%s", b.String())
	}

	s, err = plan.NewResetScope(ha, []string{"cp2", "w1"})
	if err != nil {
		t.Fatal(err)
	}
	g, err = plan.BuildResetGraph(ha, s)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		"w1/kube/reset":                "",
		"cp2/kube/reset":               "w1/kube/reset",
		"cluster/kube/delete-node/w1":  "w1/kube/reset",
		"cluster/kube/delete-node/cp2": "cp2/kube/reset",
	} {
		if got := deps(id); got != want {
			t.Errorf("%s depends on %q, want %q", id, got, want)
		}
	}
	st, _ := g.Get("cluster/kube/delete-node/cp2")
	if st.Host != "cp1" {
		t.Errorf("delete-node runs on %s, want cp1", st.Host)
	}
	st, _ = g.Get("cp2/kube/reset")
	if op, _ := json.Marshal(st.Op); !strings.Contains(string(op), `"removeEtcdMember":true`) {
		t.Errorf("a control plane leaving a living cluster keeps its etcd member: %s", op)
	}
}
