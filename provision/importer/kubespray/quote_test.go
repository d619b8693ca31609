package kubespray

import (
	"strings"
	"testing"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"github.com/clusterctl/clusterctl/provision/spec"
)

// cueString's output, compiled by CUE, is the input again: no escape CUE
// refuses (\x), no interpolation, no way out of the string.
func TestCUEStringRoundTrip(t *testing.T) {
	ctx := cuecontext.New()
	for _, s := range []string{
		"", "plain", `a"b`, `back\slash`, "new\nline", "cr\rtab\t",
		`\(x)`, `\\(x)`, `"\(1+1)"`, `x: "y"} z: {`, "nul\x00", "esc\x1b[31m",
		"line\u2028sep", "bom\ufeff", "emoji 🚀", "del\x7f", "%(x)s", "\\",
	} {
		lit := cueString(s)
		if strings.ContainsAny(lit, "\n\r") {
			t.Errorf("cueString(%q) = %s: a raw line break", s, lit)
		}
		v := ctx.CompileString("x: " + lit)
		got, err := v.LookupPath(cue.ParsePath("x")).String()
		if err != nil {
			t.Errorf("cueString(%q) = %s: CUE refuses it: %v", s, lit, err)
			continue
		}
		if got != s {
			t.Errorf("cueString(%q) = %s reads back as %q", s, lit, got)
		}
	}
	// Invalid UTF-8 becomes U+FFFD rather than a \x escape CUE refuses in strings.
	v := ctx.CompileString("x: " + cueString("a\xffb"))
	if got, err := v.LookupPath(cue.ParsePath("x")).String(); err != nil || got != "a\uFFFDb" {
		t.Errorf("invalid UTF-8: %q, %v", got, err)
	}
}

// The version written when kube_version is missing stays one validate
// accepts (spec.SupportedVersions moves with releases).
func TestDefaultVersionSupported(t *testing.T) {
	res := convertYAML(t, "all:\n  children:\n    kube_control_plane:\n      hosts:\n        cp1: {ip: 10.0.0.1}\n", nil)
	if !strings.Contains(string(res.Spec), `version:       "`+DefaultKubernetesVersion+`"`) {
		t.Fatalf("spec without kube_version does not say %s:\n%s", DefaultKubernetesVersion, res.Spec)
	}
	if c := loadSpec(t, res.Spec); c.Kubernetes.Version != DefaultKubernetesVersion {
		t.Errorf("version %s, want %s (supported: %s)", c.Kubernetes.Version, DefaultKubernetesVersion, spec.SupportedVersions("kubeadm"))
	}
}
