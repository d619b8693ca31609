package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/templates"
)

// The node-local API server proxy is Debian's (and RHEL's) haproxy package,
// run by the package's own unit with this config.
const (
	HAProxyConfig  = "/etc/haproxy/haproxy.cfg"
	HAProxyService = "haproxy.service"
	// haproxyNew is where a new config waits for `haproxy -c` before it
	// replaces the old one (same directory: the rename is atomic).
	haproxyNew = HAProxyConfig + ".clusterctl-new"
)

// ErrProxyNotInstalled: haproxy is missing where this step expects
// hostprep/packages to have installed it.
var ErrProxyNotInstalled = errors.New("haproxy not installed")

func (o APIServerProxy) validate() error {
	var errs []error
	if !nameRE.MatchString(o.Cluster) {
		errs = append(errs, fmt.Errorf("cluster name %q is not a DNS name", o.Cluster))
	}
	if ap, err := netip.ParseAddrPort(o.Listen); err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
		errs = append(errs, fmt.Errorf("proxy listen address %q: want a loopback IP:PORT", o.Listen))
	}
	if len(o.Backends) == 0 {
		errs = append(errs, errors.New("API server proxy: no control plane to balance to"))
	}
	seen := map[string]bool{}
	for _, b := range o.Backends {
		if !nameRE.MatchString(b.Name) || seen[b.Name] {
			errs = append(errs, fmt.Errorf("API server proxy backend name %q: want a unique node name", b.Name))
		}
		seen[b.Name] = true
		if ap, err := netip.ParseAddrPort(b.Address); err != nil || ap.Port() == 0 {
			errs = append(errs, fmt.Errorf("API server proxy backend %s: %q is not IP:PORT", b.Name, b.Address))
		}
	}
	return errors.Join(errs...)
}

// Render is the haproxy.cfg of this node (the same on every node).
func (o APIServerProxy) Render() ([]byte, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	return templates.Render("haproxy.cfg.tmpl", o)
}

func (o APIServerProxy) port() string {
	ap, _ := netip.ParseAddrPort(o.Listen) // validated
	return strconv.Itoa(int(ap.Port()))
}

func (o APIServerProxy) Needs() facts.Request {
	return facts.Request{Packages: []string{"haproxy"}, Files: []string{HAProxyConfig}}
}

// Check: haproxy installed (by hostprep/packages), its config as rendered
// (by digest), and the service enabled and running.
func (o APIServerProxy) Check(_ context.Context, t step.Target) (step.Change, error) {
	cfg, err := o.Render()
	if err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	f := t.Facts
	var ch step.Change
	installed := f.Packages["haproxy"] != ""
	if !installed {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "haproxy", From: "(absent)", To: "installed by hostprep/packages"})
	}
	fromTo, differs := hostprep.FileDiff(f.Files, HAProxyConfig, cfg)
	if differs {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: HAProxyConfig, From: fromTo[0], To: fromTo[1]})
		ch.Diff = append(ch.Diff, o.Describe()...)
	}
	if s := f.Services["haproxy"]; s != "enabled/active" {
		from := s
		if from == "" {
			from = "(absent)"
		}
		ch.Diff = append(ch.Diff, step.DiffLine{Key: HAProxyService, From: from, To: "enabled/active"})
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

// Apply writes haproxy.cfg when it differs (uploaded beside it, checked
// with `haproxy -c`, then renamed over it: a config haproxy rejects never
// replaces a working one), enables the service, reloads it only when the
// config changed (a reload keeps established connections), and waits until
// the endpoint port listens.
func (o APIServerProxy) Apply(ctx context.Context, t step.Target) error {
	cfg, err := o.Render()
	if err != nil {
		return err
	}
	h := t.Host
	if err := h.Run(ctx, host.Cmd{Line: "command -v haproxy >/dev/null"}); err != nil {
		var ee *host.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("haproxy is not on the host: hostprep/packages installs it (the distribution's haproxy package, or the bundle's .deb) when the endpoint is node-local: %w", ErrProxyNotInstalled)
		}
		return fmt.Errorf("look for haproxy: %w", err)
	}
	st, err := hostprep.StatFile(ctx, h, HAProxyConfig, true)
	if err != nil {
		return err
	}
	changed := !st.Exists || st.SHA256 != hostprep.Digest(cfg) || st.Mode != "644" || st.Owner != "root" || st.Group != "root"
	if changed {
		if err := h.Upload(ctx, bytes.NewReader(cfg), haproxyNew, host.FileOptions{Mode: 0o644, Owner: "root", Group: "root"}); err != nil {
			return fmt.Errorf("upload %s: %w", haproxyNew, err)
		}
		line := "if out=$(" + host.Join("haproxy", "-c", "-q", "-f", haproxyNew) + " 2>&1); then " +
			host.Join("mv", "-f", "--", haproxyNew, HAProxyConfig) + "; else " +
			host.Join("rm", "-f", "--", haproxyNew) + "; printf '%s\\n' \"$out\" >&2; exit 1; fi"
		if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
			return fmt.Errorf("haproxy rejected the rendered %s (the old one is kept): %w", HAProxyConfig, err)
		}
	}
	verb := "start"
	if changed {
		verb = "reload-or-restart"
	}
	// A reload forks the new worker after systemctl returns: wait (10s at
	// most) for the endpoint port, and show the journal if it never comes.
	listening := host.Join("ss", "-Hltn", "sport = :"+o.port()) + " | grep -q ."
	show := "echo " + host.Quote("haproxy does not listen on "+o.Listen+":") + " >&2; " + host.Join("journalctl", "-u", HAProxyService, "-n", "20", "--no-pager") + " >&2"
	line := host.Join("systemctl", "enable", "--quiet", HAProxyService) + " && " + host.Join("systemctl", verb, HAProxyService) +
		" && " + host.PollLine(listening, show, 10*time.Second, 500*time.Millisecond)
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("%s haproxy: %w", verb, err)
	}
	return nil
}
