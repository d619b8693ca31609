package plan_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
)

// etcHostsStep is host's /etc/hosts step in p, or nil.
func etcHostsStep(p *plan.Plan, host string) *plan.PlannedStep {
	for i, s := range p.Steps {
		if s.ID == host+"/hostprep/etc-hosts" {
			return &p.Steps[i]
		}
	}
	return nil
}

func entryNames(s *plan.PlannedStep) string {
	var names []string
	for _, e := range s.Params.(hostprep.EtcHosts).Entries {
		names = append(names, e.Name)
	}
	return strings.Join(names, " ")
}

// hostPrep.etcHosts decides each host's block; node-0..2 are the control
// planes of a 10-host cluster.
func TestEtcHostsModes(t *testing.T) {
	for _, tc := range []struct {
		mode, want string
		action     step.Action
		absent     bool
	}{
		{mode: "", want: "node-0 node-1 node-2 node-3 node-4 node-5 node-6 node-7 node-8 node-9", action: step.ActionCreate},
		{mode: `"all"`, want: "node-0 node-1 node-2 node-3 node-4 node-5 node-6 node-7 node-8 node-9", action: step.ActionCreate},
		{mode: `"control-planes"`, want: "node-0 node-1 node-2 node-5", action: step.ActionCreate},
		{mode: `"none"`, want: "", action: step.ActionNone},
		{mode: `"unmanaged"`, absent: true},
		{mode: `false`, absent: true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			extra := ""
			if tc.mode != "" {
				extra = "hostPrep: etcHosts: " + tc.mode
			}
			c, err := spec.Load([]string{writeSpecWith(t, 10, extra)}, spec.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, p := offline(t, c)
			s := etcHostsStep(p, "node-5")
			if tc.absent {
				if s != nil {
					t.Fatalf("node-5 has an /etc/hosts step: %+v", s)
				}
				return
			}
			if s == nil {
				t.Fatal("node-5 has no /etc/hosts step")
			}
			if got := entryNames(s); got != tc.want {
				t.Errorf("node-5's block = %q, want %q", got, tc.want)
			}
			if s.Action != tc.action {
				t.Errorf("offline action = %s, want %s", s.Action, tc.action)
			}
		})
	}
}

// The 1,000-host plan stays linear: its JSON is under 20 MB (it was 100 MB
// when every host's /etc/hosts step listed every host), and the /etc/hosts
// step's params are a digest.
func TestLargePlanJSONSize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 1,000-host plan")
	}
	c, err := spec.Load([]string{writeSpec(t, 1000)}, spec.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, p := offline(t, c)
	var buf bytes.Buffer
	if err := render.PlanJSON(&buf, p); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 20<<20 {
		t.Errorf("JSON plan of 1000 hosts is %d bytes, want under 20 MB", buf.Len())
	}
	params, _ := json.Marshal(etcHostsStep(p, "node-7").Params)
	if len(params) > 300 || !strings.Contains(string(params), `"count":1000`) {
		t.Errorf("node-7's /etc/hosts params = %.300s (%d bytes), want a count and sha256", params, len(params))
	}
}
