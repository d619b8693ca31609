// Package templates holds the text/template files clusterctl writes onto
// hosts (sysctl.d, modules-load.d, containerd, time sync), embedded in the
// binary, and renders them.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

// funcs are the helpers every template may use.
var funcs = template.FuncMap{
	// toml quotes s as a TOML basic string.
	"toml": tomlString,
	"join": strings.Join,
}

// parsed is built once: the embedded files never change at run time.
var parsed = template.Must(template.New("").Funcs(funcs).Option("missingkey=error").ParseFS(files, "*.tmpl"))

// Render executes the template file name (e.g. "sysctl.conf.tmpl") with data.
func Render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := parsed.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// Names lists the embedded templates.
func Names() []string {
	var out []string
	for _, t := range parsed.Templates() {
		if t.Name() != "" {
			out = append(out, t.Name())
		}
	}
	return out
}

// tomlString quotes s as a TOML basic string. Go's strconv quoting escapes
// the same characters TOML needs escaped, except that TOML has no \x or \a
// escapes: those bytes are written as \u00XX.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u00` + strconv.FormatInt(int64(r)>>4, 16) + strconv.FormatInt(int64(r)&0xf, 16))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
