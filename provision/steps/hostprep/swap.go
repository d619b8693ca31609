package hostprep

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

const (
	fstabFile   = "/etc/fstab"
	fstabBackup = "/etc/fstab.clusterctl.bak"
	// fstabMark prefixes the swap lines clusterctl commented out, so a
	// person can see (and undo) what was changed.
	fstabMark = "#clusterctl# "
)

func (Swap) Needs() facts.Request { return facts.Request{} }

// Check reports active swap devices and uncommented swap lines in fstab.
func (o Swap) Check(_ context.Context, t step.Target) (step.Change, error) {
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	var ch step.Change
	if n := len(t.Facts.SwapDevices); n > 0 {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: "swap devices", From: strings.Join(t.Facts.SwapDevices, ", "), To: "off"})
	}
	if n := len(t.Facts.FstabSwap); n > 0 {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: fstabFile, From: strconv.Itoa(n) + " swap line(s)", To: "commented out"})
	}
	if len(ch.Diff) == 0 {
		return step.Change{Action: step.ActionNone}, nil
	}
	ch.Action = step.ActionUpdate
	return ch, nil
}

// Apply turns swap off now (only when some is on, or when facts are
// unknown) and comments out fstab's swap lines, keeping the original fstab
// once as /etc/fstab.clusterctl.bak.
func (o Swap) Apply(ctx context.Context, t step.Target) error {
	if t.Facts == nil || len(t.Facts.SwapDevices) > 0 {
		if err := t.Host.Run(ctx, host.Cmd{Line: "swapoff -a"}); err != nil {
			return fmt.Errorf("turn swap off: %w", err)
		}
	}
	cur, err := t.Host.ReadFile(ctx, fstabFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", fstabFile, err)
	}
	next := CommentSwap(string(cur))
	if next == string(cur) {
		return nil
	}
	// The backup is the fstab as it was before clusterctl's first edit:
	// never overwritten, so it always shows the user's original.
	b, f := host.Quote(fstabBackup), host.Quote(fstabFile)
	if err := t.Host.Run(ctx, host.Cmd{Line: "[ -e " + b + " ] || cp -p -- " + f + " " + b}); err != nil {
		return fmt.Errorf("back up %s: %w", fstabFile, err)
	}
	if err := t.Host.Upload(ctx, strings.NewReader(next), fstabFile, host.FileOptions{Mode: 0o644, Owner: "root", Group: "root"}); err != nil {
		return fmt.Errorf("write %s: %w", fstabFile, err)
	}
	return nil
}

// CommentSwap prefixes every active swap line of an fstab with the mark.
func CommentSwap(fstab string) string {
	lines := strings.SplitAfter(fstab, "\n")
	for i, l := range lines {
		trim := strings.TrimSpace(l)
		if trim == "" || strings.HasPrefix(trim, "#") {
			continue
		}
		if f := strings.Fields(trim); len(f) >= 3 && f[2] == "swap" {
			lines[i] = fstabMark + l
		}
	}
	return strings.Join(lines, "")
}
