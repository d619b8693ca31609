package dag

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hostileIDs are node IDs that break naive DOT writers.
var hostileIDs = []string{
	"node-1/hostprep/sysctl",
	`quote"inside`,
	`trailing\`,
	`back\slash`,
	`\"`,
	"new\nline",
	"tab\there",
	"ctl\x01\x7f",
	"bad utf8 \xff\xfe",
	"snow ☃ man",
	"-> {} [] ; = ,",
	"subgraph",
	"",
}

func TestDOTParsesBack(t *testing.T) {
	g := New[string]()
	for _, id := range hostileIDs {
		if err := g.Add(id, "v:"+id); err != nil {
			t.Fatal(err)
		}
	}
	var edges [][2]string
	for k := 1; k < len(hostileIDs); k++ {
		e := [2]string{hostileIDs[k-1], hostileIDs[k]}
		edges = append(edges, e)
		if err := g.Connect(e[0], e[1]); err != nil {
			t.Fatal(err)
		}
	}
	group := func(id string) string {
		if host, _, ok := strings.Cut(id, "/"); ok {
			return host
		}
		if strings.Contains(id, "\\") {
			return `group "\ odd`
		}
		return ""
	}
	opts := DOTOptions{
		Name:       `plan "x"`,
		GraphAttrs: map[string]string{"rankdir": "LR"},
		Label: func(id string) string {
			if id == "subgraph" {
				return "custom\nlabel"
			}
			return ""
		},
		NodeAttrs: func(id string) map[string]string {
			if id == "snow ☃ man" {
				return map[string]string{"shape": "box", "color": `"red"`}
			}
			return nil
		},
		Group: group,
	}
	var buf bytes.Buffer
	if err := g.DOT(&buf, opts); err != nil {
		t.Fatal(err)
	}
	p, err := parseDOT(buf.String())
	if err != nil {
		t.Fatalf("parse DOT: %v\n%s", err, buf.String())
	}

	if p.name != opts.Name || p.graphAttrs["rankdir"] != "LR" {
		t.Errorf("graph name %q attrs %v", p.name, p.graphAttrs)
	}
	var gotIDs []string
	for id := range p.nodes {
		gotIDs = append(gotIDs, id)
	}
	slices.Sort(gotIDs)
	if !slices.Equal(gotIDs, g.IDs()) {
		t.Fatalf("parsed nodes %q, want %q", gotIDs, g.IDs())
	}
	for _, id := range hostileIDs {
		n := p.nodes[id]
		if want := group(id); n.group != want {
			t.Errorf("node %q in group %q, want %q", id, n.group, want)
		}
		wantLabel := id
		if id == "subgraph" {
			wantLabel = "custom\nlabel"
		}
		if n.attrs["label"] != wantLabel {
			t.Errorf("node %q label %q, want %q", id, n.attrs["label"], wantLabel)
		}
	}
	if a := p.nodes["snow ☃ man"].attrs; a["shape"] != "box" || a["color"] != `"red"` {
		t.Errorf("node attrs = %v", a)
	}
	slices.SortFunc(edges, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	slices.SortFunc(p.edges, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	if !slices.Equal(p.edges, edges) {
		t.Errorf("parsed edges %q, want %q", p.edges, edges)
	}

	t.Run("graphviz", func(t *testing.T) {
		runGraphviz(t, buf.Bytes())
	})
}

// TestDOTGraphvizLarge feeds a clustered 2,500-node graph to Graphviz's parser
// (-Tcanon skips layout, which would be slow at this size).
func TestDOTGraphvizLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large graph in -short mode")
	}
	g := benchGraph(t, 50, 50)
	var buf bytes.Buffer
	err := g.DOT(&buf, DOTOptions{Group: func(id string) string { h, _, _ := strings.Cut(id, "/"); return h }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDOT(buf.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.nodes) != g.Len() || len(p.edges) != g.Edges() {
		t.Fatalf("parsed %d nodes %d edges, want %d %d", len(p.nodes), len(p.edges), g.Len(), g.Edges())
	}
	dot := graphviz(t)
	cmd := exec.Command(dot, "-Tcanon")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dot -Tcanon: %v\n%s", err, tail(out))
	}
}

func TestDOTWriteError(t *testing.T) {
	g := build(t, []string{"a", "b"}, []edge{{"a", "b"}})
	errBroken := errors.New("broken pipe")
	err := g.DOT(failWriter{errBroken}, DOTOptions{})
	if !errors.Is(err, errBroken) {
		t.Fatalf("DOT error = %v, want wrapped %v", err, errBroken)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

// FuzzQuoteDOT checks that any string survives quoting and parsing back.
func FuzzQuoteDOT(f *testing.F) {
	for _, id := range hostileIDs {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := quoteDOT(s)
		toks, err := lexDOT(q)
		if err != nil {
			t.Fatalf("lex %q: %v", q, err)
		}
		if len(toks) != 1 || !toks[0].quoted || toks[0].text != s {
			t.Fatalf("quoteDOT(%q) = %s lexed back as %#v", s, q, toks)
		}
	})
}

func graphviz(t *testing.T) string {
	t.Helper()
	dot, err := exec.LookPath("dot")
	if err != nil {
		t.Skip("graphviz 'dot' binary not found in PATH; install graphviz to check DOT output with the real parser")
	}
	return dot
}

func runGraphviz(t *testing.T, src []byte) {
	dot := graphviz(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "g.dot")
	if err := os.WriteFile(in, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(dot, "-Tsvg", "-o", filepath.Join(dir, "g.svg"), in).CombinedOutput()
	if err != nil {
		t.Fatalf("dot -Tsvg: %v\n%s\ninput:\n%s", err, out, src)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "g.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svg, []byte("<svg")) || !bytes.Contains(svg, []byte(`class="cluster"`)) {
		t.Fatalf("svg lacks the expected cluster:\n%s", tail(svg))
	}
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

// --- a small DOT parser: enough of the grammar to read what DOT writes ---

type dotToken struct {
	text   string
	quoted bool
}

type dotNode struct {
	group string
	attrs map[string]string
}

type parsedDOT struct {
	name       string
	graphAttrs map[string]string
	nodes      map[string]dotNode
	edges      [][2]string
}

// lexDOT splits src into tokens, undoing quoteDOT's escapes in quoted
// strings. Unquoted tokens are punctuation or bare identifiers.
func lexDOT(src string) ([]dotToken, error) {
	var toks []dotToken
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"':
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, errors.New("unterminated string")
				}
				c := src[i]
				if c == '\n' {
					return nil, errors.New("raw newline in string")
				}
				if c == '"' {
					i++
					break
				}
				if c != '\\' {
					b.WriteByte(c)
					i++
					continue
				}
				if i+1 >= len(src) {
					return nil, errors.New("dangling backslash")
				}
				switch e := src[i+1]; e {
				case '"', '\\':
					b.WriteByte(e)
					i += 2
				case 'n':
					b.WriteByte('\n')
					i += 2
				case 'r':
					b.WriteByte('\r')
					i += 2
				case 'x':
					if i+4 > len(src) {
						return nil, errors.New("short \\x escape")
					}
					v, err := strconv.ParseUint(src[i+2:i+4], 16, 8)
					if err != nil {
						return nil, fmt.Errorf("bad \\x escape: %w", err)
					}
					b.WriteByte(byte(v))
					i += 4
				default:
					return nil, fmt.Errorf("unknown escape \\%c", e)
				}
			}
			toks = append(toks, dotToken{text: b.String(), quoted: true})
		case c == '-' && strings.HasPrefix(src[i:], "->"):
			toks = append(toks, dotToken{text: "->"})
			i += 2
		case strings.IndexByte("{}[]=;,", c) >= 0:
			toks = append(toks, dotToken{text: string(c)})
			i++
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			toks = append(toks, dotToken{text: src[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("unexpected byte %q at %d", c, i)
		}
	}
	return toks, nil
}

type dotParser struct {
	toks []dotToken
	pos  int
	out  *parsedDOT
}

func parseDOT(src string) (*parsedDOT, error) {
	toks, err := lexDOT(src)
	if err != nil {
		return nil, err
	}
	p := &dotParser{toks: toks, out: &parsedDOT{graphAttrs: map[string]string{}, nodes: map[string]dotNode{}}}
	if err := p.keyword("digraph"); err != nil {
		return nil, err
	}
	name, err := p.id()
	if err != nil {
		return nil, err
	}
	p.out.name = name
	if err := p.stmts(""); err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("trailing tokens after graph: %v", p.toks[p.pos:])
	}
	return p.out, nil
}

func (p *dotParser) peek() (dotToken, bool) {
	if p.pos >= len(p.toks) {
		return dotToken{}, false
	}
	return p.toks[p.pos], true
}

func (p *dotParser) punct(s string) bool {
	t, ok := p.peek()
	if ok && !t.quoted && t.text == s {
		p.pos++
		return true
	}
	return false
}

func (p *dotParser) keyword(s string) error {
	if !p.punct(s) {
		t, _ := p.peek()
		return fmt.Errorf("token %d: want %q, got %#v", p.pos, s, t)
	}
	return nil
}

// id accepts only quoted IDs: the writer quotes everything, so a bare word
// here would mean something escaped the quoting.
func (p *dotParser) id() (string, error) {
	t, ok := p.peek()
	if !ok || !t.quoted {
		return "", fmt.Errorf("token %d: want quoted ID, got %#v", p.pos, t)
	}
	p.pos++
	return t.text, nil
}

// stmts parses "{ stmt* }" inside the given cluster group.
func (p *dotParser) stmts(group string) error {
	if err := p.keyword("{"); err != nil {
		return err
	}
	for !p.punct("}") {
		if p.punct("subgraph") {
			name, err := p.id()
			if err != nil {
				return err
			}
			g, ok := strings.CutPrefix(name, "cluster_")
			if !ok {
				return fmt.Errorf("subgraph %q is not a cluster", name)
			}
			if err := p.stmts(g); err != nil {
				return err
			}
			continue
		}
		if t, ok := p.peek(); ok && !t.quoted && t.text == "label" {
			// cluster label: label="x";
			p.pos++
			if err := p.keyword("="); err != nil {
				return err
			}
			if _, err := p.id(); err != nil {
				return err
			}
			if err := p.keyword(";"); err != nil {
				return err
			}
			continue
		}
		first, err := p.id()
		if err != nil {
			return err
		}
		switch {
		case p.punct("="):
			v, err := p.id()
			if err != nil {
				return err
			}
			p.out.graphAttrs[first] = v
		case p.punct("->"):
			to, err := p.id()
			if err != nil {
				return err
			}
			p.out.edges = append(p.out.edges, [2]string{first, to})
		default:
			attrs, err := p.attrList()
			if err != nil {
				return err
			}
			if _, dup := p.out.nodes[first]; dup {
				return fmt.Errorf("node %q declared twice", first)
			}
			p.out.nodes[first] = dotNode{group: group, attrs: attrs}
		}
		if err := p.keyword(";"); err != nil {
			return err
		}
	}
	return nil
}

func (p *dotParser) attrList() (map[string]string, error) {
	attrs := map[string]string{}
	if err := p.keyword("["); err != nil {
		return nil, err
	}
	for !p.punct("]") {
		k, err := p.id()
		if err != nil {
			return nil, err
		}
		if err := p.keyword("="); err != nil {
			return nil, err
		}
		v, err := p.id()
		if err != nil {
			return nil, err
		}
		attrs[k] = v
		p.punct(",")
	}
	return attrs, nil
}
