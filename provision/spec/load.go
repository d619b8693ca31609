// Package spec loads a cluster spec: CUE files (plus YAML/JSON data files)
// unified with the embedded schema, validated concrete, decoded into Go types
// and checked for what CUE cannot express. Every error carries file:line:col
// and the path in the spec.
package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
	cuejson "cuelang.org/go/encoding/json"
	cueyaml "cuelang.org/go/encoding/yaml"

	schema "github.com/clusterctl/clusterctl/cue"
)

// PackageName is the CUE package every spec file belongs to; files without a
// package clause (and YAML/JSON data files) are put into it.
const PackageName = "clusterctl"

// rootField holds the cluster in every spec file: `cluster: {...}`.
const rootField = "cluster"

// LoadOptions tunes Load.
type LoadOptions struct {
	// WorkDir makes error positions relative; default is the process's
	// working directory.
	WorkDir string
}

// Load reads the spec at paths (directories and/or files; none means ".").
// On failure the error is an Errors listing every problem found.
func Load(paths []string, opt LoadOptions) (*Cluster, error) {
	if opt.WorkDir == "" {
		opt.WorkDir, _ = os.Getwd()
	}
	l := &loader{workDir: opt.WorkDir}
	files, dir, err := l.collect(paths)
	if err != nil {
		return nil, err
	}
	v, errs := l.build(files, dir)
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	stray := l.strayFields(v)
	c, errs := l.decode(v)
	if len(errs) > 0 {
		return nil, append(stray, errs...).sorted()
	}
	c.Dir = dir
	c.SSHWritten = l.sshWritten(v)
	if errs := append(stray, check(c, l.positioner(v))...); len(errs) > 0 {
		return nil, errs.sorted()
	}
	return c, nil
}

type loader struct {
	workDir   string
	firstFile string          // shown name of the first spec file, for file-level errors
	refused   map[string]bool // fields CUE refused, while its errors are made readable
}

// collect expands directories into their spec files (not recursive: a
// spec is one directory, like a Go package).
func (l *loader) collect(paths []string) (files []string, dir string, err error) {
	if len(paths) == 0 {
		paths = []string{"."}
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, "", fmt.Errorf("read spec: %w", err)
		}
		if !st.IsDir() {
			if !isSpecFile(p) {
				return nil, "", fmt.Errorf("read spec: %s: not a .cue, .yaml, .yml or .json file", p)
			}
			files = append(files, p)
			if dir == "" {
				dir = filepath.Dir(p)
			}
			continue
		}
		if dir == "" {
			dir = p
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, "", fmt.Errorf("read spec: %w", err)
		}
		for _, e := range entries {
			name := filepath.Join(p, e.Name())
			if e.IsDir() || !isSpecFile(name) || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			// Kubernetes manifests may sit beside the spec: a data file
			// belongs to the spec only when it sets the cluster field.
			if filepath.Ext(name) != ".cue" && !setsCluster(name) {
				continue
			}
			files = append(files, name)
		}
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("read spec: no .cue, .yaml or .json files in %s", strings.Join(paths, ", "))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", fmt.Errorf("read spec: %w", err)
	}
	return files, abs, nil
}

// setsCluster reports whether a YAML or JSON file has a top-level "cluster" key.
func setsCluster(name string) bool {
	src, err := os.ReadFile(name)
	if err != nil {
		return true // let parsing report it
	}
	return clusterKey.Match(src)
}

var clusterKey = regexp.MustCompile(`(?m)^(cluster:|\{?\s*"cluster"\s*:)`)

func isSpecFile(name string) bool {
	switch filepath.Ext(name) {
	case ".cue", ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// rel shows a file name relative to the working directory when that is shorter.
func (l *loader) rel(name string) string {
	abs, err := filepath.Abs(name)
	if err != nil {
		return name
	}
	if r, err := filepath.Rel(l.workDir, abs); err == nil && !strings.HasPrefix(r, "../../") {
		return r
	}
	return abs
}

// build parses every file into one CUE instance together with the schema, so
// user files may refer to the schema's definitions (#Host, ...).
func (l *loader) build(files []string, dir string) (cue.Value, Errors) {
	var errs Errors
	inst := build.NewContext().NewInstance(dir, nil)
	schemaFile, err := parser.ParseFile(schema.Filename, schema.Source, parser.ParseComments)
	if err != nil {
		return cue.Value{}, append(errs, l.fromCUE(err, cue.Value{})...)
	}
	if err := inst.AddSyntax(schemaFile); err != nil {
		return cue.Value{}, append(errs, l.fromCUE(err, cue.Value{})...)
	}
	for _, name := range files {
		f, err := l.parse(name)
		if err != nil {
			errs = append(errs, l.fromCUE(err, cue.Value{})...)
			continue
		}
		if err := inst.AddSyntax(f); err != nil {
			errs = append(errs, l.fromCUE(err, cue.Value{})...)
		}
	}
	if len(errs) > 0 {
		return cue.Value{}, errs
	}
	v := cuecontext.New().BuildInstance(inst)
	if err := v.Err(); err != nil {
		// Err holds the first error only; Validate lists them all.
		if all := v.Validate(cue.All()); all != nil {
			err = all
		}
		return v, l.fromCUE(err, v)
	}
	return v, nil
}

func (l *loader) parse(name string) (*ast.File, error) {
	src, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	shown := l.rel(name)
	if l.firstFile == "" {
		l.firstFile = shown
	}
	var f *ast.File
	switch filepath.Ext(name) {
	case ".cue":
		f, err = parser.ParseFile(shown, src, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		if pkg := f.PackageName(); pkg != "" && pkg != PackageName {
			return nil, &Error{Pos: shown + ":1:1", Msg: fmt.Sprintf("package %s: spec files belong to package %s (or have no package clause)", pkg, PackageName)}
		}
	case ".json":
		expr, err := cuejson.Extract(shown, src)
		if err != nil {
			return nil, err
		}
		f = &ast.File{Filename: shown, Decls: []ast.Decl{&ast.EmbedDecl{Expr: expr}}}
	default:
		f, err = cueyaml.Extract(shown, src)
		if err != nil {
			return nil, err
		}
	}
	if f.PackageName() == "" {
		f.Decls = append([]ast.Decl{&ast.Package{Name: ast.NewIdent(PackageName)}}, f.Decls...)
	}
	return f, nil
}

// strayFields refuses regular top-level fields other than cluster: nothing
// reads them, so a typo or a field that belongs inside cluster would be
// silently ignored. Definitions (#X), hidden fields (_x) and let clauses
// are not regular fields and stay allowed, for users to build on.
func (l *loader) strayFields(v cue.Value) Errors {
	it, err := v.Fields()
	if err != nil {
		return nil
	}
	var errs Errors
	for it.Next() {
		if !it.Selector().IsString() {
			continue
		}
		name := it.Selector().Unquoted()
		if name == rootField {
			continue
		}
		errs = append(errs, &Error{
			Pos:  l.position(it.Value()),
			Path: it.Selector().String(),
			Msg:  fmt.Sprintf("unknown top-level field %q; spec fields go inside %s: { ... }", name, rootField),
		})
	}
	return errs
}

// decode validates the cluster as concrete and decodes it.
func (l *loader) decode(v cue.Value) (*Cluster, Errors) {
	cv := v.LookupPath(cue.MakePath(cue.Str(rootField)))
	if l.position(cv) == "" || strings.HasPrefix(l.position(cv), schema.Filename) {
		return nil, Errors{{Pos: l.firstFile + ":1:1", Msg: "no spec files set the field `cluster`: write the cluster as `cluster: {name: ..., hosts: ...}` in package " + PackageName}}
	}
	if err := cv.Validate(cue.Concrete(true), cue.All()); err != nil {
		return nil, l.fromCUE(err, v)
	}
	var c Cluster
	if err := cv.Decode(&c); err != nil {
		return nil, l.fromCUE(err, v)
	}
	canonical, err := json.Marshal(&c)
	if err != nil {
		return nil, Errors{{Msg: fmt.Sprintf("encode spec: %v", err)}}
	}
	sum := sha256.Sum256(canonical)
	c.Digest = hex.EncodeToString(sum[:])
	c.HostOrder = hostOrder(cv)
	return &c, nil
}

// sshWritten finds the ssh fields with schema defaults that the user's
// files wrote: a defaulted value must not hide an ssh_config setting.
func (l *loader) sshWritten(v cue.Value) map[string]bool {
	pos := l.positioner(v)
	out := map[string]bool{}
	for _, f := range []string{"user", "port", "knownHostsFile", "hostKeyPolicy"} {
		if p := pos("ssh", f); p != "" && !strings.HasPrefix(p, schema.Filename) {
			out[f] = true
		}
	}
	return out
}

// hostOrder keeps the order hosts were written in: the first control plane
// listed is the one that initialises the cluster.
func hostOrder(cv cue.Value) []string {
	it, err := cv.LookupPath(cue.ParsePath("hosts")).Fields()
	if err != nil {
		return nil
	}
	var names []string
	for it.Next() {
		names = append(names, it.Selector().Unquoted())
	}
	return names
}

// positioner finds where in the user's files a spec path was written.
func (l *loader) positioner(v cue.Value) func(path ...string) string {
	root := v.LookupPath(cue.MakePath(cue.Str(rootField)))
	return func(path ...string) string {
		sels := make([]cue.Selector, len(path))
		for i, p := range path {
			sels[i] = cue.Str(p)
		}
		return l.position(root.LookupPath(cue.MakePath(sels...)))
	}
}

// position prefers a position in the user's files over one in the schema.
func (l *loader) position(v cue.Value) string {
	var best token.Pos
	for _, p := range valuePositions(v) {
		if !p.IsValid() {
			continue
		}
		if p.Filename() != schema.Filename {
			return l.formatPos(p)
		}
		if !best.IsValid() {
			best = p
		}
	}
	if best.IsValid() {
		return l.formatPos(best)
	}
	return ""
}

func valuePositions(v cue.Value) []token.Pos {
	ps := []token.Pos{v.Pos()}
	if op, parts := v.Expr(); op == cue.AndOp {
		for _, c := range parts {
			ps = append(ps, c.Pos())
		}
	}
	if src := v.Source(); src != nil {
		ps = append(ps, src.Pos())
	}
	return ps
}

func (l *loader) formatPos(p token.Pos) string {
	name := p.Filename()
	if name != schema.Filename && filepath.IsAbs(name) {
		name = l.rel(name)
	}
	return fmt.Sprintf("%s:%d:%d", name, p.Line(), p.Column())
}

// Error is one problem in the spec.
type Error struct {
	Pos  string // file:line:col, relative to the working directory
	Path string // e.g. hosts.node-2.address
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos != "" {
		b.WriteString(e.Pos)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es Errors) dedupe() Errors {
	seen := map[string]bool{}
	var out Errors
	for _, e := range es {
		k := e.Error()
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

func (es Errors) sorted() Errors {
	es = es.dedupe()
	sort.SliceStable(es, func(i, j int) bool { return posLess(es[i].Pos, es[j].Pos) })
	return es
}

// posLess orders "file:line:col" by file, then numerically by line and column.
func posLess(a, b string) bool {
	fa, la, ca := splitPos(a)
	fb, lb, cb := splitPos(b)
	if fa != fb {
		return fa < fb
	}
	if la != lb {
		return la < lb
	}
	return ca < cb
}

func splitPos(p string) (file string, line, col int) {
	parts := strings.Split(p, ":")
	if len(parts) < 3 {
		return p, 0, 0
	}
	// Not numbers: no position, 0 (sorted first).
	line, _ = strconv.Atoi(parts[len(parts)-2])
	col, _ = strconv.Atoi(parts[len(parts)-1])
	return strings.Join(parts[:len(parts)-2], ":"), line, col
}
