package k3s

import (
	"path"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
)

// hidden are config keys whose values are secrets: a config.yaml written
// by hand may hold them; plans never show them.
func hidden(key string) bool {
	return strings.Contains(key, "token") || strings.Contains(key, "secret") ||
		strings.Contains(key, "password") || strings.HasPrefix(key, "datastore-endpoint") ||
		strings.Contains(key, "access-key")
}

// flatConfig reads a k3s config file as key -> value in file order, lists
// joined with ", "; ok is false when it is not a YAML mapping.
func flatConfig(b []byte) (keys []string, vals map[string]string, ok bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, false
	}
	vals = map[string]string{}
	if doc.Kind == 0 {
		return nil, vals, true // empty file
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, false
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i].Value, m.Content[i+1]
		var s string
		switch v.Kind {
		case yaml.SequenceNode:
			items := make([]string, len(v.Content))
			for j, it := range v.Content {
				items[j] = it.Value
			}
			s = strings.Join(items, ", ")
		case yaml.ScalarNode:
			s = v.Value
		default:
			out, _ := yaml.Marshal(v)
			s = strings.TrimSpace(string(out))
		}
		if _, dup := vals[k]; !dup {
			keys = append(keys, k)
		}
		vals[k] = s
	}
	return keys, vals, true
}

// configDiff is the plan's view of a config file change: one line per key
// whose value differs ("config.yaml KEY: OLD -> NEW"), secrets hidden; a
// file that is no YAML mapping shows as digests.
func configDiff(file string, have, want []byte) []step.DiffLine {
	name := path.Base(file)
	if have == nil {
		return []step.DiffLine{{Key: file, From: "(missing)", To: "written"}}
	}
	hk, hv, ok1 := flatConfig(have)
	wk, wv, ok2 := flatConfig(want)
	if !ok1 || !ok2 {
		return []step.DiffLine{{Key: file, From: "sha256:" + hostprep.Digest(have)[:12], To: "sha256:" + hostprep.Digest(want)[:12]}}
	}
	show := func(k, v string, set bool) string {
		switch {
		case !set:
			return "(unset)"
		case hidden(k):
			return "(hidden)"
		}
		return v
	}
	var d []step.DiffLine
	for _, k := range wk {
		old, had := hv[k]
		if had && old == wv[k] {
			continue
		}
		d = append(d, step.DiffLine{Key: name + " " + k, From: show(k, old, had), To: show(k, wv[k], true)})
	}
	for _, k := range hk {
		if _, keep := wv[k]; !keep {
			d = append(d, step.DiffLine{Key: name + " " + k, From: show(k, hv[k], true), To: "(unset)"})
		}
	}
	if len(d) == 0 {
		// Same keys and values, other bytes (comments, layout).
		d = append(d, step.DiffLine{Key: file, From: "sha256:" + hostprep.Digest(have)[:12], To: "sha256:" + hostprep.Digest(want)[:12]})
	}
	return d
}
