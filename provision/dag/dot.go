package dag

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// DOTOptions shapes the Graphviz output of Graph.DOT. Callbacks receive the
// node ID; callers close over the graph to look values up.
type DOTOptions struct {
	// Name is the digraph's name; empty means "G".
	Name string
	// GraphAttrs are graph-level attributes such as rankdir.
	GraphAttrs map[string]string
	// Label returns a node's label; nil or "" means the ID itself.
	Label func(id string) string
	// NodeAttrs returns extra attributes for a node (shape, color...). A
	// "label" key here overrides Label.
	NodeAttrs func(id string) map[string]string
	// Group puts nodes into Graphviz clusters ("subgraph cluster_x"), e.g.
	// by host name. Nodes in group "" stay at the top level.
	Group func(id string) string
}

// DOT writes the graph in Graphviz DOT syntax. Every identifier is quoted,
// so IDs may contain any characters; output is sorted so it diffs cleanly.
func (g *Graph[T]) DOT(w io.Writer, opts DOTOptions) error {
	bw := bufio.NewWriter(w)
	name := opts.Name
	if name == "" {
		name = "G"
	}
	fmt.Fprintf(bw, "digraph %s {\n", quoteDOT(name))
	for _, k := range sortedKeys(opts.GraphAttrs) {
		fmt.Fprintf(bw, "\t%s=%s;\n", quoteDOT(k), quoteDOT(opts.GraphAttrs[k]))
	}

	ids := g.IDs()
	groups := map[string][]string{}
	var top []string
	for _, id := range ids {
		grp := ""
		if opts.Group != nil {
			grp = opts.Group(id)
		}
		if grp == "" {
			top = append(top, id)
			continue
		}
		groups[grp] = append(groups[grp], id)
	}
	for _, id := range top {
		writeNode(bw, "\t", id, opts)
	}
	for _, grp := range sortedKeys(groups) {
		// Graphviz draws a box only for subgraphs whose name starts with
		// "cluster"; the quoted name keeps arbitrary group names valid.
		fmt.Fprintf(bw, "\tsubgraph %s {\n\t\tlabel=%s;\n", quoteDOT("cluster_"+grp), quoteDOT(grp))
		for _, id := range groups[grp] {
			writeNode(bw, "\t\t", id, opts)
		}
		fmt.Fprint(bw, "\t}\n")
	}
	for _, id := range ids {
		i := g.index[id]
		for _, to := range g.names(g.out[i]) {
			fmt.Fprintf(bw, "\t%s -> %s;\n", quoteDOT(id), quoteDOT(to))
		}
	}
	fmt.Fprint(bw, "}\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write dot: %w", err)
	}
	return nil
}

func writeNode(w *bufio.Writer, indent, id string, opts DOTOptions) {
	attrs := map[string]string{}
	if opts.NodeAttrs != nil {
		for k, v := range opts.NodeAttrs(id) {
			attrs[k] = v
		}
	}
	if _, ok := attrs["label"]; !ok {
		label := ""
		if opts.Label != nil {
			label = opts.Label(id)
		}
		if label == "" {
			// An explicit label: the default (\N) would show the escaped
			// node name, with backslashes doubled.
			label = id
		}
		attrs["label"] = label
	}
	// A bufio.Writer keeps its first error until Flush, which WriteDOT checks.
	fmt.Fprint(w, indent, quoteDOT(id), " [")
	for k, key := range sortedKeys(attrs) {
		if k > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprint(w, quoteDOT(key), "=", quoteDOT(attrs[key]))
	}
	fmt.Fprint(w, "];\n")
}

// quoteDOT returns s as a DOT double-quoted string. The mapping is
// injective: backslash and quote are escaped, newline and carriage return
// become \n and \r (line breaks in labels), and other control characters and
// invalid UTF-8 bytes become \xNN so Graphviz never sees raw binary.
func quoteDOT(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
