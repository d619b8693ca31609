package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
)

// Moving a node that runs its pods on a distribution's containerd 1.x to
// the bundle's containerd 2. The node must be drained first (kube's
// migrate-runtime step does that around these): what still runs there are
// static pods and DaemonSet pods, which the kubelet makes again on the new
// runtime.

// Migration says whether a host needs moving: it joined a cluster, runs a
// containerd 1.x, and the bundle carries containerd. from and to are the
// versions the plan shows.
func Migration(t step.Target, source string) (from, to string, needed bool, err error) {
	if source != "bundle" || t.Facts == nil {
		return "", "", false, nil
	}
	bins, _, err := bundledFiles(t.Bundle)
	if err != nil || bins == nil {
		return "", "", false, err
	}
	f := t.Facts
	if !isV1(f.Containerd) || f.Files[kubeletConf] == "" || f.Files[kubeletConf] == "missing" {
		return "", "", false, nil
	}
	return f.Containerd, bundledVersion(t), true, nil
}

// bundledVersion is the bundle's containerd version, or "2" when its
// manifest does not say.
func bundledVersion(t step.Target) string {
	if v := t.Bundle.Manifest.Versions["containerd"]; v != "" {
		return v
	}
	return "2"
}

// InstalledVersion asks the host which containerd it runs ("" for none).
func InstalledVersion(ctx context.Context, h host.Host) (string, error) {
	out, err := host.Output(ctx, h, "if command -v containerd >/dev/null; then containerd --version; fi")
	if err != nil {
		return "", fmt.Errorf("ask containerd for its version: %w", err)
	}
	if f := strings.Fields(out); len(f) >= 3 {
		return strings.TrimPrefix(f[2], "v"), nil
	}
	return "", nil
}

// stopPods stops the kubelet, then kills and removes every container of
// the kubelet's namespace, bounded, so the old containerd leaves no task
// for the new one to adopt across a major version.
var stopPods = `systemctl stop kubelet.service && ` +
	`for id in $(ctr -n k8s.io tasks ls -q); do ctr -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done; ` +
	host.PollLine(`! ctr -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING"' | grep -q .`,
		`echo "containers still running after 60s:" >&2; ctr -n k8s.io tasks ls >&2`, time.Minute, 200*time.Millisecond) + `; ` +
	`for id in $(ctr -n k8s.io tasks ls -q); do ctr -n k8s.io tasks delete -f "$id" >/dev/null 2>&1; done; ` +
	`for id in $(ctr -n k8s.io containers ls -q); do ctr -n k8s.io containers delete "$id" >/dev/null 2>&1; done; ` +
	`systemctl stop containerd.service`

// Migrate moves a drained node to the bundle's containerd: the kubelet
// and the pods' containers stop, containerd stops, the bundle's binaries,
// unit and a version 3 config go in, containerd starts and answers, and
// the kubelet starts again.
func (o Containerd) Migrate(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	h := t.Host
	bins, files, err := bundledFiles(t.Bundle)
	if err != nil {
		return err
	}
	if bins == nil {
		return errors.New("the bundle carries no containerd to move to")
	}
	restrict, err := lacksSysResource(ctx, h)
	if err != nil {
		return err
	}
	config, _, err := o.Render(restrict, true)
	if err != nil {
		return err
	}
	if err := h.Run(ctx, host.Cmd{Line: stopPods}); err != nil {
		return fmt.Errorf("stop the kubelet and the pods on containerd 1.x: %w", err)
	}
	if _, err := installBundled(ctx, h, t.Bundle, bins, files); err != nil {
		return err
	}
	if _, err := hostprep.WriteFile(ctx, h, ConfigFile, config, 0o644); err != nil {
		return err
	}
	if err := h.Run(ctx, host.Cmd{Line: "systemctl enable --quiet containerd.service && systemctl start containerd.service"}); err != nil {
		return fmt.Errorf("start the bundle's containerd: %w", err)
	}
	if err := waitReady(ctx, h); err != nil {
		return err
	}
	if err := h.Run(ctx, host.Cmd{Line: "systemctl start kubelet.service"}); err != nil {
		return fmt.Errorf("start the kubelet on the bundle's containerd: %w", err)
	}
	return nil
}

// Revert puts a node whose Migrate failed back on the distribution's
// containerd: the bundle's runtime files and unit are removed (the
// package's unit and /usr/bin binaries are in force again), the version 2
// config is written, and containerd and the kubelet start. The bundle's
// CNI plugins stay: they serve containerd 1.x as well.
func (o Containerd) Revert(ctx context.Context, t step.Target) error {
	h := t.Host
	restrict, err := lacksSysResource(ctx, h)
	if err != nil {
		return err
	}
	config, _, err := o.Render(restrict, false)
	if err != nil {
		return err
	}
	rm := []string{"rm", "-f", "--", UnitFile}
	for _, b := range runtimeBinaries {
		rm = append(rm, b.dst)
	}
	line := "systemctl stop kubelet.service containerd.service; " + host.Join(rm...) + " && systemctl daemon-reload"
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("remove the bundle's containerd: %w", err)
	}
	if _, err := hostprep.WriteFile(ctx, h, ConfigFile, config, 0o644); err != nil {
		return err
	}
	if err := h.Run(ctx, host.Cmd{Line: "systemctl start containerd.service"}); err != nil {
		return fmt.Errorf("start the distribution's containerd again: %w", err)
	}
	if err := waitReady(ctx, h); err != nil {
		return err
	}
	if err := h.Run(ctx, host.Cmd{Line: "systemctl start kubelet.service"}); err != nil {
		return fmt.Errorf("start the kubelet again: %w", err)
	}
	return nil
}
