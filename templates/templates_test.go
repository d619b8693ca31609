package templates

import (
	"strings"
	"testing"
)

func TestTOMLString(t *testing.T) {
	for in, want := range map[string]string{
		`registry.k8s.io/pause:3.10.1`: `"registry.k8s.io/pause:3.10.1"`,
		`a"b\c`:                        `"a\"b\\c"`,
		"line\nbreak\ttab\x01":         `"line\nbreak\ttab\u0001"`,
	} {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	if _, err := Render("nope.tmpl", nil); err == nil {
		t.Error("unknown template rendered")
	}
	// missingkey=error: a map without the key is an error, not "<no value>".
	if _, err := Render("timesyncd.conf.tmpl", map[string]any{}); err == nil {
		t.Error("missing key rendered")
	}
	names := append([]string{}, Names()...)
	for _, want := range []string{"sysctl.conf.tmpl", "modules-load.conf.tmpl", "containerd-config.toml.tmpl", "containerd-hosts.toml.tmpl", "timesyncd.conf.tmpl", "chrony.conf.tmpl"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("template %s not embedded (have %v)", want, names)
		}
	}
}
