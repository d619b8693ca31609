package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildAndRead(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, bytes.Repeat([]byte("x"), 3<<20), 0o755); err != nil { // > 1 MiB: streamed path
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "spec")
	os.WriteFile(spec, []byte("# comment\nfile "+bin+" /usr/local/bin/tool\nlink tool /usr/local/bin/alias\nfile "+bin+" /usr/sbin/other 0700\ndir /var/lib/x 0700\n"), 0o644)
	entries, err := readSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := configFile{Created: epoch.Format("2006-01-02T15:04:05Z07:00"), Architecture: "amd64", OS: "linux",
		Config: imageConfig{Entrypoint: []string{"/usr/local/bin/tool"}, Env: []string{defaultPath}}}
	refs := []string{"registry.local/k8s/tool:v1", "registry.local/k8s/tool:latest"}
	out1, out2 := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	if err := build(out1, refs, cfg, entries); err != nil {
		t.Fatal(err)
	}
	if err := build(out2, refs, cfg, entries); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(out1)
	b2, _ := os.ReadFile(out2)
	if !bytes.Equal(b1, b2) {
		t.Error("two builds of the same inputs differ")
	}
	img, err := readArchive(out1)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(img.Names, ",") != strings.Join(refs, ",") {
		t.Errorf("names %v", img.Names)
	}
	for p, typ := range map[string]byte{"/usr/local/bin/tool": tar.TypeReg, "/usr/local/bin/alias": tar.TypeSymlink,
		"/usr/sbin/other": tar.TypeReg, "/var/lib/x": tar.TypeDir, "/tmp": tar.TypeDir, "/var/run": tar.TypeSymlink} {
		h, ok := img.Files[p]
		if !ok || h.Typeflag != typ {
			t.Errorf("%s: %v", p, h)
		}
	}
	if m := img.Files["/tmp"].Mode; m != 0o1777 {
		t.Errorf("/tmp mode %o", m)
	}
	if m := img.Files["/usr/sbin/other"].Mode; m != 0o700 {
		t.Errorf("/usr/sbin/other mode %o", m)
	}
	if err := cmdCheck([]string{"-name", "registry.local/k8s/tool:latest,registry.local/k8s/tool:v1", "-want", "/usr/local/bin/alias", out1}); err != nil {
		t.Error(err)
	}
	if err := cmdCheck([]string{"-name", "registry.local/k8s/tool:v2", out1}); err == nil {
		t.Error("check accepted a wrong name")
	}
	if err := cmdCheck([]string{"-want", "/usr/bin/missing", out1}); err == nil {
		t.Error("check accepted a missing file")
	}
	// A corrupted blob is caught.
	bad := bytes.Replace(b1, []byte("xxxxxxxx"), []byte("yyyyyyyy"), 1)
	os.WriteFile(filepath.Join(dir, "bad.tar"), bad, 0o644)
	if _, err := readArchive(filepath.Join(dir, "bad.tar")); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("corrupt archive: %v", err)
	}
}

func TestSpecErrors(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []string{"file a", "file a usr/bin/x", "link a /x/../y", "copy a /b", "dir /x 9z"} {
		p := filepath.Join(dir, "s")
		os.WriteFile(p, []byte(s+"\n"), 0o644)
		if _, err := readSpec(p); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	es := []entry{{kind: "file", src: filepath.Join(dir, "f"), dst: "a/b", mode: -1}, {kind: "link", src: "x", dst: "a/b"}}
	if err := writeLayer(&bytes.Buffer{}, es); err == nil {
		t.Error("duplicate path accepted")
	}
}
