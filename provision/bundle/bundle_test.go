package bundle

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func ociArchive(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	index := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"io.containerd.image.name":"` + name + `"}}]}`
	for _, f := range []struct{ name, body string }{{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, {"index.json", index}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestAssembleOpenVerify(t *testing.T) {
	src1, src2, out := t.TempDir(), t.TempDir(), t.TempDir()
	write(t, filepath.Join(src1, "bin", "kubelet"), []byte("kubelet v1"))
	write(t, filepath.Join(src1, "debs", "containerd_1.6.20~ds1-1+b1_amd64.deb"), []byte("deb"))
	write(t, filepath.Join(src1, "debs", "iptables_1%3a1.8.9-2_amd64.deb"), []byte("deb2"))
	write(t, filepath.Join(src1, "images", "pause.tar"), ociArchive(t, "registry.local/k8s/pause:3.10.1"))
	write(t, filepath.Join(src1, "README"), []byte("not an artifact"))
	write(t, filepath.Join(src2, "bin", "kubelet"), []byte("kubelet v2: later sources win"))

	m, err := Assemble(out, AssembleOptions{Sources: []string{src1, src2}, Versions: map[string]string{"kubernetes": "1.37.2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 4 {
		t.Fatalf("%d files, want 4: %+v", len(m.Files), m.Files)
	}
	b, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}
	deb, _ := b.Find("debs/iptables_1%3a1.8.9-2_amd64.deb")
	if deb.Package != "iptables" || deb.Version != "1:1.8.9-2" || deb.Kind != KindDeb {
		t.Errorf("deb = %+v", deb)
	}
	img := b.Of(KindImage)
	if len(img) != 1 || img[0].Image != "registry.local/k8s/pause:3.10.1" {
		t.Errorf("images = %+v", img)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "bin", "kubelet")); string(got) != "kubelet v2: later sources win" {
		t.Errorf("kubelet = %q", got)
	}

	// Tampering is found, and named.
	write(t, filepath.Join(out, "bin", "kubelet"), []byte("evil"))
	if err := b.Verify(); err == nil || !strings.Contains(err.Error(), "bin/kubelet: sha256") {
		t.Fatalf("Verify after tampering: %v", err)
	}
	if _, err := b.Open(deb); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "no manifest.json") {
		t.Fatalf("missing manifest: %v", err)
	}
	write(t, filepath.Join(dir, ManifestName), []byte(`{"formatVersion":1,"files":[{"path":"../../etc/passwd","kind":"binary"}]}`))
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "leaves the bundle") {
		t.Fatalf("path traversal: %v", err)
	}
	write(t, filepath.Join(dir, ManifestName), []byte(`{"formatVersion":9}`))
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "format version 9") {
		t.Fatalf("future format: %v", err)
	}
	write(t, filepath.Join(dir, ManifestName), []byte(`{garbage`))
	if _, err := Open(dir); err == nil {
		t.Fatal("garbage manifest accepted")
	}
}

func TestAssembleRejectsNonOCIImage(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "images", "x.tar"), []byte("not a tar"))
	if _, err := Assemble(t.TempDir(), AssembleOptions{Sources: []string{src}}); err == nil {
		t.Fatal("a broken image archive was accepted")
	}
	if _, err := Assemble(t.TempDir(), AssembleOptions{Sources: []string{t.TempDir()}}); err == nil || !strings.Contains(err.Error(), "no artifacts") {
		t.Fatalf("empty sources: %v", err)
	}
}

func TestPackageOf(t *testing.T) {
	for in, want := range map[string][2]string{
		"debs/socat_1.7.4.4-2_amd64.deb":               {"socat", "1.7.4.4-2"},
		"debs/libc6_2.36-9+deb12u7_amd64.deb":          {"libc6", "2.36-9+deb12u7"},
		"rpms/conntrack-tools-1.4.7-2.el9.x86_64.rpm":  {"conntrack-tools", "1.4.7-2.el9"},
		"rpms/containerd.io-1.7.13-3.1.el9.x86_64.rpm": {"containerd.io", "1.7.13-3.1.el9"},
	} {
		n, v := packageOf(in)
		if n != want[0] || v != want[1] {
			t.Errorf("packageOf(%s) = %s %s, want %s %s", in, n, v, want[0], want[1])
		}
	}
}

// k3s's air-gap archive is no OCI image of its own: it lands in airgap/,
// kind airgap, and is never opened as an image.
func TestAssembleAirgap(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, "bin", "k3s"), []byte("k3s"))
	write(t, filepath.Join(src, "airgap", "k3s-airgap-images-amd64.tar.zst"), []byte("zstd, not a tar"))
	m, err := Assemble(out, AssembleOptions{Sources: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	b := &Bundle{Dir: out, Manifest: *m}
	got := b.Of(KindAirgap)
	if len(got) != 1 || got[0].Path != "airgap/k3s-airgap-images-amd64.tar.zst" || got[0].Image != "" {
		t.Fatalf("airgap files: %+v", got)
	}
	if len(b.Of(KindBinary)) != 1 {
		t.Errorf("binaries: %+v", b.Of(KindBinary))
	}
}

// Two versions of one package from two sources (two Debian releases) are
// refused with both files named; two architectures of one are not.
func TestAssembleRejectsTwoVersions(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	write(t, filepath.Join(a, "debs", "containerd_1.6.20~ds1-1+deb12u1_amd64.deb"), []byte("bookworm"))
	write(t, filepath.Join(b, "debs", "containerd_1.7.24~ds1-6+deb13u1_amd64.deb"), []byte("trixie"))
	write(t, filepath.Join(b, "debs", "socat_1.8.0.3-1_amd64.deb"), []byte("socat"))
	out := t.TempDir()
	_, err := Assemble(out, AssembleOptions{Sources: []string{a, b}})
	if err == nil || !strings.Contains(err.Error(), "package containerd twice") || !strings.Contains(err.Error(), "1.6.20") ||
		!strings.Contains(err.Error(), "1.7.24") || strings.Contains(err.Error(), "socat") {
		t.Fatalf("error %v, want containerd's two versions named", err)
	}
	if _, err := os.Stat(filepath.Join(out, "debs")); !os.IsNotExist(err) {
		t.Errorf("a refused bundle was written: %v", err)
	}
	write(t, filepath.Join(b, "debs", "containerd_1.6.20~ds1-1+deb12u1_arm64.deb"), []byte("arm"))
	os.Remove(filepath.Join(b, "debs", "containerd_1.7.24~ds1-6+deb13u1_amd64.deb"))
	if _, err := Assemble(t.TempDir(), AssembleOptions{Sources: []string{a, b}}); err != nil {
		t.Errorf("two architectures: %v", err)
	}
}

// CNI plugins are cni/NAME; anything deeper under cni/ is not an artifact.
func TestAssembleCNI(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, "cni", "bridge"), []byte("bridge"))
	write(t, filepath.Join(src, "cni", "docs", "README"), []byte("not a plugin"))
	m, err := Assemble(out, AssembleOptions{Sources: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	b := &Bundle{Dir: out, Manifest: *m}
	got := b.Of(KindCNI)
	if len(got) != 1 || got[0].Path != "cni/bridge" || len(m.Files) != 1 {
		t.Fatalf("files: %+v", m.Files)
	}
}
