// mkimage builds and checks the single-layer OCI image archives of the e2e clusters, which cannot pull from a
// registry: `ctr -n k8s.io images import X.tar` turns each archive into an image named by its
// io.containerd.image.name annotation. Standard library only (see README.md for why).
//
//	mkimage build -o X.tar -name REF[,REF...] [-entrypoint A,B] [-cmd A,B] [-env K=V]... [-port 8080/tcp]... \
//	        [-arch amd64] SPEC
//	mkimage check -name REF[,REF...] [-want /path,...] X.tar
//
// SPEC is a file (or - for stdin) with one layer entry per line; paths inside the image are absolute:
//
//	file SRC DST [MODE]   regular file DST with the content of SRC (symlinks followed); MODE octal, default
//	                      SRC's permission bits
//	link TARGET DST       symbolic link DST -> TARGET
//	dir DST [MODE]        directory (parents of every entry are created 0755 anyway)
//
// Blank lines and lines starting with # are ignored. The layer always holds /tmp (1777), /etc, /proc, /sys,
// /dev, /run and /var/run (-> /run); owners are root, times are the Unix epoch, so the same inputs give the
// same digests.
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtIndex    = "application/vnd.oci.image.index.v1+json"
	mtConfig   = "application/vnd.oci.image.config.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar"

	annContainerdName = "io.containerd.image.name"
	annRefName        = "org.opencontainers.image.ref.name"

	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

var epoch = time.Unix(0, 0).UTC()

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type imageConfig struct {
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
}

type configFile struct {
	Created      string      `json:"created"`
	Architecture string      `json:"architecture"`
	OS           string      `json:"os"`
	Config       imageConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []map[string]any `json:"history,omitempty"`
}

// entry is one line of a SPEC.
type entry struct {
	kind string // file, link, dir
	src  string // file: source path; link: target
	dst  string // path inside the image, without the leading slash
	mode int64  // -1: from the source (file) or 0755 (dir)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = cmdBuild(os.Args[2:])
	case "check":
		err = cmdCheck(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mkimage build -o X.tar -name REF[,REF] [-entrypoint A,B] [-cmd A,B] [-env K=V] [-port P/tcp] SPEC\n       mkimage check -name REF[,REF] [-want /p,/q] X.tar")
	os.Exit(2)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func cmdBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	out := fs.String("o", "", "output archive")
	names := fs.String("name", "", "comma-separated image references (registry/repo:tag)")
	ep := fs.String("entrypoint", "", "comma-separated entrypoint")
	cmd := fs.String("cmd", "", "comma-separated cmd")
	arch := fs.String("arch", runtime.GOARCH, "image architecture")
	workdir := fs.String("workdir", "/", "working directory")
	var env, ports multi
	fs.Var(&env, "env", "K=V environment entry (repeatable; PATH defaults to one with /usr/sbin and /sbin)")
	fs.Var(&ports, "port", "exposed port, e.g. 8080/tcp (repeatable)")
	fs.Parse(args)
	if *out == "" || *names == "" || fs.NArg() != 1 {
		return errors.New("build needs -o, -name and one SPEC")
	}
	refs := split(*names)
	for _, r := range refs {
		if err := checkRef(r); err != nil {
			return err
		}
	}
	entries, err := readSpec(fs.Arg(0))
	if err != nil {
		return err
	}
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append(multi{defaultPath}, env...)
	}
	cfg := configFile{Created: epoch.Format(time.RFC3339), Architecture: *arch, OS: "linux",
		Config: imageConfig{Entrypoint: split(*ep), Cmd: split(*cmd), Env: env, WorkingDir: *workdir}}
	if len(ports) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range ports {
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return build(*out, refs, cfg, entries)
}

// checkRef accepts NAME:TAG references with a registry-style name (what kubeadm and the manifests ask for).
func checkRef(r string) error {
	i := strings.LastIndex(r, ":")
	if i <= 0 || strings.Contains(r[i:], "/") || i == len(r)-1 || strings.ContainsAny(r, " \t@") {
		return fmt.Errorf("image reference %q: want name:tag", r)
	}
	return nil
}

func readSpec(name string) ([]entry, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var es []entry
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		bad := fmt.Errorf("%s:%d: bad line %q", name, n, line)
		e := entry{kind: f[0], mode: -1}
		switch {
		case f[0] == "file" && (len(f) == 3 || len(f) == 4):
			e.src, e.dst = f[1], f[2]
			if len(f) == 4 {
				m, err := strconv.ParseInt(f[3], 8, 64)
				if err != nil {
					return nil, bad
				}
				e.mode = m
			}
		case f[0] == "link" && len(f) == 3:
			e.src, e.dst = f[1], f[2]
		case f[0] == "dir" && (len(f) == 2 || len(f) == 3):
			e.dst = f[1]
			if len(f) == 3 {
				m, err := strconv.ParseInt(f[2], 8, 64)
				if err != nil {
					return nil, bad
				}
				e.mode = m
			}
		default:
			return nil, bad
		}
		if !strings.HasPrefix(e.dst, "/") || path.Clean(e.dst) != e.dst || e.dst == "/" {
			return nil, fmt.Errorf("%s:%d: destination %q must be a clean absolute path", name, n, e.dst)
		}
		e.dst = strings.TrimPrefix(e.dst, "/")
		es = append(es, e)
	}
	return es, sc.Err()
}

// hashWriter counts and hashes what goes through it.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func digestOf(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

// writeLayer writes the layer tar to w.
func writeLayer(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	seen := map[string]string{} // path -> kind
	mkdir := func(d string, mode int64) error {
		if k, ok := seen[d]; ok {
			if k != "dir" {
				return fmt.Errorf("/%s is both a %s and a directory", d, k)
			}
			return nil
		}
		seen[d] = "dir"
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	parents := func(p string) error {
		var ds []string
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			ds = append(ds, d)
		}
		for i := len(ds) - 1; i >= 0; i-- {
			if err := mkdir(ds[i], 0o755); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range []struct {
		p string
		m int64
	}{{"tmp", 0o1777}, {"etc", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}, {"run", 0o755}, {"var", 0o755}} {
		if err := mkdir(d.p, d.m); err != nil {
			return err
		}
	}
	hasVarRun := false
	for _, e := range entries {
		if e.dst == "var/run" || strings.HasPrefix(e.dst, "var/run/") {
			hasVarRun = true
		}
	}
	if !hasVarRun {
		seen["var/run"] = "link"
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "var/run", Linkname: "../run", Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := parents(e.dst); err != nil {
			return err
		}
		switch e.kind {
		case "dir":
			m := e.mode
			if m < 0 {
				m = 0o755
			}
			if err := mkdir(e.dst, m); err != nil {
				return err
			}
			continue
		}
		if k, ok := seen[e.dst]; ok {
			return fmt.Errorf("/%s given twice (%s and %s)", e.dst, k, e.kind)
		}
		seen[e.dst] = e.kind
		switch e.kind {
		case "link":
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: e.dst, Linkname: e.src, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
		case "file":
			f, err := os.Open(e.src)
			if err != nil {
				return err
			}
			st, err := f.Stat()
			if err != nil || !st.Mode().IsRegular() {
				f.Close()
				return fmt.Errorf("%s: not a regular file (%v)", e.src, err)
			}
			m := e.mode
			if m < 0 {
				m = int64(st.Mode().Perm())
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.dst, Mode: m, Size: st.Size(), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				f.Close()
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", e.src, err)
			}
		}
	}
	return tw.Close()
}

func build(out string, refs []string, cfg configFile, entries []entry) error {
	// The layer goes to a temporary file first: its digest must be known before the archive is written, and
	// kube binaries are ~100 MB.
	tmp, err := os.CreateTemp(path.Dir(out), ".layer-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	hw := &hashWriter{w: bufio.NewWriterSize(tmp, 1<<20), h: sha256.New()}
	if err := writeLayer(hw, entries); err != nil {
		return err
	}
	if err := hw.w.(*bufio.Writer).Flush(); err != nil {
		return err
	}
	layerDigest := "sha256:" + hex.EncodeToString(hw.h.Sum(nil))
	layerSize := hw.n

	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{layerDigest}
	cfg.History = []map[string]any{{"created": cfg.Created, "created_by": "clusterctl e2e/artifacts/mkimage"}}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	man := manifest{SchemaVersion: 2, MediaType: mtManifest,
		Config: descriptor{MediaType: mtConfig, Digest: digestOf(cb), Size: int64(len(cb))},
		Layers: []descriptor{{MediaType: mtLayer, Digest: layerDigest, Size: layerSize}}}
	mb, err := json.Marshal(man)
	if err != nil {
		return err
	}
	idx := index{SchemaVersion: 2, MediaType: mtIndex}
	for _, r := range refs {
		idx.Manifests = append(idx.Manifests, descriptor{MediaType: mtManifest, Digest: digestOf(mb), Size: int64(len(mb)),
			Annotations: map[string]string{annContainerdName: r, annRefName: r[strings.LastIndex(r, ":")+1:]},
			Platform:    &platform{Architecture: cfg.Architecture, OS: cfg.OS}})
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return err
	}

	part := out + ".part"
	f, err := os.Create(part)
	if err != nil {
		return err
	}
	defer os.Remove(part)
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := add("index.json", ib); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: blobPath(layerDigest), Mode: 0o644, Size: layerSize, ModTime: epoch}); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if n, err := io.Copy(tw, tmp); err != nil || n != layerSize {
		return fmt.Errorf("copying layer: %d of %d bytes: %v", n, layerSize, err)
	}
	if err := add(blobPath(digestOf(cb)), cb); err != nil {
		return err
	}
	if err := add(blobPath(digestOf(mb)), mb); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(part, out); err != nil {
		return err
	}
	fmt.Printf("%s: %s manifest %s layer %.1f MB\n", out, strings.Join(refs, ","), digestOf(mb), float64(layerSize)/1e6)
	return nil
}

func blobPath(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }

// Image is what check reads back from an archive.
type Image struct {
	Names  []string
	Config configFile
	Files  map[string]*tar.Header // layer entries by absolute path
	Layer  int64
}

// readArchive parses and validates an archive written by build (or any single-manifest OCI layout tar with
// uncompressed layers): every digest and size is verified.
func readArchive(file string) (*Image, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	blobs := map[string]int64{} // digest -> size, verified
	small := map[string][]byte{}
	var layout, idxb []byte
	img := &Image{Files: map[string]*tar.Header{}}
	layerFiles := map[string]map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch {
		case h.Name == "oci-layout":
			layout, _ = io.ReadAll(tr)
		case h.Name == "index.json":
			idxb, _ = io.ReadAll(tr)
		case strings.HasPrefix(h.Name, "blobs/sha256/") && h.Typeflag == tar.TypeReg:
			want := "sha256:" + strings.TrimPrefix(h.Name, "blobs/sha256/")
			hw := &hashWriter{w: io.Discard, h: sha256.New()}
			var buf []byte
			if h.Size < 1<<20 {
				buf, err = io.ReadAll(io.TeeReader(tr, hw))
				small[want] = buf
			} else {
				// Large blobs are layers: list their files while hashing.
				files := map[string]*tar.Header{}
				lr := tar.NewReader(io.TeeReader(tr, hw))
				for {
					lh, lerr := lr.Next()
					if lerr == io.EOF {
						break
					}
					if lerr != nil {
						return nil, fmt.Errorf("%s: layer: %w", h.Name, lerr)
					}
					files["/"+strings.TrimSuffix(lh.Name, "/")] = lh
				}
				_, err = io.Copy(io.Discard, io.TeeReader(tr, hw))
				layerFiles[want] = files
			}
			if err != nil {
				return nil, err
			}
			if got := "sha256:" + hex.EncodeToString(hw.h.Sum(nil)); got != want {
				return nil, fmt.Errorf("%s: content digest %s", h.Name, got)
			}
			blobs[want] = hw.n
		}
	}
	if string(layout) != `{"imageLayoutVersion":"1.0.0"}` {
		return nil, fmt.Errorf("oci-layout missing or wrong: %q", layout)
	}
	var idx index
	if err := json.Unmarshal(idxb, &idx); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	if len(idx.Manifests) == 0 {
		return nil, errors.New("index.json lists no manifest")
	}
	var md string
	for _, d := range idx.Manifests {
		if md != "" && d.Digest != md {
			return nil, errors.New("index.json lists more than one manifest")
		}
		md = d.Digest
		if d.MediaType != mtManifest || blobs[d.Digest] != d.Size {
			return nil, fmt.Errorf("manifest %s: missing, wrong size or media type", d.Digest)
		}
		n := d.Annotations[annContainerdName]
		if n == "" {
			return nil, fmt.Errorf("manifest %s: no %s annotation", d.Digest, annContainerdName)
		}
		img.Names = append(img.Names, n)
	}
	var man manifest
	if err := json.Unmarshal(small[md], &man); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if man.SchemaVersion != 2 || man.Config.MediaType != mtConfig || blobs[man.Config.Digest] != man.Config.Size {
		return nil, errors.New("manifest: bad schema, or config missing")
	}
	if err := json.Unmarshal(small[man.Config.Digest], &img.Config); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(man.Layers) != 1 || man.Layers[0].MediaType != mtLayer || blobs[man.Layers[0].Digest] != man.Layers[0].Size {
		return nil, errors.New("manifest: want exactly one uncompressed layer, present with its size")
	}
	if len(img.Config.RootFS.DiffIDs) != 1 || img.Config.RootFS.DiffIDs[0] != man.Layers[0].Digest {
		return nil, errors.New("config: diff_ids do not match the layer")
	}
	img.Files = layerFiles[man.Layers[0].Digest]
	if img.Files == nil { // a small layer was read into memory: list it now
		img.Files = map[string]*tar.Header{}
		lr := tar.NewReader(strings.NewReader(string(small[man.Layers[0].Digest])))
		for {
			lh, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("layer: %w", err)
			}
			img.Files["/"+strings.TrimSuffix(lh.Name, "/")] = lh
		}
	}
	img.Layer = man.Layers[0].Size
	return img, nil
}

func cmdCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	names := fs.String("name", "", "comma-separated references the archive must be named by, exactly")
	want := fs.String("want", "", "comma-separated absolute paths that must be executable files (or links) in the layer")
	fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("check needs one archive")
	}
	img, err := readArchive(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	got := append([]string(nil), img.Names...)
	exp := split(*names)
	sort.Strings(got)
	sort.Strings(exp)
	if *names != "" && strings.Join(got, ",") != strings.Join(exp, ",") {
		return fmt.Errorf("%s: named %v, want %v", fs.Arg(0), got, exp)
	}
	for _, p := range split(*want) {
		h, ok := img.Files[p]
		for i := 0; ok && h.Typeflag == tar.TypeSymlink && i < 10; i++ {
			t := h.Linkname
			if !strings.HasPrefix(t, "/") {
				t = path.Join(path.Dir(p), t)
			}
			p = t
			h, ok = img.Files[p]
		}
		if !ok || h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
			return fmt.Errorf("%s: %s is not an executable file in the layer", fs.Arg(0), p)
		}
	}
	for _, d := range []string{"/tmp", "/etc", "/proc", "/sys", "/dev"} {
		if h, ok := img.Files[d]; !ok || h.Typeflag != tar.TypeDir {
			return fmt.Errorf("%s: no %s directory", fs.Arg(0), d)
		}
	}
	pathOK := false
	for _, e := range img.Config.Config.Env {
		if strings.HasPrefix(e, "PATH=") && strings.Contains(":"+e[5:]+":", ":/usr/sbin:") && strings.Contains(":"+e[5:]+":", ":/sbin:") {
			pathOK = true
		}
	}
	if !pathOK {
		return fmt.Errorf("%s: PATH lacks /usr/sbin or /sbin: %v", fs.Arg(0), img.Config.Config.Env)
	}
	fmt.Printf("ok %s: %s, %d entries, layer %.1f MB, entrypoint %v\n", fs.Arg(0), strings.Join(img.Names, ","), len(img.Files), float64(img.Layer)/1e6, img.Config.Config.Entrypoint)
	return nil
}
