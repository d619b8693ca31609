// Package dag is a generic directed graph keyed by string IDs: add, connect,
// cycle check with the cycle named, stable topological order and DOT output.
package dag

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Graph is a directed graph of values keyed by unique string IDs. An edge
// from -> to means "to depends on from". The zero value is not usable; call
// New. A Graph is not safe for concurrent mutation; concurrent reads are fine.
type Graph[T any] struct {
	index map[string]int
	ids   []string
	vals  []T
	out   [][]int // out[i]: nodes that depend on i
	in    [][]int // in[i]: nodes i depends on
	// edges dedupes Connect calls so repeated edges do not skew in-degrees.
	edges map[uint64]struct{}
}

// New returns an empty graph.
func New[T any]() *Graph[T] {
	return &Graph[T]{
		index: make(map[string]int),
		edges: make(map[uint64]struct{}),
	}
}

// ErrDuplicate is wrapped by Add when the ID is already present.
var ErrDuplicate = errors.New("duplicate node")

// ErrUnknown is wrapped by Connect when an endpoint is not in the graph.
var ErrUnknown = errors.New("unknown node")

// Add inserts a node. Adding an ID twice is an error so that two plan
// transformers cannot silently overwrite each other's step.
func (g *Graph[T]) Add(id string, v T) error {
	if _, ok := g.index[id]; ok {
		return fmt.Errorf("add node %q: %w", id, ErrDuplicate)
	}
	g.index[id] = len(g.ids)
	g.ids = append(g.ids, id)
	g.vals = append(g.vals, v)
	g.out = append(g.out, nil)
	g.in = append(g.in, nil)
	return nil
}

// Connect adds the edge from -> to: to depends on from. Connecting the same
// pair twice is a no-op. Self-loops are accepted here and reported as a
// cycle by Validate, so every kind of cycle surfaces in one place.
func (g *Graph[T]) Connect(from, to string) error {
	fi, fok := g.index[from]
	ti, tok := g.index[to]
	switch {
	case !fok && !tok:
		return fmt.Errorf("connect %q -> %q: %w: %q, %q", from, to, ErrUnknown, from, to)
	case !fok:
		return fmt.Errorf("connect %q -> %q: %w: %q", from, to, ErrUnknown, from)
	case !tok:
		return fmt.Errorf("connect %q -> %q: %w: %q", from, to, ErrUnknown, to)
	}
	key := uint64(fi)<<32 | uint64(ti)
	if _, ok := g.edges[key]; ok {
		return nil
	}
	g.edges[key] = struct{}{}
	g.out[fi] = append(g.out[fi], ti)
	g.in[ti] = append(g.in[ti], fi)
	return nil
}

// Get returns the value stored under id.
func (g *Graph[T]) Get(id string) (T, bool) {
	i, ok := g.index[id]
	if !ok {
		var zero T
		return zero, false
	}
	return g.vals[i], true
}

// Has reports whether id is in the graph.
func (g *Graph[T]) Has(id string) bool {
	_, ok := g.index[id]
	return ok
}

// Len is the number of nodes.
func (g *Graph[T]) Len() int { return len(g.ids) }

// Edges is the number of distinct edges.
func (g *Graph[T]) Edges() int { return len(g.edges) }

// IDs returns every node ID, sorted.
func (g *Graph[T]) IDs() []string {
	ids := slices.Clone(g.ids)
	slices.Sort(ids)
	return ids
}

// Deps returns the IDs id depends on (its direct predecessors), sorted.
// It returns nil for an unknown id.
func (g *Graph[T]) Deps(id string) []string {
	i, ok := g.index[id]
	if !ok {
		return nil
	}
	return g.names(g.in[i])
}

// Dependents returns the IDs that depend directly on id, sorted. It returns
// nil for an unknown id.
func (g *Graph[T]) Dependents(id string) []string {
	i, ok := g.index[id]
	if !ok {
		return nil
	}
	return g.names(g.out[i])
}

// Ancestors returns every node id transitively depends on, sorted, without
// id itself (even when id is on a cycle).
func (g *Graph[T]) Ancestors(id string) []string { return g.reach(id, g.in) }

// Descendants returns every node that transitively depends on id, sorted,
// without id itself.
func (g *Graph[T]) Descendants(id string) []string { return g.reach(id, g.out) }

// reach walks adj from id. The visited set is a map, not a []bool, so the
// cost is proportional to the answer rather than to the graph.
func (g *Graph[T]) reach(id string, adj [][]int) []string {
	start, ok := g.index[id]
	if !ok {
		return nil
	}
	seen := map[int]struct{}{start: {}}
	stack := []int{start}
	var found []int
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, m := range adj[n] {
			if _, ok := seen[m]; ok {
				continue
			}
			seen[m] = struct{}{}
			found = append(found, m)
			stack = append(stack, m)
		}
	}
	return g.names(found)
}

func (g *Graph[T]) names(idx []int) []string {
	if len(idx) == 0 {
		return []string{}
	}
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = g.ids[i]
	}
	slices.Sort(out)
	return out
}

// CycleError names one dependency cycle, in edge order.
type CycleError struct {
	// Path lists the nodes on the cycle, starting at its smallest ID; each
	// node is followed by one that depends on it, and the last is followed
	// by the first again.
	Path []string
}

func (e *CycleError) Error() string {
	var b strings.Builder
	b.WriteString("dependency cycle: ")
	for _, id := range e.Path {
		b.WriteString(id)
		b.WriteString(" -> ")
	}
	if len(e.Path) > 0 {
		b.WriteString(e.Path[0])
	}
	return b.String()
}

// Validate returns a *CycleError if the graph has a cycle.
func (g *Graph[T]) Validate() error {
	_, err := g.TopoOrder()
	return err
}

// TopoOrder returns every ID with each node after all of its dependencies.
// Among nodes that are ready at the same time the smallest ID comes first,
// so the order depends only on the graph, never on insertion order or map
// iteration. On a cycle it returns a *CycleError.
func (g *Graph[T]) TopoOrder() ([]string, error) {
	order, err := g.topo()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(order))
	for k, i := range order {
		out[k] = g.ids[i]
	}
	return out, nil
}

// topo is Kahn's algorithm with a min-heap as the ready set: O((V+E) log V).
func (g *Graph[T]) topo() ([]int, error) {
	n := len(g.ids)
	rank := g.ranks()
	indeg := make([]int, n)
	h := readyHeap{rank: rank}
	for i := range n {
		indeg[i] = len(g.in[i])
		if indeg[i] == 0 {
			h.push(i)
		}
	}
	order := make([]int, 0, n)
	for len(h.items) > 0 {
		i := h.pop()
		order = append(order, i)
		for _, j := range g.out[i] {
			indeg[j]--
			if indeg[j] == 0 {
				h.push(j)
			}
		}
	}
	if len(order) < n {
		return nil, g.cycle(indeg, rank)
	}
	return order, nil
}

// ranks maps each node index to its position in sorted ID order, so the heap
// compares ints instead of strings.
func (g *Graph[T]) ranks() []int {
	n := len(g.ids)
	byID := make([]int, n)
	for i := range byID {
		byID[i] = i
	}
	slices.SortFunc(byID, func(a, b int) int { return strings.Compare(g.ids[a], g.ids[b]) })
	rank := make([]int, n)
	for r, i := range byID {
		rank[i] = r
	}
	return rank
}

// cycle finds one cycle among the nodes Kahn's algorithm could not emit
// (indeg > 0). Each such node has at least one unemitted dependency, so
// walking backwards along the smallest such dependency must revisit a node;
// the revisited stretch is a cycle. Choosing the smallest node and smallest
// dependency makes the reported cycle deterministic.
func (g *Graph[T]) cycle(indeg, rank []int) *CycleError {
	start := -1
	for i, d := range indeg {
		if d > 0 && (start < 0 || rank[i] < rank[start]) {
			start = i
		}
	}
	pos := make(map[int]int)
	var walk []int
	cur := start
	for {
		if p, ok := pos[cur]; ok {
			walk = walk[p:]
			break
		}
		pos[cur] = len(walk)
		walk = append(walk, cur)
		next := -1
		for _, d := range g.in[cur] {
			if indeg[d] > 0 && (next < 0 || rank[d] < rank[next]) {
				next = d
			}
		}
		cur = next
	}
	// walk follows edges backwards; reverse it into edge order and rotate
	// so the cycle starts at its smallest ID.
	slices.Reverse(walk)
	low := 0
	for k, i := range walk {
		if rank[i] < rank[walk[low]] {
			low = k
		}
	}
	path := make([]string, 0, len(walk))
	for k := range walk {
		path = append(path, g.ids[walk[(low+k)%len(walk)]])
	}
	return &CycleError{Path: path}
}

// readyHeap is a binary min-heap of node indexes ordered by rank. It is
// hand-rolled to avoid container/heap's interface boxing on every push.
type readyHeap struct {
	items []int
	rank  []int
}

func (h *readyHeap) push(i int) {
	h.items = append(h.items, i)
	k := len(h.items) - 1
	for k > 0 {
		p := (k - 1) / 2
		if h.rank[h.items[p]] <= h.rank[h.items[k]] {
			break
		}
		h.items[p], h.items[k] = h.items[k], h.items[p]
		k = p
	}
}

func (h *readyHeap) pop() int {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	k := 0
	for {
		l := 2*k + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && h.rank[h.items[r]] < h.rank[h.items[l]] {
			m = r
		}
		if h.rank[h.items[k]] <= h.rank[h.items[m]] {
			break
		}
		h.items[k], h.items[m] = h.items[m], h.items[k]
		k = m
	}
	return top
}
