package hostprep

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

var portRE = regexp.MustCompile(`^[0-9]{1,5}(-[0-9]{1,5})?$`)

func (o Firewall) validate() error {
	switch o.Mode {
	case "disabled":
	case "open-ports":
		for _, p := range o.Ports {
			if p.Proto != "tcp" && p.Proto != "udp" {
				return fmt.Errorf("firewall port %s (%s): protocol %q, want tcp or udp", p.Port, p.For, p.Proto)
			}
			if !portRE.MatchString(p.Port) {
				return fmt.Errorf("firewall port %q (%s): want N or N-M", p.Port, p.For)
			}
		}
	default:
		return fmt.Errorf("firewall mode %q: want disabled or open-ports", o.Mode)
	}
	return nil
}

// firewalldPort is "6443/tcp" or "30000-32767/tcp"; ufw writes ranges with
// a colon.
func firewalldPort(p Port) string { return p.Port + "/" + p.Proto }
func ufwPort(p Port) string       { return strings.Replace(p.Port, "-", ":", 1) + "/" + p.Proto }

func (Firewall) Needs() facts.Request { return facts.Request{} }

// Check decides from the probe's firewall facts; for open-ports on an
// active firewall it lists the open ports with one cheap command.
func (o Firewall) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	fw := t.Facts.Firewall
	if fw == "" || fw == "none" {
		return step.Change{Action: step.ActionNone, Note: "no firewall present (neither firewalld nor ufw)"}, nil
	}
	if o.Mode == "disabled" {
		if !t.Facts.FirewallActive {
			return step.Change{Action: step.ActionNone, Note: fw + " is not running"}, nil
		}
		return step.Change{Action: step.ActionUpdate, Diff: []step.DiffLine{{Key: fw, From: "active", To: "stopped and disabled"}}}, nil
	}
	if !t.Facts.FirewallActive {
		return step.Change{Action: step.ActionNone, Note: fw + " is installed but not running: it blocks nothing"}, nil
	}
	missing, err := o.missingPorts(ctx, t.Host, fw)
	if err != nil {
		return step.Change{}, err
	}
	if len(missing) == 0 {
		return step.Change{Action: step.ActionNone}, nil
	}
	ch := step.Change{Action: step.ActionUpdate}
	for _, p := range missing {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: fw + " " + firewalldPort(p), From: "closed", To: "open (" + p.For + ")"})
	}
	return ch, nil
}

// missingPorts asks the firewall which of Ports are not open yet.
func (o Firewall) missingPorts(ctx context.Context, h host.Host, fw string) ([]Port, error) {
	var out bytes.Buffer
	var line string
	switch fw {
	case "firewalld":
		line = "firewall-cmd --permanent --list-ports"
	case "ufw":
		line = "ufw status"
	default:
		return nil, fmt.Errorf("firewall %q is not supported", fw)
	}
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
		return nil, fmt.Errorf("list open ports: %w", err)
	}
	var open []string
	if fw == "firewalld" {
		open = strings.Fields(out.String())
	} else {
		// "6443/tcp                   ALLOW       Anywhere"
		for _, l := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[1] == "ALLOW" {
				open = append(open, f[0])
			}
		}
	}
	var missing []Port
	for _, p := range o.Ports {
		want := firewalldPort(p)
		if fw == "ufw" {
			want = ufwPort(p)
		}
		if !slices.Contains(open, want) {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// Apply stops and disables the firewall, or opens Ports permanently and
// reloads (firewalld) / allows them (ufw).
func (o Firewall) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	fw := "detect"
	if t.Facts != nil {
		fw = t.Facts.Firewall
	}
	if fw == "detect" {
		var out bytes.Buffer
		line := "if systemctl list-unit-files firewalld.service 2>/dev/null | grep -q '^firewalld.service'; then echo firewalld; elif command -v ufw >/dev/null; then echo ufw; else echo none; fi"
		if err := t.Host.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
			return fmt.Errorf("detect firewall: %w", err)
		}
		fw = strings.TrimSpace(out.String())
	}
	var lines []string
	switch {
	case fw == "" || fw == "none":
		return nil
	case o.Mode == "disabled" && fw == "firewalld":
		lines = []string{"systemctl disable --now firewalld"}
	case o.Mode == "disabled" && fw == "ufw":
		lines = []string{"ufw disable"}
	case fw == "firewalld":
		if t.Facts != nil && !t.Facts.FirewallActive {
			return nil
		}
		args := []string{"firewall-cmd", "--permanent"}
		for _, p := range o.Ports {
			args = append(args, "--add-port="+firewalldPort(p))
		}
		lines = []string{host.Join(args...), "firewall-cmd --reload"}
	case fw == "ufw":
		if t.Facts != nil && !t.Facts.FirewallActive {
			return nil
		}
		for _, p := range o.Ports {
			lines = append(lines, host.Join("ufw", "allow", ufwPort(p)))
		}
	default:
		return fmt.Errorf("firewall %q is not supported", fw)
	}
	for _, l := range lines {
		if err := t.Host.Run(ctx, host.Cmd{Line: l}); err != nil {
			return fmt.Errorf("configure %s: %w", fw, err)
		}
	}
	return nil
}
