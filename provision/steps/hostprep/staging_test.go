package hostprep_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// TestStageResumes runs the staging shell on this machine: what a killed
// run left (a half-written upload, an older bundle's file, a file under a
// wanted name with other content) is removed or replaced, a file already
// staged with its digest is not sent again, and Remove clears them.
func TestStageResumes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: staged files are owned by root (the CI runs as root)")
	}
	b := steptest.WriteBundle(t, nil,
		steptest.File{File: bundle.File{Path: "debs/a_1_amd64.deb", Kind: bundle.KindDeb}, Content: []byte("package a")},
		steptest.File{File: bundle.File{Path: "debs/b_1_amd64.deb", Kind: bundle.KindDeb}, Content: []byte("package b")})
	files := b.Of(bundle.KindDeb)
	dir := filepath.Join(t.TempDir(), "staging", "packages")
	s := hostprep.Staging{Dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, ".x.clusterctl-0123"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		".x.clusterctl-0123/partial":    "half",
		"old-bundle.deb":                "older",
		filepath.Base(s.Path(files[0])): "package a", // staged before the kill: kept
		filepath.Base(s.Path(files[1])): "truncat",   // wrong content under the right name: replaced
		"-leading-dash":                 "odd name",
		".hidden":                       "dot file",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := os.Stat(s.Path(files[0]))
	if err != nil {
		t.Fatal(err)
	}
	h := hosttest.NewLocal("local", t.TempDir(), nil)
	paths, err := s.Stage(context.Background(), h, b, files)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{filepath.Base(paths[0]), filepath.Base(paths[1])}
	if len(names) != 2 || !strings.Contains(strings.Join(names, " "), want[0]) || !strings.Contains(strings.Join(names, " "), want[1]) {
		t.Fatalf("staging holds %q, want %q", names, want)
	}
	for i, p := range paths {
		if got, _ := os.ReadFile(p); string(got) != "package "+string("ab"[i]) {
			t.Errorf("%s holds %q", p, got)
		}
	}
	if st, _ := os.Stat(paths[0]); !os.SameFile(kept, st) {
		t.Error("the file already staged with its digest was sent again")
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("staging directory mode %o, want 700", st.Mode().Perm())
	}
	if err := s.Remove(context.Background(), h, paths); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("after Remove: %v", entries)
	}
}
