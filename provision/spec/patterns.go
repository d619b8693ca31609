package spec

import (
	"fmt"
	"regexp"
	"strconv"
	"sync"

	schema "github.com/clusterctl/clusterctl/cue"
)

// schemaPatterns are the schema's string definitions (#DNSLabel: =~"..."),
// compiled once: values that do not come through CUE (the in-cluster state
// record) are held to the very patterns the spec is.
var schemaPatterns = sync.OnceValue(func() map[string]*regexp.Regexp {
	out := map[string]*regexp.Regexp{}
	for _, m := range patternLine.FindAllStringSubmatch(string(schema.Source), -1) {
		// m[2] is `=~"..."`; the CUE string's escapes are Go's for these.
		src, err := strconv.Unquote(m[2][len("=~"):])
		if err != nil {
			continue // a pattern Go cannot read is not offered
		}
		if re, err := regexp.Compile(src); err == nil {
			out[m[1]] = re
		}
	}
	return out
})

// MatchesSchema reports whether s matches the schema's pattern definition
// def, such as "#DNSLabel" or "#UserName". An unknown def is an error, so a
// renamed definition cannot silently accept everything.
func MatchesSchema(def, s string) (bool, error) {
	re, ok := schemaPatterns()[def]
	if !ok {
		return false, fmt.Errorf("the schema has no pattern %s", def)
	}
	return re.MatchString(s), nil
}
