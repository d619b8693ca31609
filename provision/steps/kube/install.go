package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/templates"
)

// ErrOnlineUnsupported: this version installs Kubernetes only from an
// air-gapped bundle (package repositories such as pkgs.k8s.io cannot be
// reached from where it is developed and tested).
var ErrOnlineUnsupported = errors.New("online Kubernetes packages are not supported yet: set artifacts.mode to \"bundle\" and build a bundle with kubelet, kubeadm and kubectl in bin/ (`clusterctl bundle`)")

// ErrK3sUnsupported: these are the kubeadm driver's ops; the planner
// builds k3s clusters from provision/steps/k3s.
var ErrK3sUnsupported = errors.New("the kubeadm driver's steps do not install k3s (the k3s driver's steps do: provision/steps/k3s)")

var versionRE = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$`)

// binary is one executable the step installs from the bundle.
type binary struct {
	name   string // as the plan shows it
	bundle string // path in the bundle
	dst    string
	// optional binaries are installed when the bundle has them.
	optional bool
}

var kubeBinaries = []binary{
	{name: "kubelet", bundle: "bin/kubelet", dst: BinDir + "/kubelet"},
	{name: "kubeadm", bundle: "bin/kubeadm", dst: BinDir + "/kubeadm"},
	{name: "kubectl", bundle: "bin/kubectl", dst: BinDir + "/kubectl"},
	// flannel's CNI plugin (Debian's containernetworking-plugins has none);
	// the flannel DaemonSet copies the same binary, this has it there first.
	{name: "flannel CNI plugin", bundle: "bin/flannel-cni", dst: FlannelCNI, optional: true},
}

func (o Install) validate() error {
	switch o.Distribution {
	case "kubeadm":
	case "k3s":
		return ErrK3sUnsupported
	default:
		return fmt.Errorf("distribution %q: want kubeadm", o.Distribution)
	}
	if o.Source != "online" && o.Source != "bundle" {
		return fmt.Errorf("kubernetes source %q: want online or bundle", o.Source)
	}
	if !versionRE.MatchString(o.Version) {
		return fmt.Errorf("kubernetes version %q is not a version", o.Version)
	}
	if o.NodeIP != "" {
		if _, err := netip.ParseAddr(o.NodeIP); err != nil {
			return fmt.Errorf("node IP %q is not an IP address", o.NodeIP)
		}
	}
	return nil
}

// files are the unit, its kubeadm drop-in, the node's defaults and, when
// the host needs one, the kubelet's own resolv.conf.
func (o Install) files(p nodeProbe) (map[string][]byte, error) {
	resolv := o.kubeletResolvConf(p)
	data := map[string]string{"BinDir": BinDir, "DefaultsFile": DefaultsFile, "NodeIP": o.NodeIP, "ResolvConf": ""}
	out := map[string][]byte{}
	if resolv != nil {
		data["ResolvConf"] = KubeletResolvConf
		out[KubeletResolvConf] = resolv
	}
	for p, tmpl := range map[string]string{
		UnitFile:     "kubelet.service.tmpl",
		DropInFile:   "kubelet-kubeadm.conf.tmpl",
		DefaultsFile: "kubelet-defaults.tmpl",
	} {
		b, err := templates.Render(tmpl, data)
		if err != nil {
			return nil, err
		}
		out[p] = b
	}
	return out, nil
}

// kubeletResolvConf is the resolv.conf the kubelet must give pods instead
// of the host's, or nil. When every nameserver of the host is a loopback
// address (a resolver that listens on 127.0.0.1 only, or none) and
// systemd-resolved does not run (kubeadm points the kubelet at its
// upstreams itself), pods with the host's DNS settings, CoreDNS first,
// would ask themselves: CoreDNS detects the loop and exits. They get the
// node's own address instead, where the same lookups fail without a loop.
func (o Install) kubeletResolvConf(p nodeProbe) []byte {
	if o.NodeIP == "" || p.resolved {
		return nil
	}
	var keep []string
	servers := 0
	for _, l := range strings.Split(string(p.resolv), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";"):
		case f[0] == "nameserver" && len(f) >= 2:
			servers++
			if a, err := netip.ParseAddr(f[1]); err != nil || !a.IsLoopback() {
				return nil // a resolver pods can reach
			}
		case f[0] == "search" || f[0] == "domain" || f[0] == "options":
			keep = append(keep, strings.Join(f, " "))
		}
	}
	if servers == 0 && len(p.resolv) > 0 && len(keep) > 0 {
		return nil // no nameserver line: the resolver library's default, left alone
	}
	var b strings.Builder
	b.WriteString("# Managed by clusterctl (kube/install): the host's resolv.conf names only loopback\n")
	b.WriteString("# resolvers, which pods (CoreDNS) would reach as themselves; the kubelet gives pods this.\n")
	b.WriteString("nameserver " + o.NodeIP + "\n")
	for _, l := range keep {
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}

func (o Install) Needs() facts.Request {
	return facts.Request{Files: []string{UnitFile, DropInFile, DefaultsFile, KubeletResolvConf, FlannelCNI, KubeletConf}}
}

// upgradeLeft lists the binaries Install leaves to kube/upgrade: on a node
// that joined a cluster (kubelet.conf), a kubelet, kubeadm or kubectl at
// another version is swapped only by the upgrade, in its order (drain,
// kubeadm upgrade, restart), never blindly here.
func (o Install) upgradeLeft(f *facts.Facts, kubectl string) map[string]bool {
	if f == nil {
		return nil
	}
	if s := f.Files[KubeletConf]; s == "" || s == "missing" {
		return nil
	}
	want := strings.TrimPrefix(o.Version, "v")
	left := map[string]bool{}
	for name, cur := range map[string]string{"kubelet": f.Kubelet, "kubeadm": f.Kubeadm, "kubectl": kubectl} {
		if cur != "" && cur != want {
			left[name] = true
		}
	}
	return left
}

// nodeProbe is what install asks the host beyond the facts, in one round
// trip: kubectl's version ("" when absent; the facts report kubelet and
// kubeadm only) and the host's resolver setup.
type nodeProbe struct {
	kubectl  string
	resolv   []byte
	resolved bool // systemd-resolved runs
}

const probeInstallLine = "kubectl version --client -o json 2>/dev/null; echo; echo @@resolv.conf; cat /etc/resolv.conf 2>/dev/null; echo; echo @@resolved; systemctl is-active systemd-resolved 2>/dev/null; true"

func probeInstall(ctx context.Context, h host.Host) (nodeProbe, error) {
	out, err := runOut(ctx, h, probeInstallLine)
	if err != nil {
		return nodeProbe{}, fmt.Errorf("inspect kubectl and the resolver: %w", err)
	}
	kc, rest, _ := strings.Cut(out, "@@resolv.conf\n")
	resolv, resolved, _ := strings.Cut(rest, "@@resolved\n")
	p := nodeProbe{resolv: []byte(strings.TrimSuffix(resolv, "\n")), resolved: strings.TrimSpace(resolved) == "active"}
	if strings.TrimSpace(kc) != "" {
		var v struct {
			ClientVersion struct {
				GitVersion string `json:"gitVersion"`
			} `json:"clientVersion"`
		}
		if err := json.Unmarshal([]byte(kc), &v); err != nil {
			return nodeProbe{}, fmt.Errorf("read kubectl's version: %w", err)
		}
		p.kubectl = strings.TrimPrefix(v.ClientVersion.GitVersion, "v")
	}
	return p, nil
}

// bundleFile finds b's file in the bundle; a missing required one is an error.
func bundleFile(bd *bundle.Bundle, b binary) (bundle.File, bool, error) {
	f, ok := bd.Find(b.bundle)
	if !ok && !b.optional {
		return f, false, fmt.Errorf("the bundle %s has no %s (%s): add the Kubernetes binaries to a --from directory's bin/ and run `clusterctl bundle` again", bd.Dir, b.bundle, b.name)
	}
	return f, ok, nil
}

// Check compares the installed versions (facts, and kubectl asked for) with
// the spec's, the bundle's flannel plugin with the host's by digest, the
// unit files with what they would be, and the service with enabled.
func (o Install) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	if o.Source == "bundle" && t.Bundle == nil {
		return step.Change{}, errors.New("kubernetes binaries come from the bundle, but no bundle was given")
	}
	probe, err := probeInstall(ctx, t.Host)
	if err != nil {
		return step.Change{}, err
	}
	installed := map[string]string{"kubelet": t.Facts.Kubelet, "kubeadm": t.Facts.Kubeadm, "kubectl": probe.kubectl}
	want := strings.TrimPrefix(o.Version, "v")
	left := o.upgradeLeft(t.Facts, probe.kubectl)
	var ch step.Change
	for _, b := range kubeBinaries {
		if left[b.name] {
			continue
		}
		var differs bool
		var from, to string
		if b.optional {
			if o.Source != "bundle" {
				continue
			}
			f, ok, _ := bundleFile(t.Bundle, b)
			cur := t.Facts.Files[b.dst]
			if !ok || cur == f.SHA256 {
				continue
			}
			differs, from, to = true, "sha256:"+short(cur), "sha256:"+short(f.SHA256)
			if cur == "" || cur == "missing" {
				from = "(absent)"
			}
		} else {
			cur := installed[b.name]
			if cur == want {
				continue
			}
			differs, from, to = true, cur, want+" ("+o.Source+")"
			if cur == "" {
				from = "(absent)"
			}
			if o.Source == "online" {
				return step.Change{}, fmt.Errorf("%s %s is needed: %w", b.name, want, ErrOnlineUnsupported)
			}
			if _, _, err := bundleFile(t.Bundle, b); err != nil {
				return step.Change{}, err
			}
		}
		if differs {
			ch.Diff = append(ch.Diff, step.DiffLine{Key: b.name, From: from, To: to})
		}
	}
	files, err := o.files(probe)
	if err != nil {
		return step.Change{}, err
	}
	for _, p := range facts.Sorted(files) {
		if ft, differs := hostprep.FileDiff(t.Facts.Files, p, files[p]); differs {
			ch.Diff = append(ch.Diff, step.DiffLine{Key: p, From: ft[0], To: ft[1]})
		}
	}
	if s := t.Facts.Services["kubelet"]; !strings.HasPrefix(s, "enabled/") {
		from := s
		if from == "" {
			from = "(absent)"
		}
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "kubelet.service", From: from, To: "enabled"})
	}
	switch {
	case len(ch.Diff) == 0:
		ch.Action = step.ActionNone
	case t.Facts.Kubelet == "":
		ch.Action = step.ActionCreate
	default:
		ch.Action = step.ActionUpdate
	}
	return ch, nil
}

func short(sum string) string { return sum[:min(12, len(sum))] }

// Apply uploads every bundle binary whose digest on the host differs
// (sha256 checked on the host, mode 0755), writes the unit files, enables
// the kubelet and restarts it only if it runs and something it uses
// changed. kubeadm starts it on init or join.
func (o Install) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	h := t.Host
	probe, err := probeInstall(ctx, h)
	if err != nil {
		return err
	}
	restart := false
	switch o.Source {
	case "bundle":
		if t.Bundle == nil {
			return errors.New("kubernetes binaries come from the bundle, but no bundle was given")
		}
		only := map[string]bool{}
		left := o.upgradeLeft(t.Facts, probe.kubectl)
		for _, b := range kubeBinaries {
			only[b.name] = !left[b.name]
		}
		changed, err := installBinaries(ctx, h, t.Bundle, only)
		if err != nil {
			return err
		}
		restart = changed["kubelet"]
	case "online":
		out, err := runOut(ctx, h, "kubelet --version 2>/dev/null; kubeadm version -o short 2>/dev/null; true")
		if err != nil {
			return fmt.Errorf("ask for kubelet's and kubeadm's versions: %w", err)
		}
		want := GitVersion(o.Version)
		if probe.kubectl != strings.TrimPrefix(want, "v") || strings.Count(out, want) != 2 {
			return ErrOnlineUnsupported
		}
	}
	files, err := o.files(probe)
	if err != nil {
		return err
	}
	units := false
	// The resolv.conf before the defaults that name it.
	for _, p := range []string{KubeletResolvConf, UnitFile, DropInFile, DefaultsFile} {
		if files[p] == nil {
			continue
		}
		c, err := hostprep.WriteFile(ctx, h, p, files[p], 0o644)
		if err != nil {
			return err
		}
		units = units || (c && (p == UnitFile || p == DropInFile))
		restart = restart || c
	}
	line := "systemctl enable --quiet kubelet.service"
	if units {
		line = "systemctl daemon-reload && " + line
	}
	if restart {
		// try-restart: only a running kubelet (of a node that joined) restarts.
		line += " && systemctl try-restart kubelet.service"
	}
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("enable the kubelet: %w", err)
	}
	return nil
}

// installBinaries uploads the bundle's binaries that differ on the host
// (those named in only; all when only is nil), found by one sha256sum of
// them all; it returns the names of those it replaced.
func installBinaries(ctx context.Context, h host.Host, bd *bundle.Bundle, only map[string]bool) (map[string]bool, error) {
	var paths []string
	for _, b := range kubeBinaries {
		paths = append(paths, b.dst)
	}
	sums, err := hostprep.Sums(ctx, h, paths)
	if err != nil {
		return nil, fmt.Errorf("inspect installed binaries: %w", err)
	}
	changed := map[string]bool{}
	for _, b := range kubeBinaries {
		if only != nil && !only[b.name] {
			continue
		}
		f, ok, err := bundleFile(bd, b)
		switch {
		case err != nil && sums[b.dst] == "":
			return nil, err
		case !ok || sums[b.dst] == f.SHA256:
			continue // not in the bundle but on the host (Check vouched for its version), or current
		}
		if err := hostprep.UploadBundleFile(ctx, h, bd, f, b.dst, host.FileOptions{Mode: 0o755, Owner: "root", Group: "root"}); err != nil {
			return nil, fmt.Errorf("install %s: %w", b.name, err)
		}
		changed[b.name] = true
	}
	return changed, nil
}
