package bundle

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// AssembleOptions says what goes into a bundle.
type AssembleOptions struct {
	// Sources are directories laid out like a bundle (bin/, cni/, debs/,
	// rpms/, images/); later sources win when two hold the same path.
	Sources []string
	// Versions are recorded in the manifest (e.g. "kubernetes": "1.37.2").
	Versions map[string]string
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// Assemble writes a bundle into out: every artifact of the sources copied
// (hard-linked when it can), hashed, and a manifest written last, so a
// directory with a manifest is always complete.
func Assemble(out string, opt AssembleOptions) (*Manifest, error) {
	logf := opt.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	files := map[string]string{} // bundle path -> source file
	for _, src := range opt.Sources {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if kindOf(rel) != "" {
				files[rel] = p
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read bundle source %s: %w", src, err)
		}
	}
	if err := oneVersionEach(files); err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("assemble bundle: no artifacts (bin/*, cni/*, debs/*.deb, rpms/*.rpm, images/*.tar, airgap/*) in %s", strings.Join(opt.Sources, ", "))
	}
	// A stale manifest must not describe a half-copied directory.
	if err := os.Remove(filepath.Join(out, ManifestName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("assemble bundle: %w", err)
	}
	m := &Manifest{FormatVersion: FormatVersion, Versions: opt.Versions}
	for rel, src := range files {
		dst := filepath.Join(out, filepath.FromSlash(rel))
		if err := place(src, dst); err != nil {
			return nil, fmt.Errorf("assemble bundle: %s: %w", rel, err)
		}
		sum, size, err := hashFile(dst)
		if err != nil {
			return nil, fmt.Errorf("assemble bundle: %s: %w", rel, err)
		}
		f := File{Path: rel, Kind: kindOf(rel), SHA256: sum, Size: size}
		switch f.Kind {
		case KindDeb, KindRPM:
			f.Package, f.Version = packageOf(rel)
		case KindImage:
			if f.Image, err = imageName(dst); err != nil {
				return nil, fmt.Errorf("assemble bundle: %s: %w", rel, err)
			}
		}
		m.Files = append(m.Files, f)
		logf("bundle: %s (%s, %d MiB)", rel, f.Kind, size>>20)
	}
	sortFiles(m.Files)
	if err := writeManifest(out, m); err != nil {
		return nil, err
	}
	return m, nil
}

// oneVersionEach refuses two versions of one package (and architecture),
// e.g. from sources built for two Debian releases: hosts would be handed
// both to install at once.
func oneVersionEach(files map[string]string) error {
	seen := map[string]string{} // kind, name and arch -> bundle path
	var errs []error
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		kind := kindOf(rel)
		if kind != KindDeb && kind != KindRPM {
			continue
		}
		name, _ := packageOf(rel)
		key := kind + " " + name + " " + packageArch(rel)
		if prev, ok := seen[key]; ok {
			errs = append(errs, fmt.Errorf("assemble bundle: package %s twice, %s (from %s) and %s (from %s): give the sources of one release",
				name, prev, files[prev], rel, files[rel]))
			continue
		}
		seen[key] = rel
	}
	return errors.Join(errs...)
}

// packageArch is the ARCH of NAME_VERSION_ARCH.deb or NAME-V-R.ARCH.rpm.
func packageArch(rel string) string {
	base := filepath.Base(rel)
	if stem, ok := strings.CutSuffix(base, ".deb"); ok {
		parts := strings.Split(stem, "_")
		return parts[len(parts)-1]
	}
	stem := strings.TrimSuffix(base, ".rpm")
	if i := strings.LastIndexByte(stem, '.'); i > 0 {
		return stem[i+1:]
	}
	return ""
}

// place hard-links src to dst, or copies it across file systems.
func place(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if same(src, dst) {
		return nil
	}
	tmp := dst + ".partial"
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	return os.Rename(tmp, dst)
}

func same(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// packageOf reads NAME_VERSION_ARCH.deb (or NAME-VERSION-RELEASE.ARCH.rpm)
// as apt-get download and dnf download name them; epochs arrive
// URL-escaped (1%3a2.0).
func packageOf(rel string) (name, version string) {
	base := filepath.Base(rel)
	if strings.HasSuffix(base, ".deb") {
		parts := strings.Split(strings.TrimSuffix(base, ".deb"), "_")
		if len(parts) >= 2 {
			v, err := url.PathUnescape(parts[1])
			if err != nil {
				v = parts[1]
			}
			return parts[0], v
		}
		return strings.TrimSuffix(base, ".deb"), ""
	}
	stem := strings.TrimSuffix(base, ".rpm")
	if i := strings.LastIndexByte(stem, '.'); i > 0 {
		stem = stem[:i] // arch
	}
	parts := strings.Split(stem, "-")
	if len(parts) >= 3 {
		return strings.Join(parts[:len(parts)-2], "-"), parts[len(parts)-2] + "-" + parts[len(parts)-1]
	}
	return stem, ""
}

// imageName reads the io.containerd.image.name annotation from an OCI
// archive's index.json: that is the name ctr import gives the image.
func imageName(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", errors.New("not an OCI image archive: no index.json")
		}
		if err != nil {
			return "", fmt.Errorf("read image archive: %w", err)
		}
		if strings.TrimPrefix(h.Name, "./") != "index.json" {
			continue
		}
		var idx struct {
			Manifests []struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&idx); err != nil {
			return "", fmt.Errorf("read index.json: %w", err)
		}
		for _, m := range idx.Manifests {
			if n := m.Annotations["io.containerd.image.name"]; n != "" {
				return n, nil
			}
		}
		return "", errors.New("index.json names no image (annotation io.containerd.image.name)")
	}
}

func writeManifest(out string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write bundle manifest: %w", err)
	}
	tmp := filepath.Join(out, "."+ManifestName+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write bundle manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(out, ManifestName)); err != nil {
		return fmt.Errorf("write bundle manifest: %w", err)
	}
	return nil
}
