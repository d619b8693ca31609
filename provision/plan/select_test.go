package plan_test

import (
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/plan"
)

func TestSelect(t *testing.T) {
	g, _ := offline(t, load(t, "local"))
	cases := []struct {
		only, skip []string
		want       int
		has, lacks string
	}{
		{nil, nil, g.Len(), "h1/kube/init", ""},
		{[]string{"hostprep", "runtime"}, nil, 30, "h2/runtime/containerd", "h1/kube/install"},
		{[]string{"*/hostprep/sysctl"}, nil, 3, "h3/hostprep/sysctl", "h3/hostprep/swap"},
		{[]string{"hostprep"}, []string{"hostprep/time-sync", "h1/*/*"}, 16, "h2/hostprep/swap", "h1/hostprep/swap"},
	}
	for _, c := range cases {
		s, err := plan.Select(g, c.only, c.skip)
		if err != nil {
			t.Fatal(err)
		}
		if s.Len() != c.want {
			t.Errorf("only %v skip %v: %d steps, want %d", c.only, c.skip, s.Len(), c.want)
		}
		if !s.Has(c.has) || (c.lacks != "" && s.Has(c.lacks)) {
			t.Errorf("only %v skip %v: has %s=%v lacks %s=%v", c.only, c.skip, c.has, s.Has(c.has), c.lacks, s.Has(c.lacks))
		}
		if _, err := s.TopoOrder(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := plan.Select(g, []string{"nothing"}, nil); err == nil || !strings.Contains(err.Error(), "no step matches") {
		t.Fatalf("no match: %v", err)
	}
	if _, err := plan.Select(g, []string{"[bad"}, nil); err == nil {
		t.Fatal("a malformed pattern was accepted")
	}
}
