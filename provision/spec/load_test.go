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

// A YAML data file joins the spec only when it sets cluster; once joined,
// its other top-level keys are refused like a .cue file's, while a
// Kubernetes manifest beside the spec stays out of it.
func TestLoadStrayYAMLField(t *testing.T) {
	dir := t.TempDir()
	spec := "cluster:\n  name: t\n  kubernetes:\n    version: 1.37.2\n  hosts:\n    cp1:\n      address: 192.168.1.10\n      roles: [control-plane]\nnetwork:\n  podCIDR: 10.0.0.0/16\n"
	manifest := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n"
	for name, body := range map[string]string{"cluster.yaml": spec, "namespace.yaml": manifest} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Load([]string{dir}, LoadOptions{WorkDir: dir})
	want := `cluster.yaml:9:1: network: unknown top-level field "network"; spec fields go inside cluster: { ... }`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// Only ssh fields the user's files wrote count as written: a schema
// default must not hide an ssh_config value.
func TestSSHWritten(t *testing.T) {
	for _, tc := range []struct {
		name, file, body string
		want             map[string]bool
	}{
		{"cue defaults", "c.cue", `package clusterctl
cluster: {name: "x", kubernetes: version: "1.37.2", hosts: a: {address: "10.0.0.1", roles: ["control-plane"]}, ssh: config: "~/.ssh/config"}
`, map[string]bool{}},
		{"cue written", "c.cue", `package clusterctl
cluster: {name: "x", kubernetes: version: "1.37.2", hosts: a: {address: "10.0.0.1", roles: ["control-plane"]}, ssh: {user: "root", hostKeyPolicy: "strict"}}
`, map[string]bool{"user": true, "hostKeyPolicy": true}},
		{"yaml written", "c.yaml", `cluster:
  name: x
  kubernetes: {version: "1.37.2"}
  hosts: {a: {address: "10.0.0.1", roles: [control-plane]}}
  ssh: {port: 22, knownHostsFile: kh}
`, map[string]bool{"port": true, "knownHostsFile": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load([]string{dir}, LoadOptions{WorkDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.SSHWritten) != len(tc.want) {
				t.Errorf("SSHWritten = %v, want %v", c.SSHWritten, tc.want)
			}
			for k := range tc.want {
				if !c.SSHWritten[k] {
					t.Errorf("SSHWritten = %v, want %v", c.SSHWritten, tc.want)
				}
			}
			if w := c.SSHFor("a").Written; w["user"] != tc.want["user"] || w["identityFile"] || w["bastion"] {
				t.Errorf("SSHFor written = %v", w)
			}
		})
	}
}
