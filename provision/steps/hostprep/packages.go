package hostprep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Package names as apt and dnf accept them, optionally pinned (name=ver).
var packageRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+_~-]*(=[A-Za-z0-9.+_~:-]+)?$`)

func (o Packages) validate() error {
	if o.Source != "online" && o.Source != "bundle" {
		return fmt.Errorf("packages source %q: want online or bundle", o.Source)
	}
	for _, n := range o.Names {
		if !packageRE.MatchString(n) {
			return fmt.Errorf("package name %q is not a package name", n)
		}
	}
	return nil
}

func (o Packages) Needs() facts.Request {
	names := make([]string, len(o.Names))
	for i, n := range o.Names {
		names[i], _, _ = strings.Cut(n, "=")
	}
	return facts.Request{Packages: names}
}

// bundleKind is the bundle file kind a package manager installs.
func bundleKind(pm string) (string, error) {
	switch pm {
	case "apt":
		return bundle.KindDeb, nil
	case "dnf", "yum":
		return bundle.KindRPM, nil
	}
	return "", fmt.Errorf("no supported package manager on the host (want apt, dnf or yum)")
}

// bundlePackage finds the bundle's package file for name.
func bundlePackage(b *bundle.Bundle, kind, name string) (bundle.File, bool) {
	for _, f := range b.Of(kind) {
		if f.Package == name {
			return f, true
		}
	}
	return bundle.File{}, false
}

// Check lists packages that are absent (online) or not at the bundle's
// version (bundle).
func (o Packages) Check(_ context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	kind, err := bundleKind(t.Facts.PackageManager)
	if err != nil {
		return step.Change{}, err
	}
	if o.Source == "bundle" && t.Bundle == nil {
		return step.Change{}, fmt.Errorf("packages come from the bundle, but no bundle was given")
	}
	var ch step.Change
	var errs []error
	for _, n := range o.Names {
		name, pin, _ := strings.Cut(n, "=")
		cur := t.Facts.Packages[name]
		from := cur
		if from == "" {
			from = "(absent)"
		}
		switch o.Source {
		case "online":
			if cur == "" || (pin != "" && cur != pin) {
				to := "install"
				if pin != "" {
					to = pin
				}
				ch.Diff = append(ch.Diff, step.DiffLine{Key: "package " + name, From: from, To: to})
			}
		case "bundle":
			f, ok := bundlePackage(t.Bundle, kind, name)
			if !ok && cur != "" {
				continue // the OS already has it; bundles carry what hosts lack
			}
			if !ok {
				errs = append(errs, fmt.Errorf("package %s is not installed and not in the bundle %s (no %s file for it in %s)", name, t.Bundle.Dir, kind, bundle.ManifestName))
				continue
			}
			if cur != f.Version {
				ch.Diff = append(ch.Diff, step.DiffLine{Key: "package " + name, From: from, To: f.Version})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return step.Change{}, err
	}
	switch {
	case len(ch.Diff) == 0:
		ch.Action = step.ActionNone
	default:
		ch.Action = step.ActionUpdate
		for _, d := range ch.Diff {
			if d.From == "(absent)" {
				ch.Action = step.ActionCreate
			}
		}
	}
	return ch, nil
}

// Apply installs what is missing: from the host's repositories (online) or
// by uploading the bundle's packages that are not installed at their
// version and installing them in one dpkg/rpm call (bundle).
func (o Packages) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.Source == "bundle" {
		if t.Bundle == nil {
			return fmt.Errorf("packages come from the bundle, but no bundle was given")
		}
		pm, err := packageManager(ctx, t)
		if err != nil {
			return err
		}
		kind, err := bundleKind(pm)
		if err != nil {
			return err
		}
		return InstallFromBundle(ctx, t.Host, t.Bundle, o.bundleFiles(t.Bundle, kind))
	}
	var names []string
	for _, n := range o.Names {
		name, pin, _ := strings.Cut(n, "=")
		if t.Facts == nil || t.Facts.Packages[name] == "" || (pin != "" && t.Facts.Packages[name] != pin) {
			names = append(names, n)
		}
	}
	pm, err := packageManager(ctx, t)
	if err != nil {
		return err
	}
	return InstallOnline(ctx, t.Host, pm, names)
}

// onDemand are packages a bundle may carry for a feature some clusters
// use (haproxy: the node-local API server proxy): they are installed only
// where the plan names them, not with the rest of the bundle, so no host
// runs a daemon its cluster does not use.
func onDemand(name string) bool { return name == "haproxy" }

// bundleFiles are the bundle's packages of kind for this host: all of them
// (dependencies included) but the on-demand ones the plan does not name.
func (o Packages) bundleFiles(b *bundle.Bundle, kind string) []bundle.File {
	named := map[string]bool{}
	for _, n := range o.Names {
		name, _, _ := strings.Cut(n, "=")
		named[name] = true
	}
	var out []bundle.File
	for _, f := range b.Of(kind) {
		if !onDemand(f.Package) || named[f.Package] {
			out = append(out, f)
		}
	}
	return out
}

// packageManager is the host's package manager, from facts or asked.
func packageManager(ctx context.Context, t step.Target) (string, error) {
	if t.Facts != nil {
		return t.Facts.PackageManager, nil
	}
	var out bytes.Buffer
	line := "if command -v apt-get >/dev/null; then echo apt; elif command -v dnf >/dev/null; then echo dnf; elif command -v yum >/dev/null; then echo yum; fi"
	if err := t.Host.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
		return "", fmt.Errorf("detect package manager: %w", err)
	}
	return strings.TrimSpace(out.String()), nil
}

// InstallOnline installs names from the host's configured repositories.
func InstallOnline(ctx context.Context, h host.Host, pm string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	for _, n := range names {
		if !packageRE.MatchString(n) {
			return fmt.Errorf("package name %q is not a package name", n)
		}
	}
	var line string
	switch pm {
	case "apt":
		// Names are validated (no leading '-'), so no "--" is needed; the
		// index is refreshed first: a fresh host's lists may be empty.
		line = "export DEBIAN_FRONTEND=noninteractive && apt-get update -q && " +
			host.Join(append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, names...)...)
	case "dnf", "yum":
		line = host.Join(append([]string{pm, "install", "-y"}, names...)...)
	default:
		return fmt.Errorf("install %s: no supported package manager on the host (want apt, dnf or yum)", strings.Join(names, " "))
	}
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("install %s: %w", strings.Join(names, " "), err)
	}
	return nil
}

// verifiedUploader is the SSH transport's upload that checks a digest on
// the host before the file appears.
type verifiedUploader interface {
	UploadVerified(ctx context.Context, r io.Reader, path string, opts host.FileOptions, sha256hex string) error
}

// UploadBundleFile uploads the bundle's file f to dst with opts and checks
// its sha256 on the host (before the file appears, where the transport can).
func UploadBundleFile(ctx context.Context, h host.Host, b *bundle.Bundle, f bundle.File, dst string, opts host.FileOptions) error {
	r, err := b.Open(f)
	if err != nil {
		return err
	}
	defer r.Close()
	if vu, ok := h.(verifiedUploader); ok {
		if err := vu.UploadVerified(ctx, r, dst, opts, f.SHA256); err != nil {
			return fmt.Errorf("upload %s: %w", f.Path, err)
		}
		return nil
	}
	if err := h.Upload(ctx, r, dst, opts); err != nil {
		return fmt.Errorf("upload %s: %w", f.Path, err)
	}
	var out bytes.Buffer
	if err := h.Run(ctx, host.Cmd{Line: host.Join("sha256sum", "--", dst), Stdout: &out}); err != nil {
		return fmt.Errorf("check sha256 of %s: %w", dst, err)
	}
	if got, _, _ := strings.Cut(out.String(), " "); got != f.SHA256 {
		return fmt.Errorf("upload %s: sha256 on the host is %s, the bundle says %s", f.Path, got, f.SHA256)
	}
	return nil
}

// InstallFromBundle installs the package files among files whose package is
// not installed at the file's version: it stages them (sha256 checked on
// the host; what an earlier run staged is not sent again), installs them
// with one dpkg -i (or rpm -U) call, and removes them once installed.
func InstallFromBundle(ctx context.Context, h host.Host, b *bundle.Bundle, files []bundle.File) error {
	if len(files) == 0 {
		return nil
	}
	kind := files[0].Kind
	var names []string
	for _, f := range files {
		if f.Kind != kind || (kind != bundle.KindDeb && kind != bundle.KindRPM) {
			return fmt.Errorf("bundle file %s: kind %q, want all %s or all %s", f.Path, f.Kind, bundle.KindDeb, bundle.KindRPM)
		}
		if !packageRE.MatchString(f.Package) {
			return fmt.Errorf("bundle file %s: package name %q", f.Path, f.Package)
		}
		names = append(names, f.Package)
	}
	installed, err := installedVersions(ctx, h, kind, names)
	if err != nil {
		return err
	}
	var todo []bundle.File
	for _, f := range files {
		if installed[f.Package] != f.Version {
			todo = append(todo, f)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	staging := NewStaging("packages")
	paths, err := staging.Stage(ctx, h, b, todo)
	if err != nil {
		return err
	}
	args := []string{"dpkg", "-i", "--"}
	if kind == bundle.KindRPM {
		args = []string{"rpm", "-U", "--oldpackage", "--replacepkgs", "--"}
	}
	args = append(args, paths...)
	line := host.Join(args...)
	if kind == bundle.KindDeb {
		line = "DEBIAN_FRONTEND=noninteractive " + line
	}
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		// The staged files stay: the re-run after the cause is fixed sends nothing again.
		return fmt.Errorf("install %d bundle packages: %w", len(todo), err)
	}
	return staging.Remove(ctx, h, paths)
}

// installedVersions asks dpkg or rpm for the installed version of names in
// one command; absent packages are left out.
func installedVersions(ctx context.Context, h host.Host, kind string, names []string) (map[string]string, error) {
	var args []string
	if kind == bundle.KindDeb {
		args = append([]string{"dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev} ${Version}\\n", "--"}, names...)
	} else {
		args = append([]string{"rpm", "-q", "--qf", "%{NAME} ii %{VERSION}-%{RELEASE}\\n", "--"}, names...)
	}
	var out bytes.Buffer
	// Both exit non-zero when a package is not installed: that is an answer.
	line := host.Join(args...) + " 2>/dev/null || true"
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
		return nil, fmt.Errorf("list installed packages: %w", err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[1] == "ii" {
			got[strings.SplitN(f[0], ":", 2)[0]] = f[2]
		}
	}
	return got, nil
}
