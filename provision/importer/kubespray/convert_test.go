package kubespray

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// importFile converts one inventory file with the group_vars beside it.
func importFile(t *testing.T, inventory string) *Result {
	t.Helper()
	inv, err := ReadInventory(inventory)
	if err != nil {
		t.Fatal(err)
	}
	gv, err := ReadGroupVars(filepath.Join(filepath.Dir(inventory), "group_vars"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(inv, gv, Options{Name: "mycluster", Source: "mycluster"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// loadSpec runs the loader `clusterctl validate` runs on the written spec.
func loadSpec(t *testing.T, src []byte) *spec.Cluster {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.cue"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := spec.Load([]string{dir}, spec.LoadOptions{WorkDir: dir})
	if err != nil {
		t.Fatalf("the loader refuses the imported spec: %v\n%s", err, src)
	}
	return c
}

func unmappedText(res *Result) string {
	var b strings.Builder
	for _, u := range res.Unmapped {
		b.WriteString(u.String() + "\n")
	}
	return b.String()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Both inventory formats of the sample-shaped cluster give one spec, the
// golden one, and the loader accepts it.
func TestConvertSample(t *testing.T) {
	for _, f := range []string{"inventory.ini", "hosts.yaml"} {
		t.Run(f, func(t *testing.T) {
			res := importFile(t, filepath.Join("testdata", "mycluster", f))
			golden(t, "mycluster.cue.golden", res.Spec)
			golden(t, "mycluster.unmapped.golden", []byte(unmappedText(res)))
			c := loadSpec(t, res.Spec)
			if got := strings.Join(c.ControlPlanes(), ","); got != "node1,node2,node3" {
				t.Errorf("control planes %s", got)
			}
			if got := strings.Join(c.Workers(), ","); got != "node4,node5,node6" {
				t.Errorf("workers %s", got)
			}
		})
	}
}
