package hostprep

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// hostnameFile is where the name lives across reboots.
const hostnameFile = "/etc/hostname"

// RFC 1123 host name: dot-separated labels of letters, digits and inner
// hyphens, 63 characters each, 253 in all.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

func (o Hostname) validate() error {
	if len(o.Name) > 253 || !hostnameRE.MatchString(o.Name) {
		return fmt.Errorf("hostname %q is not a valid host name (letters, digits, inner hyphens, dot-separated labels)", o.Name)
	}
	return nil
}

func (Hostname) Needs() facts.Request { return facts.Request{Files: []string{hostnameFile}} }

// Check compares the running name and /etc/hostname with Name.
func (o Hostname) Check(_ context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	var ch step.Change
	if t.Facts.Hostname != o.Name {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "hostname", From: t.Facts.Hostname, To: o.Name})
	}
	if ft, differs := FileDiff(t.Facts.Files, hostnameFile, []byte(o.Name+"\n")); differs {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: hostnameFile, From: ft[0], To: o.Name})
	}
	if len(ch.Diff) == 0 {
		ch.Action = step.ActionNone
		return ch, nil
	}
	ch.Action = step.ActionUpdate
	return ch, nil
}

// Apply sets the name with hostnamectl under systemd (it writes
// /etc/hostname and tells hostnamed), otherwise writes /etc/hostname and runs
// hostname(1).
func (o Hostname) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	systemd := t.Facts != nil && t.Facts.Init == "systemd"
	if t.Facts == nil {
		// Offline plan: ask the host what it runs.
		err := t.Host.Run(ctx, host.Cmd{Line: "[ -d /run/systemd/system ] && command -v hostnamectl >/dev/null"})
		systemd = err == nil
		var ee *host.ExitError
		if err != nil && !errors.As(err, &ee) {
			return fmt.Errorf("detect init system: %w", err)
		}
	}
	if systemd {
		if err := t.Host.Run(ctx, host.Cmd{Line: host.Join("hostnamectl", "set-hostname", "--", o.Name)}); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
		// hostnamectl leaves /etc/hostname alone when it already matches
		// the static name; make sure the file holds exactly the name.
		_, err := WriteFile(ctx, t.Host, hostnameFile, []byte(o.Name+"\n"), 0o644)
		return err
	}
	if _, err := WriteFile(ctx, t.Host, hostnameFile, []byte(o.Name+"\n"), 0o644); err != nil {
		return err
	}
	if err := t.Host.Run(ctx, host.Cmd{Line: host.Join("hostname", "--", o.Name)}); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	return nil
}

// Markers of the managed block in /etc/hosts.
const (
	etcHostsFile  = "/etc/hosts"
	hostsBegin    = "# BEGIN clusterctl managed block"
	hostsEnd      = "# END clusterctl managed block"
	hostsLineMark = "# clusterctl"
)

// blockLines are the managed lines, in the order given (the planner keeps
// the spec's host order, so the block is the same on every run).
// Each line carries a trailing mark so the facts probe, which drops comment
// lines (and so the BEGIN/END markers), still tells managed lines apart.
func (o EtcHosts) blockLines() []string {
	lines := make([]string, len(o.Entries))
	for i, e := range o.Entries {
		lines[i] = e.Address + "\t" + e.Name + "\t" + hostsLineMark
	}
	return lines
}

// BlockSHA256 is the hex sha256 of the block as the step writes it, markers
// included: on a host, compare it with
// `sed -n '/^# BEGIN clusterctl/,/^# END clusterctl/p' /etc/hosts | sha256sum`.
func (o EtcHosts) BlockSHA256() string {
	if o.sum != "" {
		return o.sum
	}
	h := sha256.New()
	fmt.Fprintln(h, hostsBegin) // a hash never fails to write
	for _, l := range o.blockLines() {
		fmt.Fprintln(h, l)
	}
	fmt.Fprintln(h, hostsEnd)
	return hex.EncodeToString(h.Sum(nil))
}

func (o EtcHosts) validate() error {
	for _, e := range o.Entries {
		if strings.ContainsAny(e.Address, " \t\r\n#") || e.Address == "" {
			return fmt.Errorf("/etc/hosts entry for %q: address %q is not an address", e.Name, e.Address)
		}
		if !hostnameRE.MatchString(e.Name) {
			return fmt.Errorf("/etc/hosts entry %q: not a valid host name", e.Name)
		}
	}
	return nil
}

func (EtcHosts) Needs() facts.Request { return facts.Request{} }

// Check compares the managed lines the probe reported (Facts.EtcHosts keeps
// non-comment lines, and managed lines end in the mark) with the block.
func (o EtcHosts) Check(_ context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return o.CheckOffline(), nil
	}
	var have []string
	haveAddr := map[string][]string{}
	for _, l := range t.Facts.EtcHosts {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.HasSuffix(strings.TrimSpace(l), hostsLineMark) {
			have = append(have, strings.Join(f, " "))
			haveAddr[f[1]] = append(haveAddr[f[1]], f[0])
		}
	}
	want := o.blockLines()
	norm := make([]string, len(want))
	for i, l := range want {
		norm[i] = strings.Join(strings.Fields(l), " ")
	}
	if strings.Join(have, "\n") == strings.Join(norm, "\n") {
		return step.Change{Action: step.ActionNone}, nil
	}
	ch := step.Change{Action: step.ActionUpdate}
	if len(have) == 0 {
		ch.Action = step.ActionCreate
	}
	wantAddr := map[string]bool{}
	for _, e := range o.Entries {
		wantAddr[e.Name] = true
		from := strings.Join(haveAddr[e.Name], ",")
		if from != e.Address {
			if from == "" {
				from = "(absent)"
			}
			ch.Diff = append(ch.Diff, step.DiffLine{Key: e.Name, From: from, To: e.Address})
		}
	}
	for _, name := range facts.Sorted(haveAddr) {
		if !wantAddr[name] {
			ch.Diff = append(ch.Diff, step.DiffLine{Key: name, From: strings.Join(haveAddr[name], ","), To: "(removed)"})
		}
	}
	switch {
	case len(ch.Diff) == 0:
		ch.Diff = []step.DiffLine{{Key: "managed block", From: "out of order", To: "rewritten"}}
	case len(ch.Diff) > describeEntries:
		// A fresh host of a large cluster: one line, not one per host.
		ch.Diff = []step.DiffLine{o.collapsed(len(have), len(ch.Diff))}
	}
	return ch, nil
}

// collapsed is a long diff in one line: have managed lines now, differ of
// the entries differ.
func (o EtcHosts) collapsed(have, differ int) step.DiffLine {
	to := "none"
	if len(o.Entries) > 0 {
		to = o.summary()
	}
	d := step.DiffLine{Key: "managed block", To: fmt.Sprintf("%s; %d entries differ", to, differ)}
	if have > 0 {
		d.From = fmt.Sprintf("%d lines", have)
	}
	return d
}

// Apply rewrites the managed block in place (or appends it), leaving every
// other line as it was, and uploads the file only when it changed.
func (o EtcHosts) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	cur, err := t.Host.ReadFile(ctx, etcHostsFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", etcHostsFile, err)
	}
	next := ReplaceHostsBlock(string(cur), o.blockLines())
	if next == string(cur) {
		return nil
	}
	if err := t.Host.Upload(ctx, strings.NewReader(next), etcHostsFile, host.FileOptions{Mode: 0o644, Owner: "root", Group: "root"}); err != nil {
		return fmt.Errorf("write %s: %w", etcHostsFile, err)
	}
	return nil
}

// ReplaceHostsBlock returns content with the managed block holding lines:
// the old block (and stray marked lines) removed, the new one put where the
// old one began, or appended. An empty lines removes the block.
func ReplaceHostsBlock(content string, lines []string) string {
	var out []string
	at := -1
	in := false
	src := strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	if content == "" {
		src = nil
	}
	for _, l := range src {
		trim := strings.TrimSpace(l)
		switch {
		case trim == hostsBegin:
			in = true
			if at < 0 {
				at = len(out)
			}
		case trim == hostsEnd:
			in = false
		case in:
		case strings.HasSuffix(trim, hostsLineMark) && !strings.HasPrefix(trim, "#"):
			// A managed line that lost its markers.
			if at < 0 {
				at = len(out)
			}
		default:
			out = append(out, l)
		}
	}
	if len(lines) == 0 {
		return joinLines(out)
	}
	block := append([]string{hostsBegin}, lines...)
	block = append(block, hostsEnd)
	if at < 0 {
		at = len(out)
	}
	res := append(append(append([]string{}, out[:at]...), block...), out[at:]...)
	return joinLines(res)
}

func joinLines(l []string) string {
	if len(l) == 0 {
		return ""
	}
	var b bytes.Buffer
	for _, s := range l {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}
