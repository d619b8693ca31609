package k3s

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/templates"
)

// links are the commands the k3s binary also is (multi-call), linked into
// LinkDir where the host has no such command, as the install script does.
var links = []string{"kubectl", "crictl", "ctr"}

var (
	sha256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	fileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
)

// arch maps uname -m to the architecture names of k3s's release assets.
func arch(f *facts.Facts) string {
	if f == nil {
		return "amd64"
	}
	switch f.Arch {
	case "aarch64", "arm64":
		return "arm64"
	case "armv7l", "armhf", "arm":
		return "arm"
	}
	return "amd64"
}

// bundleBinary is the binary's path in the bundle, named as k3s's release
// assets are: k3s (amd64), k3s-arm64, k3s-armhf.
func bundleBinary(a string) string {
	switch a {
	case "arm64":
		return "bin/k3s-arm64"
	case "arm":
		return "bin/k3s-armhf"
	}
	return "bin/k3s"
}

// airgapArch reads the architecture from an archive's name,
// k3s-airgap-images-ARCH.tar[.zst|.gz]; "" when the name has none.
func airgapArch(name string) string {
	rest, ok := strings.CutPrefix(name, "k3s-airgap-images-")
	if !ok {
		return ""
	}
	a, _, _ := strings.Cut(rest, ".")
	return a
}

// artifact is one file Install puts on the host.
type artifact struct {
	name   string // as the plan shows it
	dst    string
	mode   fs.FileMode
	sha256 string
	file   bundle.File // bundle mode
	get    *Download   // online mode
}

func (o Install) validate() error {
	var errs []error
	if o.Role != RoleServer && o.Role != RoleAgent {
		errs = append(errs, fmt.Errorf("k3s role %q: want server or agent", o.Role))
	}
	if !versionRE.MatchString(o.Version) {
		errs = append(errs, fmt.Errorf("k3s version %q: want e.g. 1.37.2+k3s1", o.Version))
	}
	switch o.Source {
	case "bundle":
	case "online":
		if o.Binary == nil {
			errs = append(errs, errors.New(`online k3s needs the binary's URL and sha256 (artifacts.urls "k3s")`))
		}
		for _, d := range []*Download{o.Binary, o.Images} {
			if d == nil {
				continue
			}
			if u, err := url.Parse(d.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("k3s download %q is not an http(s) URL", d.URL))
			}
			if !sha256RE.MatchString(d.SHA256) {
				errs = append(errs, fmt.Errorf("k3s download %s: sha256 %q", d.URL, d.SHA256))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("k3s source %q: want online or bundle", o.Source))
	}
	return errors.Join(errs...)
}

// artifacts are the binary and the air-gap image archives for this host's
// architecture, from the bundle or the spec's URLs.
func (o Install) artifacts(t step.Target) ([]artifact, error) {
	a := arch(t.Facts)
	if o.Source == "online" {
		out := []artifact{{name: "k3s", dst: BinPath, mode: 0o755, sha256: o.Binary.SHA256, get: o.Binary}}
		if o.Images != nil {
			u, _ := url.Parse(o.Images.URL)
			base := path.Base(u.Path)
			if !fileNameRE.MatchString(base) {
				base = "k3s-airgap-images-" + a + ".tar"
			}
			out = append(out, artifact{name: "air-gap images", dst: ImagesDir + "/" + base, mode: 0o644, sha256: o.Images.SHA256, get: o.Images})
		}
		return out, nil
	}
	b := t.Bundle
	if b == nil {
		return nil, errors.New("k3s comes from the bundle, but no bundle was given")
	}
	bin, ok := b.Find(bundleBinary(a))
	if !ok {
		return nil, fmt.Errorf("the bundle %s has no %s (k3s for %s): add it to a --from directory's bin/ and run `clusterctl bundle` again", b.Dir, bundleBinary(a), a)
	}
	out := []artifact{{name: "k3s", dst: BinPath, mode: 0o755, sha256: bin.SHA256, file: bin}}
	for _, f := range b.Of(bundle.KindAirgap) {
		base := path.Base(f.Path)
		if !strings.HasPrefix(base, "k3s-airgap-images") || !fileNameRE.MatchString(base) {
			continue
		}
		if fa := airgapArch(base); fa != "" && fa != a {
			continue
		}
		out = append(out, artifact{name: "air-gap images", dst: ImagesDir + "/" + base, mode: 0o644, sha256: f.SHA256, file: f})
	}
	airgap := len(out) > 1
	// The bundle's own image archives (the workloads'): k3s imports every
	// archive in ImagesDir when it starts, OCI archives included.
	for _, f := range b.Of(bundle.KindImage) {
		if base := path.Base(f.Path); fileNameRE.MatchString(base) {
			out = append(out, artifact{name: "image " + f.Image, dst: ImagesDir + "/" + base, mode: 0o644, sha256: f.SHA256, file: f})
		}
	}
	if !airgap {
		return nil, fmt.Errorf("the bundle %s has no k3s air-gap images for %s (airgap/k3s-airgap-images-%s.tar.zst, from the k3s release): without them k3s would pull its images from a registry", b.Dir, a, a)
	}
	return out, nil
}

func (o Install) unit() ([]byte, error) {
	return templates.Render("k3s.service.tmpl", map[string]string{"Role": o.Role, "BinPath": BinPath, "ConfigFile": ConfigFile})
}

func (o Install) Needs() facts.Request {
	return facts.Request{Files: []string{unitFile(o.Role)}}
}

// installProbe is the digests of the artifacts on the host and the links
// to make, in one round trip.
type installProbe struct {
	sums    map[string]string
	nolinks []string
}

func probeInstall(ctx context.Context, h host.Host, arts []artifact) (installProbe, error) {
	args := []string{"sha256sum", "--"}
	for _, a := range arts {
		args = append(args, a.dst)
	}
	line := host.Join(args...) + " 2>/dev/null; for n in " + strings.Join(links, " ") + "; do " +
		`if [ -e ` + LinkDir + `/$n ] || [ -L ` + LinkDir + `/$n ] || command -v $n >/dev/null 2>&1; then :; else echo "nolink $n"; fi; done; true`
	out, err := runOut(ctx, h, line)
	if err != nil {
		return installProbe{}, fmt.Errorf("inspect the installed k3s: %w", err)
	}
	p := installProbe{sums: map[string]string{}}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "nolink":
			p.nolinks = append(p.nolinks, f[1])
		case len(f) == 2:
			p.sums[f[1]] = f[0]
		}
	}
	return p, nil
}

func short(sum string) string { return sum[:min(12, len(sum))] }

// Check compares the binary and the image archives with the bundle's (or
// the URLs') by sha256, the installed version (facts) with the spec's, the
// unit file with what it would be, and lists the links to make.
func (o Install) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	arts, err := o.artifacts(t)
	if err != nil {
		return step.Change{}, err
	}
	p, err := probeInstall(ctx, t.Host, arts)
	if err != nil {
		return step.Change{}, err
	}
	want := strings.TrimPrefix(o.Version, "v")
	have := t.Facts.K3s
	var ch step.Change
	for _, a := range arts {
		cur := p.sums[a.dst]
		switch {
		case cur == a.sha256 && a.dst == BinPath && have != want:
			return step.Change{}, fmt.Errorf("k3s on %s is %s, from the %s binary the spec names, but the spec asks for %s: use the k3s %s release binary", t.Host.Name(), orAbsent(have), o.Source, want, want)
		case cur == a.sha256:
		case a.dst == BinPath && have != want:
			ch.Diff = append(ch.Diff, step.DiffLine{Key: "k3s", From: orAbsent(have), To: want + " (" + o.Source + ")"})
		case cur == "":
			ch.Diff = append(ch.Diff, step.DiffLine{Key: a.dst, From: "(absent)", To: "sha256:" + short(a.sha256)})
		default:
			ch.Diff = append(ch.Diff, step.DiffLine{Key: a.dst, From: "sha256:" + short(cur), To: "sha256:" + short(a.sha256)})
		}
	}
	u, err := o.unit()
	if err != nil {
		return step.Change{}, err
	}
	if ft, differs := hostprep.FileDiff(t.Facts.Files, unitFile(o.Role), u); differs {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: unitFile(o.Role), From: ft[0], To: ft[1]})
	}
	for _, n := range p.nolinks {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: LinkDir + "/" + n, From: "(absent)", To: "link to " + BinPath})
	}
	switch {
	case len(ch.Diff) == 0:
		ch.Action = step.ActionNone
	case have == "":
		ch.Action = step.ActionCreate
	default:
		ch.Action = step.ActionUpdate
	}
	return ch, nil
}

// fetchLine downloads d to dst on the host (curl, else wget), checks its
// sha256 there and moves it into place with mode; a failed download or a
// wrong digest leaves dst as it was.
func fetchLine(d Download, dst, mode string) string {
	u := host.Quote(d.URL)
	return "tmp=" + host.Quote(dst+".clusterctl-download") + `; trap 'rm -f -- "$tmp"' EXIT; set -e; ` +
		`if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$tmp" ` + u + "; " +
		`elif command -v wget >/dev/null 2>&1; then wget -q -O "$tmp" ` + u + "; " +
		"else echo 'neither curl nor wget on this host: install one, or use artifacts.mode \"bundle\"' >&2; exit 1; fi; " +
		`if ! echo "` + d.SHA256 + `  $tmp" | sha256sum -c --quiet - >/dev/null 2>&1; then ` +
		"echo " + host.Quote(d.URL+": sha256 differs from the spec's "+d.SHA256) + " >&2; exit 1; fi; " +
		`chmod ` + mode + ` -- "$tmp"; mv -f -- "$tmp" ` + host.Quote(dst)
}

// Apply puts every artifact whose digest differs (bundle: uploaded and
// sha256-checked on the host; online: fetched by the host and checked),
// checks the binary's version, writes the unit, makes the links, and
// restarts a running k3s only when its binary or unit changed.
func (o Install) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	h := t.Host
	arts, err := o.artifacts(t)
	if err != nil {
		return err
	}
	if err := h.Run(ctx, host.Cmd{Line: host.Join("mkdir", "-p", "--", ImagesDir, ConfigDir)}); err != nil {
		return fmt.Errorf("make %s: %w", ImagesDir, err)
	}
	p, err := probeInstall(ctx, h, arts)
	if err != nil {
		return err
	}
	restart := false
	for _, a := range arts {
		if p.sums[a.dst] == a.sha256 {
			continue
		}
		if a.get != nil {
			if err := h.Run(ctx, host.Cmd{Line: fetchLine(*a.get, a.dst, fmt.Sprintf("%04o", a.mode))}); err != nil {
				return fmt.Errorf("download %s: %w", a.name, err)
			}
		} else if err := hostprep.UploadBundleFile(ctx, h, t.Bundle, a.file, a.dst, host.FileOptions{Mode: a.mode, Owner: "root", Group: "root"}); err != nil {
			return fmt.Errorf("install %s: %w", a.name, err)
		}
		restart = restart || a.dst == BinPath
	}
	out, err := runOut(ctx, h, BinPath+" --version")
	if err != nil {
		return fmt.Errorf("ask k3s for its version: %w", err)
	}
	first, _, _ := strings.Cut(out, "\n")
	if f := strings.Fields(first); len(f) < 3 || strings.TrimPrefix(f[2], "v") != strings.TrimPrefix(o.Version, "v") {
		return fmt.Errorf("%s says %q, the spec asks for k3s %s: use the k3s %s release binary", BinPath, strings.TrimSpace(first), o.Version, o.Version)
	}
	u, err := o.unit()
	if err != nil {
		return err
	}
	unitChanged, err := hostprep.WriteFile(ctx, h, unitFile(o.Role), u, 0o644)
	if err != nil {
		return err
	}
	var cmds []string
	for _, n := range p.nolinks {
		cmds = append(cmds, host.Join("ln", "-s", BinPath, LinkDir+"/"+n))
	}
	if unitChanged {
		cmds = append(cmds, "systemctl daemon-reload")
	}
	if restart || unitChanged {
		// try-restart: only a k3s that runs restarts; the node steps start it.
		cmds = append(cmds, "systemctl try-restart "+unit(o.Role))
	}
	if len(cmds) > 0 {
		if err := h.Run(ctx, host.Cmd{Line: strings.Join(cmds, " && ")}); err != nil {
			return fmt.Errorf("link and reload k3s: %w", err)
		}
	}
	return nil
}
