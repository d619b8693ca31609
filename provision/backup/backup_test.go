package backup_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/backup"
)

func testCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func fixture(t *testing.T) (backup.Metadata, map[string][]byte, []byte) {
	snap := []byte(strings.Repeat("etcd snapshot bytes\n", 5000))
	sum := sha256.Sum256(snap)
	meta := backup.Metadata{Cluster: "e2e", SpecDigest: strings.Repeat("ab", 32), Distribution: "kubeadm", KubernetesVersion: "1.37.2",
		TakenAt: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC), Host: "h1",
		Etcd: backup.Etcd{Version: "3.6.0", Image: "registry.local/k8s/etcd:3.6.5-0", Member: "h1", Revision: 676, TotalKeys: 428,
			SHA256: hex.EncodeToString(sum[:]), Size: int64(len(snap))}}
	pki := map[string][]byte{"ca.crt": testCA(t), "ca.key": []byte("KEY"), "sa.key": []byte("SA"), "sa.pub": []byte("PUB"), "etcd/ca.crt": testCA(t), "etcd/ca.key": []byte("EKEY")}
	return meta, pki, snap
}

func from(b []byte) backup.SnapshotFunc {
	return func(w io.Writer) error { _, err := w.Write(b); return err }
}

func TestRoundTrip(t *testing.T) {
	meta, pki, snap := fixture(t)
	file := filepath.Join(t.TempDir(), "e2e.backup")
	sum, err := backup.WriteFile(file, meta, pki, from(snap))
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{file: 0o600, file + ".sha256": 0o644, file + ".json": 0o644} {
		st, err := os.Stat(name)
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v, want %v", name, err, st.Mode().Perm(), mode)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(file)); len(entries) != 3 {
		t.Errorf("files left: %v", entries)
	}
	side, _ := os.ReadFile(file + ".sha256")
	if string(side) != sum+"  e2e.backup\n" {
		t.Errorf(".sha256 = %q", side)
	}
	var onDisk backup.Metadata
	raw, _ := os.ReadFile(file + ".json")
	if err := json.Unmarshal(raw, &onDisk); err != nil || onDisk.CACertSHA256 == "" || len(onDisk.PKI) != 6 || strings.Contains(string(raw), "KEY") {
		t.Errorf(".json: %v\n%s", err, raw)
	}
	a, err := backup.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 != sum || len(a.Warnings) > 0 || a.Meta.Etcd.Revision != 676 || string(a.PKI["etcd/ca.key"]) != "EKEY" {
		t.Errorf("opened: sum %s (want %s), warnings %v, meta %+v", a.SHA256, sum, a.Warnings, a.Meta)
	}
	r, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != string(snap) {
		t.Errorf("snapshot differs: %d bytes", len(got))
	}
}

// A download that does not match what the control plane said leaves
// nothing behind.
func TestWriteRefusesBadDownload(t *testing.T) {
	meta, pki, snap := fixture(t)
	for name, src := range map[string]backup.SnapshotFunc{
		"corrupt":   from(append([]byte("X"), snap[1:]...)),
		"truncated": from(snap[:len(snap)-10]),
		"too long":  from(append(snap, 'x')),
		"failed":    func(io.Writer) error { return errors.New("connection lost") },
	} {
		dir := t.TempDir()
		_, err := backup.WriteFile(filepath.Join(dir, "b"), meta, pki, src)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s: files left: %v", name, entries)
		}
	}
	if _, err := backup.WriteFile(filepath.Join(t.TempDir(), "b"), meta, map[string][]byte{"../ca.crt": testCA(t), "ca.crt": testCA(t)}, from(snap)); err == nil {
		t.Error("a pki path leaving the directory was accepted")
	}
}

func TestOpenChecks(t *testing.T) {
	meta, pki, snap := fixture(t)
	write := func(t *testing.T) string {
		file := filepath.Join(t.TempDir(), "b")
		if _, err := backup.WriteFile(file, meta, pki, from(snap)); err != nil {
			t.Fatal(err)
		}
		return file
	}
	t.Run("no sidecar", func(t *testing.T) {
		file := write(t)
		os.Remove(file + ".sha256")
		a, err := backup.Open(file)
		if err != nil || len(a.Warnings) != 1 {
			t.Errorf("Open: %v, warnings %v", err, a.Warnings)
		}
	})
	t.Run("sidecar mismatch", func(t *testing.T) {
		file := write(t)
		if err := os.WriteFile(file+".sha256", []byte(strings.Repeat("0", 64)+"  b\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := backup.Open(file); !errors.Is(err, backup.ErrDigestMismatch) {
			t.Errorf("Open: %v", err)
		}
	})
	t.Run("snapshot flipped", func(t *testing.T) {
		file := write(t)
		b, _ := os.ReadFile(file)
		i := strings.LastIndex(string(b), "etcd snapshot bytes")
		b[i] = 'E'
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(file + ".sha256")
		if _, err := backup.Open(file); !errors.Is(err, backup.ErrDigestMismatch) {
			t.Errorf("Open: %v", err)
		}
	})
	t.Run("not a backup", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "x")
		if err := os.WriteFile(file, []byte("hello"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := backup.Open(file); err == nil {
			t.Error("accepted")
		}
	})
}
