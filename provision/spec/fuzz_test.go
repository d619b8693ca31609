package spec

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes as a spec file: Load must return a cluster
// or positioned errors, never panic or hang. The seed corpus (every valid
// and invalid spec in the repository) runs in `go test`.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/invalid/*.cue")
	inv, _ := filepath.Glob("../../inventories/*/cluster.cue")
	for _, s := range append(seeds, inv...) {
		src, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src, false)
	}
	f.Add([]byte("cluster:\n  name: t\n  hosts: {}\n"), true)
	f.Add([]byte("cluster: [1, 2"), true)
	f.Fuzz(func(t *testing.T, src []byte, yaml bool) {
		dir := t.TempDir()
		name := "cluster.cue"
		if yaml {
			name = "cluster.yaml"
		}
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load([]string{dir}, LoadOptions{WorkDir: dir})
		if err == nil {
			if c == nil || len(c.ControlPlanes()) == 0 {
				t.Fatalf("Load succeeded without a control plane: %+v", c)
			}
			return
		}
		if c != nil {
			t.Fatalf("Load returned both a cluster and an error: %v", err)
		}
		if es, ok := err.(Errors); ok {
			for _, e := range es {
				if e.Msg == "" {
					t.Fatalf("empty error message in %v", es)
				}
			}
		}
	})
}
