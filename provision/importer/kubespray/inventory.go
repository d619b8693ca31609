// Package kubespray turns a kubespray Ansible inventory (INI or YAML) and its
// group_vars into a clusterctl spec, and lists every variable it could not
// map and why. It never evaluates Jinja templates.
package kubespray

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Inventory is an Ansible inventory: hosts with their own variables and
// groups with hosts, child groups and variables.
type Inventory struct {
	Hosts     map[string]map[string]any // host -> host vars
	HostOrder []string                  // hosts in the order first seen
	Groups    map[string]*Group
}

// Group is one Ansible group.
type Group struct {
	Hosts    []string
	Children []string
	Vars     map[string]any
}

func newInventory() *Inventory {
	return &Inventory{Hosts: map[string]map[string]any{}, Groups: map[string]*Group{}}
}

func (inv *Inventory) group(name string) *Group {
	g, ok := inv.Groups[name]
	if !ok {
		g = &Group{Vars: map[string]any{}}
		inv.Groups[name] = g
	}
	return g
}

// addHost puts host into group (if any) and merges vars into its host vars.
func (inv *Inventory) addHost(group, host string, vars map[string]any) {
	hv, ok := inv.Hosts[host]
	if !ok {
		hv = map[string]any{}
		inv.Hosts[host] = hv
		inv.HostOrder = append(inv.HostOrder, host)
	}
	for k, v := range vars {
		hv[k] = v
	}
	if group != "" {
		g := inv.group(group)
		if !contains(g.Hosts, host) {
			g.Hosts = append(g.Hosts, host)
		}
	}
}

// Members returns every host of group and of its descendants.
func (inv *Inventory) Members(group string) []string {
	var out []string
	seen, have := map[string]bool{}, map[string]bool{}
	var walk func(string)
	walk = func(name string) {
		if seen[name] {
			return // a cycle in children: Ansible refuses it, we just stop
		}
		seen[name] = true
		g := inv.Groups[name]
		if g == nil {
			return
		}
		for _, h := range g.Hosts {
			if !have[h] {
				have[h] = true
				out = append(out, h)
			}
		}
		for _, c := range g.Children {
			walk(c)
		}
	}
	if group == "all" {
		return append([]string(nil), inv.HostOrder...)
	}
	walk(group)
	return out
}

// ReadInventory reads an INI or YAML inventory file; .yml/.yaml/.json are
// YAML, anything else (inventory.ini, hosts) INI.
func ReadInventory(path string) (*Inventory, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	var inv *Inventory
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yml", ".yaml", ".json":
		inv, err = ParseYAML(src)
	default:
		inv, err = ParseINI(src)
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", path, err)
	}
	return inv, nil
}

// ParseINI reads Ansible's INI inventory format: `[group]` sections of host
// lines `name key=value ...`, `[group:children]` of group names and
// `[group:vars]` of `key=value` lines; `#` and `;` start comments. Values
// stay strings (Ansible reads :vars values as strings too).
func ParseINI(src []byte) (*Inventory, error) {
	inv := newInventory()
	section, kind := "ungrouped", "hosts"
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: section %q has no closing ]", n, line)
			}
			section, kind, _ = strings.Cut(line[1:end], ":")
			switch kind {
			case "":
				kind = "hosts"
			case "children", "vars":
			default:
				return nil, fmt.Errorf("line %d: section [%s:%s]: want :children or :vars", n, section, kind)
			}
			inv.group(section)
			continue
		}
		words, err := splitWords(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(words) == 0 {
			continue // only a comment
		}
		switch kind {
		case "children":
			g := inv.group(section)
			inv.group(words[0])
			if !contains(g.Children, words[0]) {
				g.Children = append(g.Children, words[0])
			}
		case "vars":
			k, v, err := keyValue(strings.Join(words, " "))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			inv.group(section).Vars[k] = v
		default:
			vars := map[string]any{}
			for _, w := range words[1:] {
				k, v, err := keyValue(w)
				if err != nil {
					return nil, fmt.Errorf("line %d: host %s: %w", n, words[0], err)
				}
				vars[k] = v
			}
			inv.addHost(section, words[0], vars)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return inv, nil
}

func keyValue(w string) (string, string, error) {
	k, v, ok := strings.Cut(w, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return "", "", fmt.Errorf("%q: want key=value", w)
	}
	return k, strings.TrimSpace(v), nil
}

// splitWords splits a line like a shell would: whitespace separates words,
// '...' and "..." quote (and are removed), a backslash escapes the next
// character inside "..." and outside quotes, and a word starting with # ends
// the line (Ansible's inline comments).
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words, nil
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// ParseYAML reads Ansible's YAML inventory: `all: {hosts, vars, children}`,
// recursively; a host is a key under hosts with its vars (or null).
func ParseYAML(src []byte) (*Inventory, error) {
	var doc map[string]yamlGroup
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	inv := newInventory()
	names := make([]string, 0, len(doc))
	for name := range doc {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		inv.addYAMLGroup(name, doc[name], 0)
	}
	return inv, nil
}

type yamlGroup struct {
	Hosts    yaml.Node            `yaml:"hosts"`
	Vars     map[string]any       `yaml:"vars"`
	Children map[string]yamlGroup `yaml:"children"`
}

func (inv *Inventory) addYAMLGroup(name string, y yamlGroup, depth int) {
	g := inv.group(name)
	for k, v := range y.Vars {
		g.Vars[k] = v
	}
	// Hosts is a mapping kept as a node so the file's host order survives.
	if y.Hosts.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(y.Hosts.Content); i += 2 {
			vars := map[string]any{}
			_ = y.Hosts.Content[i+1].Decode(&vars) // null or a mapping; anything else has no vars
			inv.addHost(name, y.Hosts.Content[i].Value, vars)
		}
	}
	children := make([]string, 0, len(y.Children))
	for c := range y.Children {
		children = append(children, c)
	}
	sort.Strings(children)
	for _, c := range children {
		if !contains(g.Children, c) {
			g.Children = append(g.Children, c)
		}
		if depth < 64 {
			inv.addYAMLGroup(c, y.Children[c], depth+1)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}
