// Package manifests holds the Kubernetes manifests clusterctl applies itself
// (the CNI), embedded in the binary and templated with spec values.
package manifests

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
)

//go:embed *.yaml.tmpl
var files embed.FS

// funcs: quote makes a JSON string, which is also a YAML double-quoted
// scalar, so no spec value can change a manifest's structure.
var funcs = template.FuncMap{"quote": Quote}

var parsed = template.Must(template.New("").Funcs(funcs).Option("missingkey=error").ParseFS(files, "*.yaml.tmpl"))

// Render executes the manifest template name (e.g. "flannel.yaml.tmpl").
func Render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := parsed.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// Quote makes s a JSON string, which is also a YAML double-quoted scalar:
// the one way clusterctl puts spec values into YAML and JSON it renders.
func Quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
