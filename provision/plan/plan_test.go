package plan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
)

// -update rewrites golden files (read by hosttest.AssertGolden).
var _ = flag.Bool("update", false, "rewrite golden files")

var inventories = []string{"local", "ha", "airgap", "k3s"}

func load(t testing.TB, name string) *spec.Cluster {
	t.Helper()
	c, err := spec.Load([]string{filepath.Join("..", "..", "inventories", name)}, spec.LoadOptions{})
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return c
}

func offline(t testing.TB, c *spec.Cluster) (*plan.Graph, *plan.Plan) {
	t.Helper()
	g, err := plan.BuildGraph(c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Make(context.Background(), c, g, plan.Offline, true)
	if err != nil {
		t.Fatal(err)
	}
	return g, p
}

// The text, JSON and markdown plans of every inventory match their golden
// files, and two runs produce the same bytes.
func TestOfflinePlanGolden(t *testing.T) {
	for _, inv := range inventories {
		t.Run(inv, func(t *testing.T) {
			var outs [2][3]bytes.Buffer
			for run := 0; run < 2; run++ {
				_, p := offline(t, load(t, inv))
				if err := render.PlanText(&outs[run][0], p); err != nil {
					t.Fatal(err)
				}
				if err := render.PlanJSON(&outs[run][1], p); err != nil {
					t.Fatal(err)
				}
				if err := render.PlanMarkdown(&outs[run][2], p); err != nil {
					t.Fatal(err)
				}
			}
			for i, ext := range []string{"txt", "json", "md"} {
				if !bytes.Equal(outs[0][i].Bytes(), outs[1][i].Bytes()) {
					t.Errorf("%s plan differs between two runs", ext)
				}
				hosttest.AssertGolden(t, filepath.Join("testdata", inv+".plan."+ext), outs[0][i].String())
			}
		})
	}
}

// The graph encodes the orderings a cluster build needs.
func TestGraphOrdering(t *testing.T) {
	g, _ := offline(t, load(t, "ha"))
	before, independent := ordering(t, g)
	before("cp1/hostprep/kernel-modules", "cp1/hostprep/sysctl")
	before("cp1/hostprep/sysctl", "cp1/runtime/containerd")
	before("cp1/runtime/containerd", "cp1/kube/install")
	before("cp1/kube/install", "cp1/kube/init")
	// Control planes join one at a time, after the first initialised.
	before("cp1/kube/init", "cp2/kube/join-control-plane")
	before("cp2/kube/join-control-plane", "cp3/kube/join-control-plane")
	// Workers join in parallel, once the first control plane is up.
	before("cp1/kube/init", "w1/kube/join-worker")
	independent("w1/kube/join-worker", "w2/kube/join-worker")
	independent("w1/kube/join-worker", "cp2/kube/join-control-plane")
	// Host preparation runs in parallel across hosts.
	independent("cp1/hostprep/sysctl", "w3/hostprep/sysctl")
	before("cluster/addons/cni", "cluster/addons/manifest/ingress")
	before("w3/kube/join-worker", "cluster/addons/manifest/ingress")
	before("cluster/addons/manifest/ingress", "cluster/addons/health")
	// clusterctl's join secrets go once init and every join are done.
	for _, join := range []string{"cp1/kube/init", "cp2/kube/join-control-plane", "cp3/kube/join-control-plane", "w1/kube/join-worker", "w2/kube/join-worker", "w3/kube/join-worker"} {
		before(join, "cluster/kube/join-secrets")
	}
	independent("cluster/kube/join-secrets", "cluster/addons/manifest/ingress")

	order, err := g.TopoOrder()
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != g.Len() {
		t.Fatalf("topological order has %d of %d steps", len(order), g.Len())
	}
}

// Per-host overrides reach only their host.
func TestHostOverrides(t *testing.T) {
	_, p := offline(t, load(t, "ha"))
	var w3, w2 string
	for _, s := range p.Steps {
		js, err := json.Marshal(s.Params)
		if err != nil {
			t.Fatal(err)
		}
		switch s.ID {
		case "w3/hostprep/sysctl":
			w3 = string(js)
		case "w2/hostprep/sysctl":
			w2 = string(js)
		}
	}
	if !strings.Contains(w3, `"vm.max_map_count":"262144"`) || !strings.Contains(w3, `"net.ipv4.conf.all.rp_filter":"1"`) {
		t.Errorf("w3 sysctl lacks its override or the cluster value: %s", w3)
	}
	if strings.Contains(w2, "vm.max_map_count") {
		t.Errorf("w2 got w3's override: %s", w2)
	}
}

// The DOT output is accepted by Graphviz itself.
func TestGraphDOTRendersWithGraphviz(t *testing.T) {
	dot, err := exec.LookPath("dot")
	if err != nil {
		t.Skip("graphviz (dot) is not installed; .ci/run installs it, and provision/dag's own parser test covers DOT syntax")
	}
	for _, inv := range inventories {
		c := load(t, inv)
		g, _ := offline(t, c)
		var buf bytes.Buffer
		if err := render.GraphDOT(&buf, c.Name, g); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(dot, "-Tsvg")
		cmd.Stdin = &buf
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || !bytes.Contains(out, []byte("<svg")) {
			t.Errorf("%s: dot rejected the graph: %v\n%s", inv, err, stderr.String())
		}
	}
}

// ordering gives checks of g's order: before(a, b) fails t unless a runs
// before b; independent(a, b) fails t unless they can run in parallel.
func ordering(t *testing.T, g *plan.Graph) (before, independent func(a, b string)) {
	before = func(a, b string) {
		t.Helper()
		if !slices.Contains(g.Ancestors(b), a) {
			t.Errorf("%s must run before %s", a, b)
		}
	}
	independent = func(a, b string) {
		t.Helper()
		if slices.Contains(append(g.Ancestors(b), g.Descendants(b)...), a) {
			t.Errorf("%s and %s must be able to run in parallel", a, b)
		}
	}
	return before, independent
}
