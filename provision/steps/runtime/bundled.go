package runtime

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/templates"
)

// The bundle's runtime (containerd 2, runc and the CNI plugins, built from
// Go modules) goes under /usr/local with its own unit in /etc/systemd/system.
// Both come before a distribution package's places (PATH order, systemd's
// unit search order), so a package left on the host is shadowed, never run.
const (
	UnitFile = "/etc/systemd/system/containerd.service"
	// kubeletConf exists on a node that joined a cluster: its pods run on
	// the installed runtime.
	kubeletConf = "/etc/kubernetes/kubelet.conf"
)

// binary is one executable of the bundle's runtime.
type binary struct {
	name   string // as the plan shows it
	bundle string // path in the bundle
	dst    string
}

var runtimeBinaries = []binary{
	{name: "containerd", bundle: "bin/containerd", dst: "/usr/local/bin/containerd"},
	{name: "containerd-shim-runc-v2", bundle: "bin/containerd-shim-runc-v2", dst: "/usr/local/bin/containerd-shim-runc-v2"},
	{name: "ctr", bundle: "bin/ctr", dst: "/usr/local/bin/ctr"},
	{name: "runc", bundle: "bin/runc", dst: "/usr/local/sbin/runc"},
}

// bundledFiles are the bundle's runtime files with where each goes: the
// binaries above and every cni/NAME plugin. None when the bundle carries no
// containerd (a bundle of distribution packages).
func bundledFiles(b *bundle.Bundle) ([]binary, []bundle.File, error) {
	if b == nil {
		return nil, nil, nil
	}
	if _, ok := b.Find("bin/containerd"); !ok {
		return nil, nil, nil
	}
	var bins []binary
	var files []bundle.File
	for _, bin := range runtimeBinaries {
		f, ok := b.Find(bin.bundle)
		if !ok {
			return nil, nil, fmt.Errorf("the bundle %s has bin/containerd but no %s: a runtime needs containerd, its shim, ctr and runc together", b.Dir, bin.bundle)
		}
		bins, files = append(bins, bin), append(files, f)
	}
	for _, f := range b.Of(bundle.KindCNI) {
		name := path.Base(f.Path)
		bins, files = append(bins, binary{name: "CNI plugin " + name, bundle: f.Path, dst: path.Join(CNIBinDir, name)}), append(files, f)
	}
	return bins, files, nil
}

// useBundled says whether this host runs the bundle's containerd, and when
// it does not although the bundle has one, why (the plan's note). A node
// that joined a cluster on a containerd 1.x keeps it here: swapping the
// runtime under running pods needs a drain, kube/migrate-runtime's job.
func (o Containerd) useBundled(t step.Target) (bool, string, error) {
	if o.Source != "bundle" {
		return false, "", nil
	}
	bins, _, err := bundledFiles(t.Bundle)
	if err != nil || bins == nil {
		return false, "", err
	}
	from, to, needed, err := Migration(t, o.Source)
	if err != nil {
		return false, "", err
	}
	if needed {
		return false, fmt.Sprintf("containerd %s stays on this node until kube/migrate-runtime moves it to %s (drain, swap, uncordon)", from, to), nil
	}
	return true, "", nil
}

// isV1 says whether an installed containerd version ("1.6.20~ds1") is 1.x.
func isV1(v string) bool { return strings.HasPrefix(strings.TrimPrefix(v, "v"), "1.") }

// configV3 says whether the containerd this host will run reads config
// version 3 (containerd 2): the bundle's, or an installed 2.x.
func configV3(bundled bool, installed string) bool {
	v := strings.TrimPrefix(installed, "v")
	return bundled || (v != "" && !isV1(v) && !strings.HasPrefix(v, "0."))
}

// unit is the systemd unit of the bundle's containerd (containerd's own
// containerd.service, pointed at /usr/local/bin).
func unit() ([]byte, error) { return templates.Render("containerd.service.tmpl", nil) }

// installedSums is the sha256 of each runtime file on the host.
func installedSums(ctx context.Context, h host.Host, bins []binary) (map[string]string, error) {
	var paths []string
	for _, b := range bins {
		paths = append(paths, b.dst)
	}
	sums, err := hostprep.Sums(ctx, h, paths)
	if err != nil {
		return nil, fmt.Errorf("inspect the runtime's binaries: %w", err)
	}
	return sums, nil
}

// bundledDiff is the plan's lines for the bundle's runtime on one host.
func bundledDiff(t step.Target, bins []binary, files []bundle.File, sums map[string]string) ([]step.DiffLine, error) {
	var d []step.DiffLine
	for i, b := range bins {
		cur := sums[b.dst]
		if cur == files[i].SHA256 {
			continue
		}
		from, to := "sha256:"+short(cur), "sha256:"+short(files[i].SHA256)
		if cur == "" {
			from = "(absent)"
		}
		if b.name == "containerd" {
			if t.Facts != nil && t.Facts.Containerd != "" {
				from = t.Facts.Containerd
			}
			if v := t.Bundle.Manifest.Versions["containerd"]; v != "" {
				to = v + " (bundle)"
			}
		}
		d = append(d, step.DiffLine{Key: b.name, From: from, To: to})
	}
	u, err := unit()
	if err != nil {
		return nil, err
	}
	if t.Facts != nil {
		if ft, differs := hostprep.FileDiff(t.Facts.Files, UnitFile, u); differs {
			d = append(d, step.DiffLine{Key: UnitFile, From: ft[0], To: ft[1]})
		}
	}
	return d, nil
}

// installBundled uploads every runtime file whose digest differs (sha256
// checked on the host, mode 0755) and writes the unit, reloading systemd
// when it changed; it says whether anything changed.
func installBundled(ctx context.Context, h host.Host, bd *bundle.Bundle, bins []binary, files []bundle.File) (bool, error) {
	sums, err := installedSums(ctx, h, bins)
	if err != nil {
		return false, err
	}
	changed := false
	for i, b := range bins {
		if sums[b.dst] == files[i].SHA256 {
			continue
		}
		if err := hostprep.UploadBundleFile(ctx, h, bd, files[i], b.dst, host.FileOptions{Mode: 0o755, Owner: "root", Group: "root"}); err != nil {
			return false, fmt.Errorf("install %s: %w", b.name, err)
		}
		changed = true
	}
	u, err := unit()
	if err != nil {
		return false, err
	}
	c, err := hostprep.WriteFile(ctx, h, UnitFile, u, 0o644)
	if err != nil {
		return false, err
	}
	if c {
		if err := h.Run(ctx, host.Cmd{Line: "systemctl daemon-reload"}); err != nil {
			return false, fmt.Errorf("reload systemd after writing %s: %w", UnitFile, err)
		}
	}
	return changed || c, nil
}

func short(sum string) string { return sum[:min(12, len(sum))] }
