// Package backup reads and writes clusterctl's backup file: one tar archive
// holding an etcd snapshot, the control plane's certificate authorities and
// service-account key pair, and a description of both. With FILE go
// FILE.sha256 (sha256sum -c reads it) and FILE.json (the description, no
// secrets). The archive itself is a secret: it holds the cluster's CA keys
// and every Secret of the cluster; it is written with mode 0600.
package backup

import (
	"archive/tar"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FormatVersion changes when the archive changes incompatibly.
const FormatVersion = 1

// Names inside the archive, in this order.
const (
	MetadataName = "clusterctl-backup.json"
	PKIPrefix    = "pki/"
	SnapshotName = "etcd/snapshot.db"
)

// Metadata describes a backup. It holds no secret.
type Metadata struct {
	FormatVersion     int       `json:"formatVersion"`
	Cluster           string    `json:"cluster"`
	SpecDigest        string    `json:"specDigest"`
	Distribution      string    `json:"distribution"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	ClusterctlVersion string    `json:"clusterctlVersion,omitempty"`
	TakenAt           time.Time `json:"takenAt"`
	// Host is the control plane the snapshot was taken on.
	Host string `json:"host"`
	Etcd Etcd   `json:"etcd"`
	// PKI lists the files under pki/ (paths relative to kubeadm's
	// /etc/kubernetes/pki).
	PKI []string `json:"pki"`
	// CACertSHA256 is the sha256 of the cluster CA certificate (DER): it
	// tells whether a cluster's certificates are the backup's.
	CACertSHA256 string `json:"caCertSHA256"`
}

// Etcd describes the snapshot.
type Etcd struct {
	Version   string `json:"version"`
	Image     string `json:"image"`
	Member    string `json:"member"`
	Revision  int64  `json:"revision"`
	TotalKeys int64  `json:"totalKeys"`
	Hash      uint32 `json:"hash"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
}

// CertSHA256 is the sha256 (hex) of a PEM certificate's DER bytes.
func CertSHA256(pemBytes []byte) (string, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("not a PEM certificate")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return "", fmt.Errorf("parse certificate: %w", err)
	}
	s := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(s[:]), nil
}

func (m Metadata) validate() error {
	var errs []error
	if m.FormatVersion != FormatVersion {
		errs = append(errs, fmt.Errorf("format version %d, this clusterctl reads %d", m.FormatVersion, FormatVersion))
	}
	if m.Cluster == "" {
		errs = append(errs, errors.New("no cluster name"))
	}
	if len(m.Etcd.SHA256) != 64 || m.Etcd.Size <= 0 {
		errs = append(errs, errors.New("no snapshot digest and size"))
	}
	for _, p := range m.PKI {
		if !validPKIPath(p) {
			errs = append(errs, fmt.Errorf("pki file %q", p))
		}
	}
	if len(m.CACertSHA256) != 64 {
		errs = append(errs, errors.New("no CA certificate digest"))
	}
	return errors.Join(errs...)
}

// validPKIPath: a relative path of letters, digits, '.', '-', '_' and at
// most one directory level (etcd/ca.key), never leaving the pki directory.
func validPKIPath(p string) bool {
	if p == "" || path.Clean(p) != p || strings.HasPrefix(p, "/") || strings.Contains(p, "..") || strings.Count(p, "/") > 1 {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("./-_", r)) {
			return false
		}
	}
	return true
}

// SnapshotFunc writes the snapshot's bytes to w (downloading it).
type SnapshotFunc func(w io.Writer) error

// ErrDigestMismatch: bytes are not what their recorded sha256 says.
var ErrDigestMismatch = errors.New("sha256 mismatch")

// Write writes the archive to w: the metadata, the pki files, then the
// snapshot from snap, which must be exactly meta.Etcd.Size bytes with
// sha256 meta.Etcd.SHA256 (checked as they pass).
func Write(w io.Writer, meta Metadata, pki map[string][]byte, snap SnapshotFunc) error {
	meta, err := complete(meta, pki)
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	mod := meta.TakenAt.UTC().Truncate(time.Second)
	put := func(name string, mode int64, size int64) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, ModTime: mod, Typeflag: tar.TypeReg, Format: tar.FormatPAX})
	}
	if err := put(MetadataName, 0o644, int64(len(raw)+1)); err != nil {
		return err
	}
	if _, err := tw.Write(append(raw, '\n')); err != nil {
		return err
	}
	for _, p := range meta.PKI {
		if err := put(PKIPrefix+p, 0o600, int64(len(pki[p]))); err != nil {
			return err
		}
		if _, err := tw.Write(pki[p]); err != nil {
			return err
		}
	}
	if err := put(SnapshotName, 0o600, meta.Etcd.Size); err != nil {
		return err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tw, h)}
	if err := snap(cw); err != nil {
		return fmt.Errorf("backup: copy the snapshot: %w", err)
	}
	if cw.n != meta.Etcd.Size {
		return fmt.Errorf("backup: the snapshot is %d bytes, the control plane said %d", cw.n, meta.Etcd.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != meta.Etcd.SHA256 {
		return fmt.Errorf("backup: the snapshot copied here has sha256 %s, on the control plane %s: %w", got, meta.Etcd.SHA256, ErrDigestMismatch)
	}
	return tw.Close()
}

// complete fills what the archive's content decides (format, pki list, CA
// digest) and checks the result.
func complete(meta Metadata, pki map[string][]byte) (Metadata, error) {
	meta.FormatVersion = FormatVersion
	meta.PKI = slices.Sorted(mapKeys(pki))
	ca, ok := pki["ca.crt"]
	if !ok {
		return meta, errors.New("backup: no ca.crt among the certificates")
	}
	sum, err := CertSHA256(ca)
	if err != nil {
		return meta, fmt.Errorf("backup: ca.crt: %w", err)
	}
	meta.CACertSHA256 = sum
	if err := meta.validate(); err != nil {
		return meta, fmt.Errorf("backup: %w", err)
	}
	return meta, nil
}

func mapKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteFile writes the archive to file atomically (a temporary file beside
// it, mode 0600, fsync, rename), then file.sha256 and file.json the same
// way. It returns the archive's sha256. Nothing is left behind on failure.
func WriteFile(file string, meta Metadata, pki map[string][]byte, snap SnapshotFunc) (string, error) {
	meta, err := complete(meta, pki)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	err = writeAtomic(file, 0o600, func(w io.Writer) error {
		return Write(io.MultiWriter(w, h), meta, pki, snap)
	})
	if err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	raw, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return "", err
	}
	side := []struct {
		name string
		data []byte
	}{
		{file + ".sha256", []byte(sum + "  " + filepath.Base(file) + "\n")},
		{file + ".json", append(raw, '\n')},
	}
	for _, s := range side {
		if err := writeAtomic(s.name, 0o644, func(w io.Writer) error { _, err := w.Write(s.data); return err }); err != nil {
			return "", err
		}
	}
	return sum, nil
}

func writeAtomic(file string, mode os.FileMode, fill func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := os.Rename(f.Name(), file); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// Archive is a backup file read and checked by Open.
type Archive struct {
	Path string
	Meta Metadata
	// PKI holds the certificate authorities and service-account keys by
	// path relative to /etc/kubernetes/pki. Secrets.
	PKI map[string][]byte
	// SHA256 is the archive's digest.
	SHA256 string
	// Warnings are doubts that are not errors (no .sha256 file beside it).
	Warnings []string
}

// Open reads file and checks it: its digest against file.sha256 (when
// there is one), the metadata, every pki file it lists, and the snapshot's
// size and sha256 against the metadata.
func Open(file string) (*Archive, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open backup: %w", err)
	}
	defer f.Close()
	a := &Archive{Path: file, PKI: map[string][]byte{}}
	whole := sha256.New()
	tr := tar.NewReader(io.TeeReader(f, whole))
	var snapSum string
	var snapSize int64
	seenMeta, seenSnap := false, false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read backup %s: %w", file, err)
		}
		switch {
		case hdr.Name == MetadataName && !seenMeta:
			raw, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("read backup %s: %w", file, err)
			}
			if err := json.Unmarshal(raw, &a.Meta); err != nil {
				return nil, fmt.Errorf("read backup %s: %s: %w", file, MetadataName, err)
			}
			if err := a.Meta.validate(); err != nil {
				return nil, fmt.Errorf("read backup %s: %w", file, err)
			}
			seenMeta = true
		case strings.HasPrefix(hdr.Name, PKIPrefix) && seenMeta:
			p := strings.TrimPrefix(hdr.Name, PKIPrefix)
			if !slices.Contains(a.Meta.PKI, p) {
				return nil, fmt.Errorf("read backup %s: %s is not in its metadata", file, hdr.Name)
			}
			b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("read backup %s: %w", file, err)
			}
			a.PKI[p] = b
		case hdr.Name == SnapshotName && seenMeta && !seenSnap:
			h := sha256.New()
			n, err := io.Copy(h, tr)
			if err != nil {
				return nil, fmt.Errorf("read backup %s: %w", file, err)
			}
			snapSum, snapSize, seenSnap = hex.EncodeToString(h.Sum(nil)), n, true
		default:
			return nil, fmt.Errorf("read backup %s: unexpected entry %s (not a clusterctl backup, or made by another version)", file, hdr.Name)
		}
	}
	// The rest of the file (tar padding) counts for the whole digest.
	if _, err := io.Copy(whole, f); err != nil {
		return nil, fmt.Errorf("read backup %s: %w", file, err)
	}
	a.SHA256 = hex.EncodeToString(whole.Sum(nil))
	if !seenMeta || !seenSnap {
		return nil, fmt.Errorf("read backup %s: no %s or no %s: not a clusterctl backup", file, MetadataName, SnapshotName)
	}
	for _, p := range a.Meta.PKI {
		if _, ok := a.PKI[p]; !ok {
			return nil, fmt.Errorf("read backup %s: pki/%s is missing", file, p)
		}
	}
	if snapSize != a.Meta.Etcd.Size || snapSum != a.Meta.Etcd.SHA256 {
		return nil, fmt.Errorf("read backup %s: the snapshot has %d bytes, sha256 %s; its metadata says %d bytes, sha256 %s: %w",
			file, snapSize, snapSum, a.Meta.Etcd.Size, a.Meta.Etcd.SHA256, ErrDigestMismatch)
	}
	if sum, err := CertSHA256(a.PKI["ca.crt"]); err != nil || sum != a.Meta.CACertSHA256 {
		return nil, fmt.Errorf("read backup %s: pki/ca.crt does not match its metadata", file)
	}
	side, err := os.ReadFile(file + ".sha256")
	switch {
	case errors.Is(err, os.ErrNotExist):
		a.Warnings = append(a.Warnings, fmt.Sprintf("%s.sha256 is missing: the archive was checked against its own metadata only", file))
	case err != nil:
		return nil, fmt.Errorf("read %s.sha256: %w", file, err)
	default:
		want, _, _ := strings.Cut(strings.TrimSpace(string(side)), " ")
		if want != a.SHA256 {
			return nil, fmt.Errorf("backup %s has sha256 %s, %s.sha256 says %s: %w", file, a.SHA256, file, want, ErrDigestMismatch)
		}
	}
	return a, nil
}

// Snapshot opens the archive's etcd snapshot for reading.
func (a *Archive) Snapshot() (io.ReadCloser, error) {
	f, err := os.Open(a.Path)
	if err != nil {
		return nil, fmt.Errorf("open backup: %w", err)
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read backup %s: no snapshot: %w", a.Path, err)
		}
		if hdr.Name == SnapshotName {
			return struct {
				io.Reader
				io.Closer
			}{tr, f}, nil
		}
	}
}

// KeyFile says whether a pki file is a private key (mode 0600 on hosts).
func KeyFile(p string) bool { return strings.HasSuffix(p, ".key") }
