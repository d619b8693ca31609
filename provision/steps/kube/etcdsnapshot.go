package kube

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Where kubeadm's stacked etcd keeps its data and client certificates, on
// the host and (the same paths, mounted) in the etcd static pod.
const (
	etcdDataDir  = "/var/lib/etcd"
	etcdPKI      = "/etc/kubernetes/pki/etcd"
	snapshotPart = etcdDataDir + "/clusterctl-snapshot.db.part"
)

// snapshotGlob matches the snapshots taken before an upgrade to version.
func snapshotGlob(version string) string {
	return "etcd-before-" + GitVersion(version) + "-*.db"
}

func (o EtcdSnapshot) validate() error {
	if err := o.Cluster.validate(); err != nil {
		return err
	}
	if !nameRE.MatchString(o.Node) {
		return fmt.Errorf("node name %q is not a DNS name", o.Node)
	}
	if !path.IsAbs(o.Dir) || path.Clean(o.Dir) != o.Dir || strings.ContainsAny(o.Dir, " \t\n*?[") {
		return fmt.Errorf("backup directory %q: want a clean absolute path", o.Dir)
	}
	return nil
}

// existingSnapshot names a snapshot for this target whose sha256 file
// still matches it ("" when there is none).
func (o EtcdSnapshot) existingSnapshot(ctx context.Context, h host.Host) (string, error) {
	line := "cd " + host.Quote(o.Dir) + " 2>/dev/null || exit 0; for f in " + snapshotGlob(o.Cluster.Version) +
		"; do if [ -f \"$f\" ] && sha256sum -c --status -- \"$f.sha256\" 2>/dev/null; then echo \"$f\"; fi; done; true"
	out, err := runOut(ctx, h, line)
	if err != nil {
		return "", fmt.Errorf("look for an earlier snapshot in %s: %w", o.Dir, err)
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return "", nil
	}
	return path.Join(o.Dir, f[len(f)-1]), nil
}

// needed says whether a roll to the target is still to come (some API
// server or kubelet runs an older version), applying the skew policy to
// every version the cluster runs; it returns the oldest.
func (o EtcdSnapshot) needed(cv clusterVersions) (string, bool, error) {
	vs := cv.all()
	behind := false
	for _, v := range vs {
		up, err := CheckUpgrade(v, o.Cluster.Version)
		if err != nil {
			return "", false, err
		}
		behind = behind || up
	}
	return oldest(vs...), behind, nil
}

// Check: nothing when there is no cluster yet, when every API server and
// kubelet runs the target, or when a snapshot for this target was taken
// (and still matches its sha256) by an earlier, interrupted roll; a
// version the skew policy forbids is an error.
func (o EtcdSnapshot) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return o.CheckOffline(), nil
	}
	cv, err := probeCluster(ctx, t.Host)
	if err != nil || !cv.exists {
		return step.Change{Action: step.ActionNone}, err
	}
	from, behind, err := o.needed(cv)
	if err != nil || !behind {
		return step.Change{Action: step.ActionNone}, err
	}
	if f, err := o.existingSnapshot(ctx, t.Host); err != nil || f != "" {
		return step.Change{Action: step.ActionNone}, err
	}
	return step.Change{Action: step.ActionCreate, Diff: []step.DiffLine{
		{Key: "etcd snapshot", To: path.Join(o.Dir, snapshotGlob(o.Cluster.Version)) + " on " + o.Node + " (+ .sha256)"},
		{Key: "before", To: "upgrade " + from + " -> " + strings.TrimPrefix(o.Cluster.Version, "v")},
	}}, nil
}

// Apply saves the snapshot with the etcdctl of the node's etcd static pod
// (kubeadm hosts have none; the etcd image does) into etcd's data
// directory, checks it with etcdutl there, then moves it into Dir (0600)
// under a time-stamped name with its sha256 beside it.
func (o EtcdSnapshot) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.Cluster.Distribution != "kubeadm" {
		// k3s: `k3s etcd-snapshot save` has its place here.
		return ErrK3sUnsupported
	}
	if f, err := o.existingSnapshot(ctx, t.Host); err != nil || f != "" {
		return err
	}
	exec := Kubectl + " -n kube-system exec " + host.Quote("etcd-"+o.Node) + " -- "
	save := exec + host.Join("etcdctl", "--endpoints=https://127.0.0.1:2379",
		"--cacert="+etcdPKI+"/ca.crt", "--cert="+etcdPKI+"/healthcheck-client.crt", "--key="+etcdPKI+"/healthcheck-client.key",
		"snapshot", "save", snapshotPart)
	status := exec + host.Join("etcdutl", "snapshot", "status", snapshotPart, "-w", "table")
	name := "etcd-before-" + GitVersion(o.Cluster.Version) + "-$(date -u +%Y%m%dT%H%M%SZ).db"
	line := "set -e; umask 077; " + host.Join("install", "-d", "-m", "0700", "--", o.Dir) + "; " +
		host.Join("rm", "-f", "--", snapshotPart) + "; " +
		save + " >/dev/null; " + status + "; " +
		"name=" + name + "; " + host.Join("mv", "--", snapshotPart) + " " + host.Quote(o.Dir) + "/\"$name\"; " +
		"cd " + host.Quote(o.Dir) + "; chmod 0600 \"$name\"; sha256sum \"$name\" > \"$name.sha256\"; echo saved " + host.Quote(o.Dir) + "/\"$name\""
	var out strings.Builder
	if err := t.Host.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
		_ = t.Host.Run(context.WithoutCancel(ctx), host.Cmd{Line: host.Join("rm", "-f", "--", snapshotPart)})
		return fmt.Errorf("save an etcd snapshot on %s: %w", o.Node, err)
	}
	if !strings.Contains(out.String(), "saved "+o.Dir+"/") {
		return fmt.Errorf("save an etcd snapshot on %s: no snapshot reported: %q", o.Node, out.String())
	}
	return nil
}
