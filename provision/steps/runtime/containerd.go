package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/templates"
)

// Paths containerd and the CRI plugin read.
const (
	ConfigFile   = "/etc/containerd/config.toml"
	CertsDir     = "/etc/containerd/certs.d"
	CNIBinDir    = "/opt/cni/bin"
	CNIConfDir   = "/etc/cni/net.d"
	debianCNIDir = "/usr/lib/cni"
	// cniProbe is one plugin Debian's containernetworking-plugins ships:
	// its digest at both places tells whether the links exist.
	cniProbe = "bridge"
	// hostsMark starts every hosts.toml clusterctl writes, so stale ones
	// (a mirror removed from the spec) can be found and removed.
	hostsMark = "# Managed by clusterctl"
	// capSysResource is CAP_SYS_RESOURCE's bit in a capability set.
	capSysResource = 24
)

var registryRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$`)

// registry is one registry's hosts.toml.
type registry struct {
	Registry   string
	Server     string
	SkipVerify bool
	Hosts      []mirror
}

type mirror struct {
	URL        string
	SkipVerify bool
}

func (r registry) file() string { return path.Join(CertsDir, r.Registry, "hosts.toml") }

// splitRegistry parses "reg:5000" or "http://reg:5000" into its host and
// the server URL containerd should use for it.
func splitRegistry(s string) (name, server string, err error) {
	name, server = s, ""
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return "", "", fmt.Errorf("registry %q: want HOST[:PORT] or http(s)://HOST[:PORT]", s)
		}
		name, server = u.Host, u.Scheme+"://"+u.Host
	}
	if !registryRE.MatchString(name) {
		return "", "", fmt.Errorf("registry %q: want HOST[:PORT] or http(s)://HOST[:PORT]", s)
	}
	if server == "" {
		server = "https://" + name
		if name == "docker.io" {
			server = "https://registry-1.docker.io"
		}
	}
	return name, server, nil
}

// registries builds one hosts.toml per registry that has mirrors or is
// insecure, sorted by name.
func (o Containerd) registries() ([]registry, error) {
	insecure := map[string]string{} // host -> server
	for _, r := range o.InsecureRegistries {
		name, server, err := splitRegistry(r)
		if err != nil {
			return nil, fmt.Errorf("insecure %w", err)
		}
		insecure[name] = server
	}
	byName := map[string]*registry{}
	get := func(name, server string) *registry {
		if r, ok := byName[name]; ok {
			return r
		}
		if s, ok := insecure[name]; ok {
			server = s
		}
		r := &registry{Registry: name, Server: server, SkipVerify: insecure[name] != ""}
		byName[name] = r
		return r
	}
	for _, name := range facts.Sorted(o.Mirrors) {
		n, server, err := splitRegistry(name)
		if err != nil {
			return nil, fmt.Errorf("mirrored %w", err)
		}
		r := get(n, server)
		for _, m := range o.Mirrors[name] {
			u := m
			if !strings.Contains(u, "://") {
				u = "https://" + u
			}
			p, err := url.Parse(u)
			if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || strings.ContainsAny(u, "\"\\\n") {
				return nil, fmt.Errorf("mirror %q of %s: want HOST[:PORT][/PATH] or an http(s) URL", m, name)
			}
			_, skip := insecure[p.Host]
			r.Hosts = append(r.Hosts, mirror{URL: u, SkipVerify: skip})
		}
	}
	for name, server := range insecure {
		get(name, server)
	}
	out := make([]registry, 0, len(byName))
	for _, n := range facts.Sorted(byName) {
		out = append(out, *byName[n])
	}
	return out, nil
}

func (o Containerd) validate() error {
	switch o.Source {
	case "online", "bundle":
	default:
		return fmt.Errorf("containerd source %q: want online or bundle", o.Source)
	}
	switch o.CgroupDriver {
	case "systemd", "cgroupfs":
	default:
		return fmt.Errorf("cgroup driver %q: want systemd or cgroupfs", o.CgroupDriver)
	}
	if strings.ContainsAny(o.SandboxImage, "\"\\\n ") {
		return fmt.Errorf("sandbox image %q is not an image reference", o.SandboxImage)
	}
	_, err := o.registries()
	return err
}

type configData struct {
	SandboxImage        string
	RestrictOOMScoreAdj bool
	SystemdCgroup       bool
}

// Render returns config.toml and each registry's hosts.toml (path ->
// content) for a host whose root can (restrict=false) or cannot
// (restrict=true) raise oom_score_adj, in config version 3 (containerd 2,
// v3=true) or 2 (containerd 1.x).
func (o Containerd) Render(restrict, v3 bool) (config []byte, hosts map[string][]byte, err error) {
	tmpl := "containerd-config.toml.tmpl"
	if v3 {
		tmpl = "containerd-config-v3.toml.tmpl"
	}
	config, err = templates.Render(tmpl, configData{
		SandboxImage:        o.SandboxImage,
		RestrictOOMScoreAdj: restrict || o.RestrictOOMScoreAdj,
		SystemdCgroup:       o.CgroupDriver == "systemd",
	})
	if err != nil {
		return nil, nil, err
	}
	regs, err := o.registries()
	if err != nil {
		return nil, nil, err
	}
	hosts = map[string][]byte{}
	for _, r := range regs {
		b, err := templates.Render("containerd-hosts.toml.tmpl", r)
		if err != nil {
			return nil, nil, err
		}
		hosts[r.file()] = b
	}
	return config, hosts, nil
}

func (o Containerd) Needs() facts.Request {
	files := []string{ConfigFile, path.Join(debianCNIDir, cniProbe), path.Join(CNIBinDir, cniProbe), UnitFile, kubeletConf}
	if regs, err := o.registries(); err == nil {
		for _, r := range regs {
			files = append(files, r.file())
		}
	}
	return facts.Request{Packages: []string{"containerd", "containerd.io"}, Files: files}
}

// packageName is containerd's package on the host's OS family.
func packageName(f *facts.Facts) string {
	if f != nil && f.OSFamily == "rhel" {
		return "containerd.io" // Docker's repository; RHEL ships none
	}
	return "containerd"
}

// lacksSysResource reads the capability bounding set of PID 1, which
// containerd (a service of it) inherits: without CAP_SYS_RESOURCE, runc
// cannot give the pause container its negative oom_score_adj. It is a host
// property the planner cannot know, so it is asked for on the host.
func lacksSysResource(ctx context.Context, h host.Host) (bool, error) {
	var out bytes.Buffer
	if err := h.Run(ctx, host.Cmd{Line: "grep '^CapBnd:' /proc/1/status", Stdout: &out}); err != nil {
		return false, fmt.Errorf("read the capabilities of PID 1: %w", err)
	}
	f := strings.Fields(out.String())
	if len(f) != 2 {
		return false, fmt.Errorf("read the capabilities of PID 1: unexpected %q", out.String())
	}
	caps, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil {
		return false, fmt.Errorf("read the capabilities of PID 1: %q: %w", f[1], err)
	}
	return caps&(1<<capSysResource) == 0, nil
}

func (o Containerd) checkInit(f *facts.Facts) error {
	if f != nil && o.CgroupDriver == "systemd" && f.Init != "systemd" {
		return fmt.Errorf("cgroup driver systemd needs systemd as the host's init (this host's init is %q): choose cgroupDriver \"cgroupfs\"", f.Init)
	}
	return nil
}

// Check: installed (the bundle's binaries and unit by digest, or a
// package), config.toml and hosts.toml digests as rendered for this host,
// Debian's CNI plugins linked into /opt/cni/bin, and the service enabled
// and running.
func (o Containerd) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	f := t.Facts
	if err := o.checkInit(f); err != nil {
		return step.Change{}, err
	}
	bundled, keep, err := o.useBundled(t)
	if err != nil {
		return step.Change{}, err
	}
	restrict, err := lacksSysResource(ctx, t.Host)
	if err != nil {
		return step.Change{}, err
	}
	config, hosts, err := o.Render(restrict, configV3(bundled, f.Containerd))
	if err != nil {
		return step.Change{}, err
	}
	var ch step.Change
	ch.Note = keep
	installed := f.Containerd != ""
	switch {
	case bundled:
		bins, files, err := bundledFiles(t.Bundle)
		if err != nil {
			return step.Change{}, err
		}
		sums, err := installedSums(ctx, t.Host, bins)
		if err != nil {
			return step.Change{}, err
		}
		d, err := bundledDiff(t, bins, files, sums)
		if err != nil {
			return step.Change{}, err
		}
		ch.Diff = append(ch.Diff, d...)
	case !installed:
		to := "install " + packageName(f)
		if o.Source == "bundle" {
			to = "installed by hostprep/packages (bundle)"
		}
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "containerd", From: "(absent)", To: to})
	case o.Version != "" && !strings.HasPrefix(strings.TrimPrefix(f.Containerd, "v"), strings.TrimPrefix(o.Version, "v")):
		ch.Note = fmt.Sprintf("containerd %s is installed; the spec asks for %s (not changed by this step)", f.Containerd, o.Version)
	}
	if ft, differs := fileDiffOf(f.Files, ConfigFile, config); differs {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: ConfigFile, From: ft[0], To: ft[1]})
	}
	for _, p := range facts.Sorted(hosts) {
		if ft, differs := fileDiffOf(f.Files, p, hosts[p]); differs {
			ch.Diff = append(ch.Diff, step.DiffLine{Key: p, From: ft[0], To: ft[1]})
		}
	}
	// The bundle's own plugins replace the links (their digests are above).
	if src := f.Files[path.Join(debianCNIDir, cniProbe)]; !bundled && src != "" && src != "missing" && f.Files[path.Join(CNIBinDir, cniProbe)] != src {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "CNI plugins in " + CNIBinDir, From: "(missing)", To: "links to " + debianCNIDir})
	}
	if s := f.Services["containerd"]; s != "enabled/active" {
		from := s
		if from == "" {
			from = "(absent)"
		}
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "containerd.service", From: from, To: "enabled/active"})
	}
	switch {
	case len(ch.Diff) == 0:
		ch.Action = step.ActionNone
	case !installed:
		ch.Action = step.ActionCreate
	default:
		ch.Action = step.ActionUpdate
	}
	return ch, nil
}

func fileDiffOf(files map[string]string, p string, want []byte) ([2]string, bool) {
	got, ok := files[p]
	sum := hostprep.Digest(want)
	switch {
	case ok && got == sum:
		return [2]string{}, false
	case !ok || got == "missing":
		return [2]string{"(missing)", "written"}, true
	}
	return [2]string{"sha256:" + got[:min(12, len(got))], "sha256:" + sum[:12]}, true
}

// ErrNotInstalled marks containerd missing where this step does not install
// it (bundle mode: the packages step does).
var ErrNotInstalled = errors.New("containerd not installed")

// Apply installs containerd (the bundle's binaries, or the distribution's
// package online), writes config.toml and the registry files, links
// Debian's CNI plugins where the bundle brings none, enables the service,
// restarts it only when a file changed, and waits (bounded) until `ctr
// version` answers.
func (o Containerd) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	if err := o.checkInit(t.Facts); err != nil {
		return err
	}
	h := t.Host
	bundled, _, err := o.useBundled(t)
	if err != nil {
		return err
	}
	changed, justInstalled := false, false
	if bundled {
		bins, files, err := bundledFiles(t.Bundle)
		if err != nil {
			return err
		}
		if changed, err = installBundled(ctx, h, t.Bundle, bins, files); err != nil {
			return err
		}
	}
	if err := h.Run(ctx, host.Cmd{Line: "command -v containerd >/dev/null"}); err != nil {
		var ee *host.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("look for containerd: %w", err)
		}
		if o.Source == "bundle" {
			return fmt.Errorf("containerd is not on the host: with a bundle it comes from hostprep/packages (the bundle's containerd, runc and containernetworking-plugins packages): %w", ErrNotInstalled)
		}
		pm := ""
		if t.Facts != nil {
			pm = t.Facts.PackageManager
		}
		if pm == "" {
			pm = "apt"
			var out bytes.Buffer
			if err := h.Run(ctx, host.Cmd{Line: "command -v apt-get >/dev/null && echo apt || echo dnf", Stdout: &out}); err == nil {
				pm = strings.TrimSpace(out.String())
			}
		}
		if err := hostprep.InstallOnline(ctx, h, pm, []string{packageName(t.Facts)}); err != nil {
			return err
		}
		justInstalled = true
	}
	restrict, err := lacksSysResource(ctx, h)
	if err != nil {
		return err
	}
	installed := ""
	if t.Facts != nil {
		installed = t.Facts.Containerd
	}
	if justInstalled {
		// Ask which version, for the config's format.
		out, err := host.Output(ctx, h, "containerd --version")
		if err != nil {
			return fmt.Errorf("ask containerd for its version: %w", err)
		}
		if f := strings.Fields(out); len(f) >= 3 {
			installed = f[2]
		}
	}
	config, hosts, err := o.Render(restrict, configV3(bundled, installed))
	if err != nil {
		return err
	}
	c, err := hostprep.WriteFile(ctx, h, ConfigFile, config, 0o644)
	if err != nil {
		return err
	}
	changed = changed || c
	for _, p := range facts.Sorted(hosts) {
		c, err := hostprep.WriteFile(ctx, h, p, hosts[p], 0o644)
		if err != nil {
			return err
		}
		changed = changed || c
	}
	removed, err := removeStaleHosts(ctx, h, hosts)
	if err != nil {
		return err
	}
	changed = changed || removed
	if err := linkCNI(ctx, h); err != nil {
		return err
	}
	verb := "start"
	if changed {
		verb = "restart"
	}
	if err := h.Run(ctx, host.Cmd{Line: "systemctl enable --quiet containerd.service && systemctl " + verb + " containerd.service"}); err != nil {
		return fmt.Errorf("%s containerd: %w", verb, err)
	}
	return waitReady(ctx, h)
}

// removeStaleHosts deletes hosts.toml files clusterctl wrote for registries
// no longer in the spec; it says whether it removed any.
func removeStaleHosts(ctx context.Context, h host.Host, keep map[string][]byte) (bool, error) {
	var out bytes.Buffer
	line := "for f in " + CertsDir + "/*/hosts.toml; do [ -f \"$f\" ] && head -n 1 \"$f\" | grep -q -F " + host.Quote(hostsMark) + " && echo \"$f\"; done; true"
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
		return false, fmt.Errorf("list registry files: %w", err)
	}
	var stale []string
	for _, p := range strings.Fields(out.String()) {
		if _, ok := keep[p]; !ok {
			stale = append(stale, p, path.Dir(p))
		}
	}
	if len(stale) == 0 {
		return false, nil
	}
	var args []string
	for i := 0; i < len(stale); i += 2 {
		args = append(args, host.Join("rm", "-f", "--", stale[i])+" && "+host.Join("rmdir", "--ignore-fail-on-non-empty", "--", stale[i+1]))
	}
	if err := h.Run(ctx, host.Cmd{Line: strings.Join(args, " && ")}); err != nil {
		return false, fmt.Errorf("remove stale registry files: %w", err)
	}
	return true, nil
}

// linkCNI creates the CNI directories and links Debian's plugins
// (/usr/lib/cni) into /opt/cni/bin, leaving real files there alone.
func linkCNI(ctx context.Context, h host.Host) error {
	line := host.Join("mkdir", "-p", "--", CNIBinDir, CNIConfDir) +
		" && for f in " + debianCNIDir + "/*; do [ -e \"$f\" ] || continue; n=" + CNIBinDir + "/\"${f##*/}\"; " +
		"if [ -L \"$n\" ] || [ ! -e \"$n\" ]; then ln -sfn -- \"$f\" \"$n\" || exit 1; fi; done"
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("link CNI plugins into %s: %w", CNIBinDir, err)
	}
	return nil
}

// waitReady waits up to 15 s for containerd's socket to answer; the last
// `ctr version` attempt's error is the step's.
func waitReady(ctx context.Context, h host.Host) error {
	line := host.PollLine("ctr version >/dev/null 2>&1", "ctr version", 15*time.Second, 200*time.Millisecond)
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("containerd does not answer after start (ctr version): %w", err)
	}
	return nil
}
