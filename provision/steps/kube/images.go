package kube

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
)

// ContainerdNamespace is where the CRI plugin (and so the kubelet) looks
// for images.
const ContainerdNamespace = "k8s.io"

// controlPlaneOnly are the images of kubeadm's static pods: workers never
// run them, so they are not uploaded there (about 300 MB a worker).
var controlPlaneOnly = map[string]bool{
	"kube-apiserver": true, "kube-controller-manager": true, "kube-scheduler": true, "etcd": true,
}

// imageBase is an image reference's last path element without tag or
// digest: "registry.local/k8s/etcd:3.6.5-0" -> "etcd".
func imageBase(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	base := path.Base(ref)
	if i := strings.LastIndexByte(base, ':'); i > 0 {
		base = base[:i]
	}
	return base
}

// wanted are the bundle's image archives this node's role runs.
func (o Images) wanted(b *bundle.Bundle) ([]bundle.File, error) {
	var out []bundle.File
	for _, f := range b.Of(bundle.KindImage) {
		if f.Image == "" {
			return nil, fmt.Errorf("bundle image %s names no image (no io.containerd.image.name annotation)", f.Path)
		}
		if o.Role != "control-plane" && controlPlaneOnly[imageBase(f.Image)] {
			continue
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the bundle %s has no images (images/*.tar): add the image archives to a --from directory and run `clusterctl bundle` again", b.Dir)
	}
	return out, nil
}

// listImages returns the images containerd's k8s.io namespace holds, name
// -> manifest digest; with lenient, a host without a running containerd
// holds none.
func listImages(ctx context.Context, h host.Host, lenient bool) (map[string]string, error) {
	line := "ctr -n " + ContainerdNamespace + " images ls"
	if lenient {
		line = "{ command -v ctr >/dev/null && " + line + "; } 2>/dev/null || true"
	}
	out, err := runOut(ctx, h, line)
	if err != nil {
		return nil, fmt.Errorf("list containerd's images: %w", err)
	}
	have := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		// REF TYPE DIGEST SIZE PLATFORMS LABELS
		if f := strings.Fields(l); len(f) >= 3 && f[0] != "REF" {
			have[f[0]] = f[2]
		}
	}
	return have, nil
}

// archiveDigest is the manifest digest an image archive of the bundle
// imports as: its index.json's entry for the image (the archive is on this
// machine; index.json is small and near its start).
func archiveDigest(b *bundle.Bundle, f bundle.File) (string, error) {
	r, err := os.Open(b.LocalPath(f))
	if err != nil {
		return "", fmt.Errorf("bundle image %s: %w", f.Path, err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return "", fmt.Errorf("bundle image %s: no index.json (not an OCI archive): %w", f.Path, err)
		}
		if path.Clean(hdr.Name) != "index.json" {
			continue
		}
		var idx struct {
			Manifests []struct {
				Digest      string            `json:"digest"`
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			return "", fmt.Errorf("bundle image %s: index.json: %w", f.Path, err)
		}
		for _, m := range idx.Manifests {
			if m.Annotations["io.containerd.image.name"] == f.Image {
				return m.Digest, nil
			}
		}
		return "", fmt.Errorf("bundle image %s: index.json names no image %s", f.Path, f.Image)
	}
}

// staleImage is a wanted image containerd lacks (have "") or holds at
// another digest (rebuilt under the same name).
type staleImage struct {
	f          bundle.File
	have, want string
}

// stale lists the stale images and how many this node wants.
func (o Images) stale(ctx context.Context, t step.Target, lenient bool) ([]staleImage, int, error) {
	if t.Bundle == nil {
		return nil, 0, errors.New("images come from the bundle, but no bundle was given")
	}
	want, err := o.wanted(t.Bundle)
	if err != nil {
		return nil, 0, err
	}
	have, err := listImages(ctx, t.Host, lenient)
	if err != nil {
		return nil, 0, err
	}
	var out []staleImage
	for _, f := range want {
		d, err := archiveDigest(t.Bundle, f)
		if err != nil {
			return nil, 0, err
		}
		if have[f.Image] != d {
			out = append(out, staleImage{f: f, have: have[f.Image], want: d})
		}
	}
	return out, len(want), nil
}

func shortDigest(d string) string { return short(strings.TrimPrefix(d, "sha256:")) }

// Check lists the bundle's images containerd lacks, or holds at another
// manifest digest than the bundle's archive.
func (o Images) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	stale, total, err := o.stale(ctx, t, true)
	if err != nil {
		return step.Change{}, err
	}
	var ch step.Change
	missing := 0
	for _, s := range stale {
		from := "(missing)"
		if s.have != "" {
			from = shortDigest(s.have)
		} else {
			missing++
		}
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "image " + s.f.Image, From: from,
			To: fmt.Sprintf("%s from %s (%d MiB)", shortDigest(s.want), s.f.Path, s.f.Size>>20)})
	}
	switch {
	case len(stale) == 0:
		ch.Action = step.ActionNone
	case missing == total:
		ch.Action = step.ActionCreate
	default:
		ch.Action = step.ActionUpdate
	}
	return ch, nil
}

// Apply stages each missing or stale archive (sha256 checked on the host),
// imports it into containerd's k8s.io namespace and deletes it, then checks that every image is there at the
// bundle's digest. Running containers keep the image they started with.
func (o Images) Apply(ctx context.Context, t step.Target) error {
	stale, _, err := o.stale(ctx, t, false)
	if err != nil {
		return err
	}
	if len(stale) == 0 {
		return nil
	}
	h := t.Host
	// One archive at a time, so the host holds at most one extra copy.
	staging := hostprep.NewStaging("images")
	for _, s := range stale {
		staged, err := staging.Stage(ctx, h, t.Bundle, []bundle.File{s.f})
		if err != nil {
			return err
		}
		line := host.Join("ctr", "-n", ContainerdNamespace, "images", "import", staged[0]) + " >/dev/null && " + host.Join("rm", "-f", "--", staged[0])
		if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
			return fmt.Errorf("import %s: %w", s.f.Image, err)
		}
	}
	left, _, err := o.stale(ctx, t, false)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		names := make([]string, len(left))
		for i, s := range left {
			names[i] = s.f.Image + " (" + s.f.Path + ")"
		}
		return fmt.Errorf("containerd does not hold %s at the archive's digest after the import", strings.Join(names, ", "))
	}
	return nil
}
