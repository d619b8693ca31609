package hostprep

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/templates"
)

// Time sync daemons: the package, its unit, and clusterctl's drop-in.
type timeDaemon struct {
	name     string // as Facts.TimeSync reports it
	pkg      string
	unit     string
	dropIn   string
	template string
	// include, when set, is a line the main config needs so it reads the
	// drop-in directory (RHEL's chrony.conf has no confdir by default).
	mainConf, include string
}

var (
	timesyncd = timeDaemon{name: "systemd-timesyncd", pkg: "systemd-timesyncd", unit: "systemd-timesyncd",
		dropIn: "/etc/systemd/timesyncd.conf.d/clusterctl.conf", template: "timesyncd.conf.tmpl"}
	chronyDebian = timeDaemon{name: "chrony", pkg: "chrony", unit: "chrony",
		dropIn: "/etc/chrony/conf.d/clusterctl.conf", template: "chrony.conf.tmpl"}
	chronyRHEL = timeDaemon{name: "chrony", pkg: "chrony", unit: "chronyd",
		dropIn: "/etc/chrony.d/clusterctl.conf", template: "chrony.conf.tmpl",
		mainConf: "/etc/chrony.conf", include: "confdir /etc/chrony.d"}
)

// daemon picks the daemon for the host: chrony on the RHEL family (and on
// Debian hosts that already run chrony), systemd-timesyncd otherwise.
func daemonFor(f *facts.Facts) timeDaemon {
	switch {
	case f.OSFamily == "rhel":
		return chronyRHEL
	case f.TimeSync == "chrony":
		return chronyDebian
	}
	return timesyncd
}

var serverRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.:-]*$`)

func (o TimeSync) validate() error {
	for _, s := range o.Servers {
		if !serverRE.MatchString(s) {
			return fmt.Errorf("time server %q: want a host name or address", s)
		}
	}
	return nil
}

func (o TimeSync) render(d timeDaemon) ([]byte, error) {
	return templates.Render(d.template, struct{ Servers []string }{o.Servers})
}

func (TimeSync) Needs() facts.Request {
	return facts.Request{
		Packages: []string{"chrony", "systemd-timesyncd"},
		Files:    []string{timesyncd.dropIn, chronyDebian.dropIn, chronyRHEL.dropIn},
	}
}

// unitState is what systemd says about a unit.
type unitState struct {
	Load, Active, Enabled string
	// Skipped: the last start was refused by a unit condition (e.g.
	// systemd-timesyncd's ConditionVirtualization=!container).
	Skipped bool
	Virt    string // systemd-detect-virt -c
}

func (u unitState) skipNote(unit string) string {
	return fmt.Sprintf("%s is enabled but systemd skips it: a unit condition is unmet (container %q; it needs a VM or bare metal and CAP_SYS_TIME): the clock is the machine's", unit, u.Virt)
}

func readUnit(ctx context.Context, h host.Host, unit string) (unitState, error) {
	var out bytes.Buffer
	line := host.Join("systemctl", "show", "-p", "LoadState", "-p", "ActiveState", "-p", "UnitFileState",
		"-p", "ConditionResult", "-p", "ConditionTimestampMonotonic", "--", unit+".service") +
		"; printf 'Virt=%s\\n' \"$(systemd-detect-virt -c 2>/dev/null)\""
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
		return unitState{}, fmt.Errorf("ask systemd about %s: %w", unit, err)
	}
	kv := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	return unitState{
		Load: kv["LoadState"], Active: kv["ActiveState"], Enabled: kv["UnitFileState"],
		Skipped: kv["ConditionResult"] == "no" && kv["ConditionTimestampMonotonic"] != "" && kv["ConditionTimestampMonotonic"] != "0",
		Virt:    kv["Virt"],
	}, nil
}

// Check: the daemon's package is installed, its drop-in holds Servers, and
// the unit is enabled and running. The unit's state needs one cheap
// systemctl call (the probe only says active or not); a unit that systemd
// refuses to run here (container) is reported in the note, not as a change
// that would never converge.
func (o TimeSync) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	d := daemonFor(t.Facts)
	var ch step.Change
	installed := t.Facts.Packages[d.pkg] != ""
	if !installed {
		src := "repositories"
		if t.Bundle != nil {
			kind, err := bundleKind(t.Facts.PackageManager)
			if err != nil {
				return step.Change{}, err
			}
			if _, ok := bundlePackage(t.Bundle, kind, d.pkg); !ok {
				return step.Change{}, o.notInBundle(d, t.Bundle)
			}
			src = "bundle"
		}
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "package " + d.pkg, From: "(absent)", To: "install (" + src + ")"})
	}
	if len(o.Servers) > 0 {
		content, err := o.render(d)
		if err != nil {
			return step.Change{}, err
		}
		if ft, differs := FileDiff(t.Facts.Files, d.dropIn, content); differs {
			ch.Diff = append(ch.Diff, step.DiffLine{Key: d.dropIn, From: ft[0], To: strings.Join(o.Servers, " ")})
		}
	} else if s := t.Facts.Files[d.dropIn]; s != "" && s != "missing" {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: d.dropIn, From: "present", To: "(removed: daemon's own servers)"})
	}
	if installed {
		u, err := readUnit(ctx, t.Host, d.unit)
		if err != nil {
			return step.Change{}, err
		}
		if u.Enabled != "enabled" {
			ch.Diff = append(ch.Diff, step.DiffLine{Key: d.unit + " enabled", From: u.Enabled, To: "enabled"})
		}
		switch {
		case u.Active == "active":
		case u.Skipped:
			ch.Note = u.skipNote(d.unit)
		default:
			ch.Diff = append(ch.Diff, step.DiffLine{Key: d.unit, From: u.Active, To: "active"})
		}
	} else {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: d.unit, From: "(absent)", To: "enabled, active"})
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

func (o TimeSync) notInBundle(d timeDaemon, b *bundle.Bundle) error {
	return fmt.Errorf("time sync needs package %s, which is neither installed nor in the bundle %s: add it to the bundle or install it on the host", d.pkg, b.Dir)
}

// Apply installs the daemon when absent (repositories, or the bundle's
// package), writes the drop-in, enables the unit, restarts it when its
// config changed (starts it otherwise), and checks that it runs, or that
// systemd skipped it for a reason it names.
func (o TimeSync) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	f := t.Facts
	if f == nil {
		return fmt.Errorf("time sync: apply needs the host's facts (the daemon depends on the OS)")
	}
	d := daemonFor(f)
	if f.Packages[d.pkg] == "" {
		if t.Bundle != nil {
			kind, err := bundleKind(f.PackageManager)
			if err != nil {
				return err
			}
			file, ok := bundlePackage(t.Bundle, kind, d.pkg)
			if !ok {
				return o.notInBundle(d, t.Bundle)
			}
			if err := InstallFromBundle(ctx, t.Host, t.Bundle, []bundle.File{file}); err != nil {
				return fmt.Errorf("install %s: %w", d.pkg, err)
			}
		} else if err := InstallOnline(ctx, t.Host, f.PackageManager, []string{d.pkg}); err != nil {
			return err
		}
	}
	changed := false
	if len(o.Servers) > 0 {
		content, err := o.render(d)
		if err != nil {
			return err
		}
		if changed, err = WriteFile(ctx, t.Host, d.dropIn, content, 0o644); err != nil {
			return err
		}
		if d.include != "" {
			c, err := ensureLine(ctx, t.Host, d.mainConf, d.include)
			if err != nil {
				return err
			}
			changed = changed || c
		}
	} else {
		var out bytes.Buffer
		line := "if [ -e " + host.Quote(d.dropIn) + " ]; then rm -f -- " + host.Quote(d.dropIn) + " && echo removed; fi"
		if err := t.Host.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
			return fmt.Errorf("remove %s: %w", d.dropIn, err)
		}
		changed = strings.TrimSpace(out.String()) == "removed"
	}
	verb := "start"
	if changed {
		verb = "restart"
	}
	line := host.Join("systemctl", "enable", "--quiet", "--", d.unit+".service") + " && " + host.Join("systemctl", verb, "--", d.unit+".service")
	if err := t.Host.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("%s %s: %w", verb, d.unit, err)
	}
	u, err := readUnit(ctx, t.Host, d.unit)
	if err != nil {
		return err
	}
	if u.Active != "active" && !u.Skipped {
		return fmt.Errorf("%s is %s after %s (see journalctl -u %s)", d.unit, u.Active, verb, d.unit)
	}
	return nil
}

// ensureLine appends line to file unless the file has it; it says whether
// it changed the file.
func ensureLine(ctx context.Context, h host.Host, file, line string) (bool, error) {
	cur, err := h.ReadFile(ctx, file)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", file, err)
	}
	for _, l := range strings.Split(string(cur), "\n") {
		if strings.TrimSpace(l) == line {
			return false, nil
		}
	}
	next := string(cur)
	if next != "" && !strings.HasSuffix(next, "\n") {
		next += "\n"
	}
	next += "# added by clusterctl: read its drop-ins\n" + line + "\n"
	if err := h.Upload(ctx, strings.NewReader(next), file, host.FileOptions{Mode: 0o644, Owner: "root", Group: "root"}); err != nil {
		return false, fmt.Errorf("write %s: %w", file, err)
	}
	return true, nil
}
