package plan

import (
	"fmt"
	"path"
	"strings"

	"github.com/clusterctl/clusterctl/provision/dag"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Select keeps the steps that match an --only pattern (all when none is
// given) and no --skip pattern. A pattern matches a step by its ID
// ("h1/hostprep/sysctl", globs allowed: "*/hostprep/*"), by its kind
// ("hostprep/sysctl") or by a kind prefix ("hostprep", "kube"). Edges to
// dropped steps are dropped: the user vouches those are done.
func Select(g *Graph, only, skip []string) (*Graph, error) {
	for _, p := range append(append([]string{}, only...), skip...) {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("step pattern %q: %w", p, err)
		}
	}
	if len(only) == 0 && len(skip) == 0 {
		return g, nil
	}
	keep := map[string]bool{}
	out := dag.New[step.Step]()
	for _, id := range g.IDs() {
		s, _ := g.Get(id)
		if (len(only) == 0 || matchesAny(only, s)) && !matchesAny(skip, s) {
			keep[id] = true
			if err := out.Add(id, s); err != nil {
				return nil, err
			}
		}
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("no step matches --only %s", strings.Join(only, ","))
	}
	for id := range keep {
		for _, d := range g.Deps(id) {
			if keep[d] {
				if err := out.Connect(d, id); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func matchesAny(patterns []string, s step.Step) bool {
	kind := s.Op.Kind()
	for _, p := range patterns {
		if ok, _ := path.Match(p, s.ID); ok {
			return true
		}
		if ok, _ := path.Match(p, kind); ok {
			return true
		}
		if strings.HasPrefix(kind, p+"/") {
			return true
		}
	}
	return false
}
