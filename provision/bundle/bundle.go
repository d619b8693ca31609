// Package bundle reads and writes the air-gapped artifact bundle: a
// directory of binaries, packages and image archives with a manifest that
// records each file's sha256, so hosts never reach the network.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ManifestName is the manifest's file name inside a bundle directory.
const ManifestName = "manifest.json"

// FormatVersion changes when the manifest changes incompatibly.
const FormatVersion = 1

// Kinds of files in a bundle.
const (
	KindBinary = "binary" // bin/NAME: installed into /usr/local/bin
	KindDeb    = "deb"    // debs/*.deb: installed with dpkg
	KindRPM    = "rpm"    // rpms/*.rpm: installed with rpm
	KindImage  = "image"  // images/*.tar: OCI archives imported into containerd
	KindCNI    = "cni"    // cni/NAME: CNI plugins installed into /opt/cni/bin
	// KindAirgap are image archives a distribution loads by itself when it
	// starts (airgap/*: k3s's k3s-airgap-images-ARCH.tar[.zst|.gz]).
	KindAirgap = "airgap"
)

// File is one artifact.
type File struct {
	Path   string `json:"path"` // relative to the bundle directory, slash-separated
	Kind   string `json:"kind"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Package and Version name a .deb/.rpm; Image names an image archive.
	Package string `json:"package,omitempty"`
	Version string `json:"version,omitempty"`
	Image   string `json:"image,omitempty"`
}

// Manifest lists a bundle's files.
type Manifest struct {
	FormatVersion int               `json:"formatVersion"`
	Versions      map[string]string `json:"versions,omitempty"` // component -> version, e.g. kubernetes
	Files         []File            `json:"files"`
}

// Bundle is an opened bundle directory.
type Bundle struct {
	Dir      string
	Manifest Manifest
}

// Open reads dir's manifest. Files are checked against their sha256 when
// they are uploaded (Verify), not here: opening must stay cheap.
func Open(dir string) (*Bundle, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open bundle %s: no %s (make one with `clusterctl bundle`)", dir, ManifestName)
		}
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("open bundle %s: %s: %w", dir, ManifestName, err)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("open bundle %s: format version %d, this clusterctl reads %d", dir, m.FormatVersion, FormatVersion)
	}
	for _, f := range m.Files {
		if !filepath.IsLocal(filepath.FromSlash(f.Path)) {
			return nil, fmt.Errorf("open bundle %s: file path %q leaves the bundle", dir, f.Path)
		}
	}
	return &Bundle{Dir: dir, Manifest: m}, nil
}

// Of returns the files of one kind, in path order.
func (b *Bundle) Of(kind string) []File {
	var out []File
	for _, f := range b.Manifest.Files {
		if f.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

// Find returns the file at path.
func (b *Bundle) Find(path string) (File, bool) {
	for _, f := range b.Manifest.Files {
		if f.Path == path {
			return f, true
		}
	}
	return File{}, false
}

// LocalPath is where f is on this machine.
func (b *Bundle) LocalPath(f File) string { return filepath.Join(b.Dir, filepath.FromSlash(f.Path)) }

// Open opens f for reading after checking its size; the sha256 is checked
// on the host after upload, where it matters.
func (b *Bundle) Open(f File) (*os.File, error) {
	r, err := os.Open(b.LocalPath(f))
	if err != nil {
		return nil, fmt.Errorf("bundle file %s: %w", f.Path, err)
	}
	st, err := r.Stat()
	if err == nil && st.Size() != f.Size {
		r.Close()
		return nil, fmt.Errorf("bundle file %s: %d bytes, the manifest says %d", f.Path, st.Size(), f.Size)
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("bundle file %s: %w", f.Path, err)
	}
	return r, nil
}

// Verify re-hashes every file and reports each mismatch.
func (b *Bundle) Verify() error {
	var errs []error
	for _, f := range b.Manifest.Files {
		sum, size, err := hashFile(b.LocalPath(f))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("bundle file %s: %w", f.Path, err))
		case sum != f.SHA256 || size != f.Size:
			errs = append(errs, fmt.Errorf("bundle file %s: sha256 %s (%d bytes), the manifest says %s (%d bytes)", f.Path, sum, size, f.SHA256, f.Size))
		}
	}
	return errors.Join(errs...)
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// kindOf classifies a file by its place in the bundle layout.
func kindOf(rel string) string {
	switch {
	case strings.HasPrefix(rel, "bin/"):
		return KindBinary
	case strings.HasSuffix(rel, ".deb"):
		return KindDeb
	case strings.HasSuffix(rel, ".rpm"):
		return KindRPM
	case strings.HasPrefix(rel, "cni/") && !strings.Contains(rel[len("cni/"):], "/"):
		return KindCNI
	case strings.HasPrefix(rel, "images/") && strings.HasSuffix(rel, ".tar"):
		return KindImage
	case strings.HasPrefix(rel, "airgap/") && !strings.HasSuffix(rel, "/"):
		return KindAirgap
	}
	return ""
}

func sortFiles(fs []File) {
	sort.Slice(fs, func(i, j int) bool { return fs[i].Path < fs[j].Path })
}
