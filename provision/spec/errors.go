package spec

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	cueerrors "cuelang.org/go/cue/errors"

	schema "github.com/clusterctl/clusterctl/cue"
)

// rawError is one CUE error before it is made readable.
type rawError struct {
	path    []string // without the root field
	pos     string   // first position in a user file, if any
	msg     string
	schemaP string // first position in the schema
}

var (
	conflictRE = regexp.MustCompile(`^conflicting values (.+?) and (.+?)(?: \(mismatched types (\w+) and (\w+)\))?$`)
	boundRE    = regexp.MustCompile(`^invalid value (.+) \(out of bound (.+)\)$`)
)

// fromCUE turns a CUE error (list) into positioned, readable Errors. root is
// the built instance when there is one: it finds user positions for errors
// CUE reports only inside the schema (a required field never set).
func (l *loader) fromCUE(err error, root cue.Value) Errors {
	if e, ok := err.(*Error); ok {
		return Errors{e}
	}
	var ce cueerrors.Error
	if !errors.As(err, &ce) {
		return Errors{plainError(err)}
	}
	var raws []rawError
	for _, e := range cueerrors.Errors(err) {
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if strings.Contains(msg, "errors in empty disjunction") {
			continue // a header; its parts follow as separate errors
		}
		r := rawError{path: trimRoot(e.Path()), msg: msg}
		for _, p := range cueerrors.Positions(e) {
			if !p.IsValid() {
				continue
			}
			if p.Filename() == schema.Filename {
				if r.schemaP == "" {
					r.schemaP = l.formatPos(p)
				}
				continue
			}
			if r.pos == "" {
				r.pos = l.formatPos(p)
			}
		}
		raws = append(raws, r)
	}
	if len(raws) == 0 {
		return Errors{{Msg: err.Error()}}
	}
	raws = dropListDefaults(raws)
	for i := range raws {
		raws[i] = refusedKeyAbove(raws[i])
	}
	l.refused = refusedFields(raws)
	var out Errors
	for _, g := range groupByPath(raws) {
		out = append(out, l.readable(g, root))
	}
	return out.dedupe()
}

// refusedKeyAbove moves "field not allowed" reported inside a map entry
// (runtime.mirrors."-x".0) up to the entry whose key the map's pattern
// refused (runtime.mirrors."-x"): CUE reports either, depending on what
// else is wrong in the spec.
func refusedKeyAbove(r rawError) rawError {
	if r.msg != "field not allowed" {
		return r
	}
	for j := 1; j < len(r.path)-1; j++ {
		re := keyPatterns[r.path[j-1]]
		if re != nil && !re.MatchString(unquoteLabel(r.path[j])) {
			r.path = r.path[:j+1] // the position stays the entry's value, on the key's line
			return r
		}
	}
	return r
}

// dropListDefaults drops "incompatible list lengths" for a list that has a
// refused element: it only says the list is not the schema's default
// (kernelModules: [...#ModuleName] | *[defaults]), and the element's own
// error says what is wrong.
func dropListDefaults(raws []rawError) []rawError {
	var out []rawError
	for _, r := range raws {
		if strings.HasPrefix(r.msg, "incompatible list lengths") && hasErrorBelow(raws, r.path) {
			continue
		}
		out = append(out, r)
	}
	return out
}

func hasErrorBelow(raws []rawError, path []string) bool {
	for _, r := range raws {
		if len(r.path) > len(path) && slices.Equal(r.path[:len(path)], path) {
			return true
		}
	}
	return false
}

// refusedFields is every field reported as not allowed, by joined path:
// "did you mean" must not suggest one of them.
func refusedFields(raws []rawError) map[string]bool {
	out := map[string]bool{}
	for _, r := range raws {
		if r.msg == "field not allowed" && len(r.path) > 0 {
			p := slices.Clone(r.path)
			p[len(p)-1] = unquoteLabel(p[len(p)-1])
			out[strings.Join(p, "\x00")] = true
		}
	}
	return out
}

// plainError positions an error from a YAML or JSON decoder, which reports
// "file:line: message".
func plainError(err error) *Error {
	msg := err.Error()
	if m := plainPosRE.FindStringSubmatch(msg); m != nil {
		col := m[3]
		if col == "" {
			col = "1"
		}
		return &Error{Pos: m[1] + ":" + m[2] + ":" + col, Msg: m[4]}
	}
	return &Error{Msg: msg}
}

var plainPosRE = regexp.MustCompile(`^(\S+?):(\d+)(?::(\d+))?: (.*)$`)

func trimRoot(p []string) []string {
	if len(p) > 0 && p[0] == rootField {
		return p[1:]
	}
	return p
}

// groupByPath keeps the order of first appearance.
func groupByPath(raws []rawError) [][]rawError {
	idx := map[string]int{}
	var groups [][]rawError
	for _, r := range raws {
		k := strings.Join(r.path, "\x00")
		i, ok := idx[k]
		if !ok {
			i = len(groups)
			idx[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	return groups
}

// readable merges the errors CUE reports for one path into one message.
func (l *loader) readable(g []rawError, root cue.Value) *Error {
	first := g[0]
	e := &Error{Path: strings.Join(first.path, "."), Pos: first.pos}
	for _, r := range g {
		if e.Pos == "" && r.pos != "" {
			e.Pos = r.pos
		}
	}
	e.Msg = shorten(l.message(g, root), 400)
	if e.Pos == "" && root.Exists() {
		e.Pos = l.userPosition(root, first.path)
	}
	if e.Pos == "" {
		e.Pos = first.schemaP
	}
	return e
}

func (l *loader) message(g []rawError, root cue.Value) string {
	// A bound violation says more than the default it failed to match.
	for _, r := range g {
		if m := boundRE.FindStringSubmatch(r.msg); m != nil {
			if what := patternDescriptions[m[2]]; what != "" {
				return fmt.Sprintf("%s is not %s", m[1], what)
			}
			return fmt.Sprintf("%s does not match %s", m[1], m[2])
		}
	}
	if len(g) > 1 {
		if m := alternatives(g); m != "" {
			return m
		}
	}
	msg := g[0].msg
	switch {
	case msg == "field not allowed":
		return l.notAllowed(g[0].path, root)
	case strings.HasPrefix(msg, "incomplete value"):
		return "required but not set (" + msg + ")"
	case strings.HasPrefix(msg, "incompatible list lengths (0 and"):
		return "must not be empty"
	}
	return msg
}

// alternatives turns "conflicting values A and X", "conflicting values B and
// X" into "X is not one of: A, B".
func alternatives(g []rawError) string {
	count := map[string]int{}
	var pairs [][2]string
	var types []string
	for _, r := range g {
		m := conflictRE.FindStringSubmatch(r.msg)
		if m == nil {
			return ""
		}
		pairs = append(pairs, [2]string{m[1], m[2]})
		count[m[1]]++
		count[m[2]]++
		if m[3] != "" {
			types = append(types, m[3]+" and "+m[4])
		}
	}
	var got string
	for v, n := range count {
		if n == len(g) {
			got = v
		}
	}
	if got == "" {
		return ""
	}
	var want []string
	for _, p := range pairs {
		if p[0] == got {
			want = append(want, p[1])
		} else {
			want = append(want, p[0])
		}
	}
	sort.Strings(want)
	// Only a type apart from every alternative is a type error; a value
	// that some alternatives share the type of is a wrong choice.
	if len(types) == len(g) {
		t := strings.Fields(types[0])
		return fmt.Sprintf("%s has type %s; want %s", got, t[0], t[len(t)-1])
	}
	return fmt.Sprintf("%s is not one of: %s", got, strings.Join(want, ", "))
}

// notAllowed explains an unknown field and suggests the closest known one.
func (l *loader) notAllowed(path []string, root cue.Value) string {
	if len(path) == 0 {
		return "field not allowed"
	}
	name := unquoteLabel(path[len(path)-1])
	parent := path[:len(path)-1]
	if len(parent) == 1 && (parent[0] == "hosts" || parent[0] == "manifests") {
		return fmt.Sprintf("%q is not a valid name here: use lowercase letters, digits and '-' (a DNS label)", name)
	}
	msg := "field not allowed"
	// In a map keyed by a pattern, an unknown key is one the pattern refused.
	if len(parent) > 0 {
		if what := keyDescriptions[parent[len(parent)-1]]; what != "" {
			msg = fmt.Sprintf("%q is not %s", name, what)
		}
	}
	if !root.Exists() {
		return msg
	}
	refused := func(f string) bool {
		return l.refused[strings.Join(append(slices.Clone(parent), f), "\x00")]
	}
	if best := closestField(root, parent, name, refused); best != "" {
		return fmt.Sprintf("%s (did you mean %q?)", msg, best)
	}
	return msg
}

// keyDescriptions names what the keys of the schema's pattern-keyed maps
// must be, by the map's field name.
var keyDescriptions = map[string]string{
	"mirrors": "a registry host: a DNS name or IPv4 address (letters, digits and '-' between dots, no empty parts) with an optional :port, e.g. registry.example:5000",
	"sysctl":  "a sysctl key: dot-separated parts under abi, crypto, debug, dev, fs, kernel, net, sunrpc, user or vm, e.g. net.ipv4.ip_forward",
}

// keyPatterns are the schema's patterns for those keys, by the map's field name.
var keyPatterns = map[string]*regexp.Regexp{
	"mirrors": schemaPattern("#RegistryHost"),
	"sysctl":  schemaPattern("#SysctlKey"),
}

// schemaPattern compiles the regular expression of a schema definition
// written as `#Name: =~"..."` (CUE and Go share RE2 syntax).
func schemaPattern(def string) *regexp.Regexp {
	for _, m := range patternLine.FindAllStringSubmatch(string(schema.Source), -1) {
		if m[1] == def {
			re, err := strconv.Unquote(strings.TrimPrefix(m[2], "=~"))
			if err != nil {
				panic(fmt.Sprintf("schema pattern %s: %v", def, err))
			}
			return regexp.MustCompile(re)
		}
	}
	panic("schema pattern " + def + " not found")
}

// unquoteLabel turns a CUE path element such as "net.ipv4.ip_forward"
// (quoted because it is not an identifier) back into the key the user typed.
func unquoteLabel(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// closestField finds the known field nearest to a misspelt one in the
// schema; skip says which fields are themselves misspelt.
func closestField(root cue.Value, parent []string, name string, skip func(string) bool) string {
	sels := []cue.Selector{cue.Str(rootField)}
	for _, p := range parent {
		sels = append(sels, cue.Str(p))
	}
	// The user's value is unified with the schema: its fields are the
	// schema's (optional ones too) plus the misspelt one.
	v := root.LookupPath(cue.MakePath(sels...))
	if !v.Exists() {
		return ""
	}
	it, err := v.Fields(cue.Optional(true))
	if err != nil {
		return ""
	}
	best, bestD := "", len(name)/2+2
	for it.Next() {
		if !it.Selector().IsString() {
			continue // a list element or pattern, not a field name
		}
		f := it.Selector().Unquoted()
		// The unified value holds the typed key too: never suggest it back.
		if f == name || skip(f) {
			continue
		}
		if d := editDistance(strings.ToLower(f), strings.ToLower(name)); d < bestD {
			best, bestD = f, d
		}
	}
	return best
}

// userPosition finds the nearest enclosing field the user wrote.
func (l *loader) userPosition(root cue.Value, path []string) string {
	for n := len(path); n >= 0; n-- {
		sels := []cue.Selector{cue.Str(rootField)}
		for _, p := range path[:n] {
			sels = append(sels, cue.Str(p))
		}
		if p := l.position(root.LookupPath(cue.MakePath(sels...))); p != "" && !strings.HasPrefix(p, schema.Filename) {
			return p
		}
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// patternDescriptions names the schema's string patterns in words, keyed by
// the regular expression as CUE prints it.
var patternDescriptions = describePatterns(map[string]string{
	"#DNSLabel":     "a DNS label (lowercase letters, digits and '-', at most 63)",
	"#DNSName":      "a DNS name",
	"#IP":           "an IPv4 or IPv6 address",
	"#CIDR":         "a CIDR such as 10.244.0.0/16",
	"#Version":      "a version such as 1.7.13",
	"#Duration":     "a duration such as 30s, 5m or 1h30m",
	"#URL":          "an http(s):// or file:// URL",
	"#MirrorURL":    "an http(s):// URL with a host and only URL characters (no quotes, backslashes or spaces)",
	"#ProbeURL":     "an http(s):// URL",
	"#RegistryHost": "a registry host: a DNS name or IPv4 address (letters, digits and '-' between dots, no empty parts) with an optional :port, e.g. registry.example:5000",
	"#UserName":     "a Unix user name",
	"#EnvName":      "an environment variable name (the variable holds the secret; the spec never does)",
	"#SysctlKey":    "a sysctl key: dot-separated parts under abi, crypto, debug, dev, fs, kernel, net, sunrpc, user or vm, e.g. net.ipv4.ip_forward",
	"#ModuleName":   "a kernel module name (letters, digits, '_' and '-', not starting with '-')",
	"#LabelKey":     "a Kubernetes label key",
	"#LabelValue":   "a Kubernetes label value",
	"#Name":         "a name (letters, digits, '-', '_' and '.')",
	"#ImageRef":     "an image reference",
	"#K8sVersion":   "a Kubernetes version such as 1.37.2 (no leading v)",
	"#SHA256":       "a sha256 digest (64 lowercase hex digits)",
})

var patternLine = regexp.MustCompile(`(?m)^(#\w+):\s+(=~".*")\s*$`)

func describePatterns(words map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range patternLine.FindAllStringSubmatch(string(schema.Source), -1) {
		if w, ok := words[m[1]]; ok {
			out[m[2]] = w
		}
	}
	return out
}

// shorten keeps messages about huge values readable.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n/2] + " … " + s[len(s)-n/2:]
}
