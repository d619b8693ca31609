package render

import (
	"io"
	"strings"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/plan"
)

// GraphDOT writes the step graph with one Graphviz cluster per host.
func GraphDOT(w io.Writer, name string, g *plan.Graph) error {
	return g.DOT(w, dag.DOTOptions{
		Name:       name,
		GraphAttrs: map[string]string{"rankdir": "LR", "compound": "true"},
		Label: func(id string) string {
			// Inside a host's box the host prefix is noise.
			if i := strings.IndexByte(id, '/'); i >= 0 {
				return id[i+1:]
			}
			return id
		},
		Group: func(id string) string {
			if i := strings.IndexByte(id, '/'); i >= 0 {
				return id[:i]
			}
			return ""
		},
		NodeAttrs: func(id string) map[string]string { return map[string]string{"shape": "box"} },
	})
}
