package hostprep

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

const selinuxConfig = "/etc/selinux/config"

var selinuxLine = regexp.MustCompile(`(?m)^[ \t]*SELINUX[ \t]*=.*$`)

func (o SELinux) validate() error {
	if o.Mode != "permissive" && o.Mode != "disabled" {
		return fmt.Errorf("selinux mode %q: want permissive or disabled", o.Mode)
	}
	return nil
}

func (SELinux) Needs() facts.Request { return facts.Request{} }

// Check reads the live mode from facts; where SELinux exists it also reads
// /etc/selinux/config (one cheap read, on RHEL-family hosts only) because
// the mode after the next boot is what the file says.
func (o SELinux) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	if t.Facts.SELinux == "absent" || t.Facts.SELinux == "" {
		return step.Change{Action: step.ActionNone, Note: "SELinux not present"}, nil
	}
	var ch step.Change
	if t.Facts.SELinux == "enforcing" {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "selinux (now)", From: "enforcing", To: "permissive"})
	}
	conf, err := t.Host.ReadFile(ctx, selinuxConfig)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return step.Change{}, fmt.Errorf("read %s: %w", selinuxConfig, err)
	}
	if cur := configuredSELinux(string(conf)); cur != o.Mode {
		if cur == "" {
			cur = "(unset)"
		}
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "SELINUX in " + selinuxConfig, From: cur, To: o.Mode})
	}
	if len(ch.Diff) == 0 {
		ch.Action = step.ActionNone
		if o.Mode == "disabled" && t.Facts.SELinux == "permissive" {
			ch.Note = "permissive until the next reboot, then disabled"
		}
		return ch, nil
	}
	ch.Action = step.ActionUpdate
	return ch, nil
}

func configuredSELinux(conf string) string {
	m := selinuxLine.FindAllString(conf, -1)
	if len(m) == 0 {
		return ""
	}
	_, v, _ := strings.Cut(m[len(m)-1], "=")
	return strings.ToLower(strings.Trim(strings.TrimSpace(v), `"'`))
}

// Apply sets enforcement off now (setenforce 0; "disabled" needs a reboot
// to take full effect) and the mode in /etc/selinux/config.
func (o SELinux) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	if t.Facts != nil && (t.Facts.SELinux == "absent" || t.Facts.SELinux == "") {
		return nil
	}
	if t.Facts == nil || t.Facts.SELinux == "enforcing" {
		// getenforce says Disabled when SELinux is off in the kernel; then
		// setenforce would fail and there is nothing to do now.
		line := "if command -v getenforce >/dev/null && [ \"$(getenforce)\" = Enforcing ]; then setenforce 0; fi"
		if err := t.Host.Run(ctx, host.Cmd{Line: line}); err != nil {
			return fmt.Errorf("set selinux permissive: %w", err)
		}
	}
	conf, err := t.Host.ReadFile(ctx, selinuxConfig)
	if errors.Is(err, fs.ErrNotExist) {
		conf = nil
	} else if err != nil {
		return fmt.Errorf("read %s: %w", selinuxConfig, err)
	}
	next := SetSELinuxMode(string(conf), o.Mode)
	if next == string(conf) {
		return nil
	}
	if err := t.Host.Upload(ctx, strings.NewReader(next), selinuxConfig, host.FileOptions{Mode: 0o644, Owner: "root", Group: "root"}); err != nil {
		return fmt.Errorf("write %s: %w", selinuxConfig, err)
	}
	return nil
}

// SetSELinuxMode replaces every SELINUX= line of conf with mode (appending
// one when there is none), keeping everything else.
func SetSELinuxMode(conf, mode string) string {
	if selinuxLine.MatchString(conf) {
		return selinuxLine.ReplaceAllString(conf, "SELINUX="+mode)
	}
	if conf != "" && !strings.HasSuffix(conf, "\n") {
		conf += "\n"
	}
	return conf + "SELINUX=" + mode + "\n"
}
