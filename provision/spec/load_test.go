package spec

import (
	"errors"
	"flag"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// -update rewrites golden files (read by hosttest.AssertGolden).
var _ = flag.Bool("update", false, "rewrite golden files")

// Every invalid spec must be rejected with exactly the errors in its golden
// .err file: message, spec path and file:line:col.
func TestLoadInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.cue")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("only %d invalid specs; the corpus needs at least 25", len(files))
	}
	posRE := regexp.MustCompile(`^testdata/invalid/[a-z0-9-]+\.cue:\d+:\d+: `)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".cue")
		t.Run(name, func(t *testing.T) {
			c, err := Load([]string{f}, LoadOptions{WorkDir: mustGetwd(t)})
			if err == nil {
				t.Fatalf("Load accepted an invalid spec: %+v", c)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, want spec.Errors: %v", err, err)
			}
			for _, e := range es {
				if !posRE.MatchString(e.Error()) {
					t.Errorf("error lacks a position in the spec file: %q", e.Error())
				}
			}
			hosttest.AssertGolden(t, strings.TrimSuffix(f, ".cue")+".err", err.Error()+"\n")
		})
	}
}

func TestLoadInventories(t *testing.T) {
	dirs, _ := filepath.Glob("../../inventories/*")
	if len(dirs) == 0 {
		t.Fatal("no inventories found")
	}
	for _, d := range dirs {
		t.Run(filepath.Base(d), func(t *testing.T) {
			c, err := Load([]string{d}, LoadOptions{})
			if err != nil {
				t.Fatalf("inventory %s does not validate:\n%v", d, err)
			}
			if len(c.ControlPlanes()) == 0 || c.Digest == "" {
				t.Fatalf("inventory %s decoded without control planes or digest", d)
			}
		})
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
