package plan_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
)

// writeSpec generates a cluster of n hosts: 3 control planes (1 below 10
// hosts), the rest workers, each with labels and one override, so every
// pattern constraint in the schema is exercised per host.
func writeSpec(tb testing.TB, n int) string {
	tb.Helper()
	return writeSpecWith(tb, n, "")
}

// writeSpecWith is writeSpec with extra fields of the cluster, e.g.
// `hostPrep: etcHosts: "none"`.
func writeSpecWith(tb testing.TB, n int, extra string) string {
	tb.Helper()
	dir := tb.TempDir()
	var b strings.Builder
	b.WriteString("package clusterctl\n\ncluster: {\n\tname: \"gen\"\n\tkubernetes: {version: \"1.37.2\"")
	cps := 1
	if n >= 10 {
		cps = 3
		b.WriteString(", controlPlaneEndpoint: address: \"10.0.0.1\"")
	}
	b.WriteString("}\n")
	if extra != "" {
		b.WriteString("\t" + extra + "\n")
	}
	b.WriteString("\thosts: {\n")
	for i := 0; i < n; i++ {
		role := "worker"
		if i < cps {
			role = "control-plane"
		}
		fmt.Fprintf(&b, "\t\t\"node-%d\": {address: \"10.%d.%d.%d\", roles: [%q], labels: \"pool\": \"p%d\", hostPrep: sysctl: \"vm.max_map_count\": \"262144\"}\n",
			i, 1+i/65536, (i/256)%256, i%256, role, i%4)
	}
	b.WriteString("\t}\n}\n")
	if err := os.WriteFile(filepath.Join(dir, "cluster.cue"), []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// countingWriter counts the bytes written to it and keeps none.
type countingWriter int

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}

// BenchmarkPlanOffline measures the whole offline pipeline a user runs:
// load and validate the CUE spec, build the graph, check, render as text
// and as JSON (`plan -o json`), reporting the JSON's size.
func BenchmarkPlanOffline(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			dir := writeSpec(b, n)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c, err := spec.Load([]string{dir}, spec.LoadOptions{})
				if err != nil {
					b.Fatal(err)
				}
				g, err := plan.BuildGraph(c)
				if err != nil {
					b.Fatal(err)
				}
				p, err := plan.Make(context.Background(), c, g, plan.Offline, true)
				if err != nil {
					b.Fatal(err)
				}
				if err := render.PlanText(io.Discard, p); err != nil {
					b.Fatal(err)
				}
				var js countingWriter
				if err := render.PlanJSON(&js, p); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(len(p.Steps)), "steps")
				b.ReportMetric(float64(js), "json-bytes")
			}
		})
	}
}

// TestGeneratedSpecs keeps the benchmark's inputs valid.
func TestGeneratedSpecs(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		c, err := spec.Load([]string{writeSpec(t, n)}, spec.LoadOptions{})
		if err != nil {
			t.Fatalf("%d hosts: %v", n, err)
		}
		if len(c.Hosts) != n {
			t.Fatalf("%d hosts decoded, want %d", len(c.Hosts), n)
		}
	}
}
