package dag

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// edge is from -> to: to depends on from.
type edge struct{ from, to string }

// build makes a graph of ids and edges, adding nodes and edges in the given
// order so tests can vary insertion order.
func build(t testing.TB, ids []string, edges []edge) *Graph[int] {
	t.Helper()
	g := New[int]()
	for k, id := range ids {
		if err := g.Add(id, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range edges {
		if err := g.Connect(e.from, e.to); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func TestAddAndConnectErrors(t *testing.T) {
	g := New[string]()
	if err := g.Add("a", "A"); err != nil {
		t.Fatal(err)
	}
	if err := g.Add("b", "B"); err != nil {
		t.Fatal(err)
	}
	err := g.Add("a", "again")
	if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("duplicate add: got %v", err)
	}
	if v, _ := g.Get("a"); v != "A" {
		t.Fatalf("duplicate add overwrote value: %q", v)
	}

	tests := []struct {
		name     string
		from, to string
		want     []string // substrings of the error; nil means no error
	}{
		{"ok", "a", "b", nil},
		{"repeat is no-op", "a", "b", nil},
		{"unknown from", "x", "b", []string{`unknown node: "x"`}},
		{"unknown to", "a", "y", []string{`unknown node: "y"`}},
		{"both unknown", "x", "y", []string{`"x", "y"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := g.Connect(tt.from, tt.to)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUnknown) {
				t.Fatalf("Connect error %v does not wrap ErrUnknown", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if g.Edges() != 1 {
		t.Errorf("Edges = %d, want 1 (repeated Connect must not add an edge)", g.Edges())
	}
}

func TestAccessors(t *testing.T) {
	g := build(t, []string{"c", "a", "b", "d"}, []edge{{"a", "c"}, {"b", "c"}, {"c", "d"}, {"a", "d"}})
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"IDs", g.IDs(), []string{"a", "b", "c", "d"}},
		{"Deps(c)", g.Deps("c"), []string{"a", "b"}},
		{"Deps(a)", g.Deps("a"), []string{}},
		{"Deps(unknown)", g.Deps("zz"), nil},
		{"Dependents(a)", g.Dependents("a"), []string{"c", "d"}},
		{"Dependents(d)", g.Dependents("d"), []string{}},
		{"Ancestors(d)", g.Ancestors("d"), []string{"a", "b", "c"}},
		{"Ancestors(a)", g.Ancestors("a"), []string{}},
		{"Descendants(b)", g.Descendants("b"), []string{"c", "d"}},
		{"Descendants(unknown)", g.Descendants("zz"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !slices.Equal(tt.got, tt.want) || (tt.got == nil) != (tt.want == nil) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
	if g.Len() != 4 {
		t.Errorf("Len = %d", g.Len())
	}
	if v, ok := g.Get("b"); !ok || v != 2 {
		t.Errorf("Get(b) = %v, %v", v, ok)
	}
	if _, ok := g.Get("zz"); ok {
		t.Error("Get(unknown) reported ok")
	}
}

func TestTopoOrder(t *testing.T) {
	tests := []struct {
		name  string
		ids   []string
		edges []edge
		want  []string
	}{
		{"empty", nil, nil, []string{}},
		{"single", []string{"a"}, nil, []string{"a"}},
		{"independent sorted by ID", []string{"c", "b", "a"}, nil, []string{"a", "b", "c"}},
		{"chain against ID order", []string{"a", "b", "c"}, []edge{{"c", "b"}, {"b", "a"}}, []string{"c", "b", "a"}},
		{
			"diamond",
			[]string{"top", "left", "right", "bottom"},
			[]edge{{"top", "left"}, {"top", "right"}, {"left", "bottom"}, {"right", "bottom"}},
			[]string{"top", "left", "right", "bottom"},
		},
		{
			// z becomes ready before b; the sorted ready set still emits b
			// first once both are ready.
			"ready set is sorted",
			[]string{"a", "z", "b", "y"},
			[]edge{{"a", "z"}, {"y", "b"}},
			[]string{"a", "y", "b", "z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := build(t, tt.ids, tt.edges)
			got, err := g.TopoOrder()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("TopoOrder = %v, want %v", got, tt.want)
			}
			checkTopo(t, g, got)
		})
	}
}

// checkTopo asserts order holds every node once and every edge forwards.
func checkTopo[T any](t testing.TB, g *Graph[T], order []string) {
	t.Helper()
	if len(order) != g.Len() {
		t.Fatalf("order has %d nodes, graph %d", len(order), g.Len())
	}
	pos := make(map[string]int, len(order))
	for k, id := range order {
		if _, dup := pos[id]; dup {
			t.Fatalf("%q twice in order", id)
		}
		pos[id] = k
	}
	for _, id := range order {
		for _, d := range g.Deps(id) {
			if pos[d] >= pos[id] {
				t.Fatalf("%q ordered before its dependency %q", id, d)
			}
		}
	}
}

// TestTopoOrderDeterministic builds the same random DAG with shuffled node
// and edge insertion orders; the topological order must not change.
func TestTopoOrderDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 300
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d/step-%03d", i%7, i)
	}
	var edges []edge
	for i := 1; i < n; i++ {
		for range rng.IntN(4) {
			j := rng.IntN(i)
			edges = append(edges, edge{ids[j], ids[i]}) // only backwards: acyclic
		}
	}
	var want []string
	for trial := range 20 {
		ids2, edges2 := slices.Clone(ids), slices.Clone(edges)
		rng.Shuffle(len(ids2), func(i, j int) { ids2[i], ids2[j] = ids2[j], ids2[i] })
		rng.Shuffle(len(edges2), func(i, j int) { edges2[i], edges2[j] = edges2[j], edges2[i] })
		g := build(t, ids2, edges2)
		got, err := g.TopoOrder()
		if err != nil {
			t.Fatal(err)
		}
		checkTopo(t, g, got)
		if trial == 0 {
			want = got
			continue
		}
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d: order differs from trial 0", trial)
		}
	}
}

func TestCycle(t *testing.T) {
	tests := []struct {
		name  string
		ids   []string
		edges []edge
		want  string
	}{
		{"self-loop", []string{"a", "b"}, []edge{{"a", "b"}, {"b", "b"}}, "dependency cycle: b -> b"},
		{"two-cycle", []string{"a", "b"}, []edge{{"b", "a"}, {"a", "b"}}, "dependency cycle: a -> b -> a"},
		{
			"long cycle starts at smallest ID",
			[]string{"e", "d", "c", "b", "a"},
			[]edge{{"c", "d"}, {"d", "e"}, {"e", "a"}, {"a", "b"}, {"b", "c"}},
			"dependency cycle: a -> b -> c -> d -> e -> a",
		},
		{
			// The acyclic part sorts first and drains; the cycle sits
			// downstream of it and has a tail of its own hanging off it.
			"cycle in part of the graph",
			[]string{"a", "b", "m", "n", "o", "p", "z"},
			[]edge{{"a", "b"}, {"b", "m"}, {"m", "n"}, {"n", "o"}, {"o", "m"}, {"o", "p"}, {"p", "z"}},
			"dependency cycle: m -> n -> o -> m",
		},
		{
			// The smallest stuck node (a) is only downstream of the cycle.
			"node downstream of cycle sorts first",
			[]string{"a", "x", "y"},
			[]edge{{"x", "y"}, {"y", "x"}, {"y", "a"}},
			"dependency cycle: x -> y -> x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := build(t, tt.ids, tt.edges)
			_, err := g.TopoOrder()
			var ce *CycleError
			if !errors.As(err, &ce) {
				t.Fatalf("TopoOrder error = %v, want *CycleError", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
			checkCycle(t, g, ce.Path)
			if err := g.Validate(); err == nil || err.Error() != tt.want {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// checkCycle asserts path is a real cycle of g.
func checkCycle[T any](t testing.TB, g *Graph[T], path []string) {
	t.Helper()
	if len(path) == 0 {
		t.Fatal("empty cycle")
	}
	for k, from := range path {
		to := path[(k+1)%len(path)]
		if !slices.Contains(g.Dependents(from), to) {
			t.Fatalf("cycle %v: no edge %q -> %q", path, from, to)
		}
	}
}

func BenchmarkTopoOrder10k(b *testing.B) {
	g := benchGraph(b, 100, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := g.TopoOrder(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(g.Len()), "ns/node")
}

func BenchmarkBuild10k(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchGraph(b, 100, 100)
	}
}

// benchGraph is hosts chains of steps, each step also depending on the
// previous step of the neighbouring host.
func benchGraph(b testing.TB, hosts, steps int) *Graph[int] {
	g := New[int]()
	id := func(h, s int) string { return fmt.Sprintf("node-%d/step-%d", h, s) }
	for h := range hosts {
		for s := range steps {
			if err := g.Add(id(h, s), h*steps+s); err != nil {
				b.Fatal(err)
			}
		}
	}
	for h := range hosts {
		for s := 1; s < steps; s++ {
			if err := g.Connect(id(h, s-1), id(h, s)); err != nil {
				b.Fatal(err)
			}
			if err := g.Connect(id((h+1)%hosts, s-1), id(h, s)); err != nil {
				b.Fatal(err)
			}
		}
	}
	return g
}

// FuzzTopoOrder builds a graph from bytes: the first byte picks the node
// count, every following pair is an edge. TopoOrder must either return a
// valid order or a real cycle, exactly when the graph has one, and the answer
// must not depend on insertion order.
func FuzzTopoOrder(f *testing.F) {
	f.Add([]byte{3, 0, 1, 1, 2})             // chain
	f.Add([]byte{3, 0, 1, 1, 2, 2, 0})       // 3-cycle
	f.Add([]byte{2, 1, 1})                   // self-loop
	f.Add([]byte{4, 0, 1, 0, 2, 1, 3, 2, 3}) // diamond
	f.Add([]byte{12, 0, 1, 5, 6, 6, 7, 7, 5, 7, 11, 2, 3})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		n := int(data[0])%40 + 1
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprint(i) // string order differs from numeric order
		}
		var edges []edge
		for k := 1; k+1 < len(data); k += 2 {
			edges = append(edges, edge{ids[int(data[k])%n], ids[int(data[k+1])%n]})
		}
		g := build(t, ids, edges)
		order, err := g.TopoOrder()
		acyclic := isAcyclic(g)
		if err == nil {
			if !acyclic {
				t.Fatal("TopoOrder found no cycle in a cyclic graph")
			}
			checkTopo(t, g, order)
		} else {
			var ce *CycleError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CycleError", err)
			}
			if acyclic {
				t.Fatalf("cycle %v reported in an acyclic graph", ce.Path)
			}
			checkCycle(t, g, ce.Path)
		}

		slices.Reverse(ids)
		slices.Reverse(edges)
		order2, err2 := build(t, ids, edges).TopoOrder()
		if !slices.Equal(order, order2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("insertion order changed the result: %v %v vs %v %v", order, err, order2, err2)
		}

		for _, e := range edges {
			if !slices.Contains(g.Descendants(e.from), e.to) && e.from != e.to {
				t.Fatalf("%q not among descendants of %q", e.to, e.from)
			}
			if !slices.Contains(g.Ancestors(e.to), e.from) && e.from != e.to {
				t.Fatalf("%q not among ancestors of %q", e.from, e.to)
			}
		}
	})
}

// isAcyclic is an independent check by colouring depth-first search.
func isAcyclic[T any](g *Graph[T]) bool {
	const (
		white = iota
		grey
		black
	)
	colour := map[string]int{}
	var visit func(string) bool
	visit = func(id string) bool {
		colour[id] = grey
		for _, d := range g.Dependents(id) {
			switch colour[d] {
			case grey:
				return false
			case white:
				if !visit(d) {
					return false
				}
			}
		}
		colour[id] = black
		return true
	}
	for _, id := range g.IDs() {
		if colour[id] == white && !visit(id) {
			return false
		}
	}
	return true
}
