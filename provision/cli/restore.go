package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/clusterctl/clusterctl/provision/backup"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

func newRestoreCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore BACKUP [PATH...]",
		Short: "Bring the cluster back from a backup",
		Args:  cobra.MinimumNArgs(1),
		Long: `Restore brings a cluster back to the state of a backup made by
'clusterctl backup'. It checks the backup (its sha256 and its content), that
it belongs to this spec's cluster (a different cluster name, distribution or
Kubernetes minor version is refused without --force; a changed spec is only
a warning), shows what it will do and asks for confirmation unless --yes.

In place: when the first control plane runs a cluster with the backup's
certificates, etcd is restored following kubeadm's procedure: the static
pods stop (their manifests are moved aside), 'etcdutl snapshot restore'
makes a new data directory on every control plane (one etcd cluster of the
same members, revision bumped so no client trusts a cache from after the
backup), which replaces the old one; the control plane starts again, every
kubelet restarts, and the cluster's health is checked. The old data
directories are kept until then, and the error of a failed restore says how
to go back to them.

Rebuild: on hosts without a cluster (new machines, or after 'clusterctl
reset'), the hosts are prepared as apply does; the first control plane gets
the backup's certificate authorities, service-account keys and restored
etcd data; then apply runs: kubeadm init adopts them, the other hosts join.
Hosts that hold another cluster (one built from the spec after the loss,
with new certificates) are refused unless --rebuild, which resets every host
first.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := &restorer{d: d, stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), in: cmd.InOrStdin(), file: args[0], args: args[1:]}
			return r.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.Bool("yes", false, "restore without asking for confirmation")
	f.Bool("force", false, "restore a backup of another cluster name, distribution or Kubernetes minor version")
	f.Bool("rebuild", false, "reset hosts that hold another cluster and rebuild the cluster from the backup")
	f.Int("parallel", 20, "steps (and fact probes) run at once across hosts")
	f.Int("per-host", 1, "changing steps run at once on one host")
	addLockHostFlag(f)
	return cmd
}

type restorer struct {
	d      *deps
	stdout io.Writer
	stderr io.Writer
	in     io.Reader
	file   string
	args   []string

	c   *spec.Cluster
	a   *backup.Archive
	f   *fleet
	red *host.Redactor
	tag string
}

// restoreMode is how the hosts are brought back.
type restoreMode int

const (
	modeInPlace restoreMode = iota
	modeRebuild
	modeResetAndRebuild
)

func (r *restorer) warn(format string, args ...any) {
	fmt.Fprintf(r.stderr, "Warning: "+format+"\n", args...)
}

// textOut is where the restore's own text goes: stdout, unless stdout
// carries JSON events (-o json).
func (r *restorer) textOut() io.Writer {
	if out, _ := r.d.output(); out == "json" {
		return r.stderr
	}
	return r.stdout
}

func (r *restorer) say(format string, args ...any) {
	fmt.Fprintf(r.stderr, format+"\n", args...)
}

func (r *restorer) run(ctx context.Context) (err error) {
	start := time.Now()
	if r.a, err = backup.Open(r.file); err != nil {
		return err
	}
	for _, w := range r.a.Warnings {
		r.warn("%s", w)
	}
	if r.c, err = loadSpec(r.args); err != nil {
		return err
	}
	warnings, err := backupFits(r.c, r.a.Meta, r.d.v.GetBool("force"))
	if err != nil {
		return err
	}
	for _, w := range warnings {
		r.warn("%s", w)
	}
	r.red = host.NewRedactor()
	if r.f, err = connect(r.c, r.red); err != nil {
		return err
	}
	defer r.f.Close()
	defer func() {
		if err != nil {
			err = r.red.Error(err)
		}
	}()
	l, err := takeLock(ctx, r.c, r.f, r.d.v.GetString("lock-host"), "restore", r.stderr)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := l.Release(ctx); rerr != nil {
			r.warn("%v", rerr)
		}
	}()
	r.tag = "restore-" + time.Now().UTC().Format("20060102T150405Z")
	mode, why, err := r.decide(ctx)
	if err != nil {
		return err
	}
	r.describe(mode, why)
	if !r.d.v.GetBool("yes") {
		q := fmt.Sprintf("Restore cluster %q from %s? What its API holds now is replaced by the backup's.", r.c.Name, filepath.Base(r.file))
		if err := confirmAction(r.in, r.stderr, "restore", q); err != nil {
			return err
		}
	}
	switch mode {
	case modeInPlace:
		err = r.inPlace(ctx)
	case modeResetAndRebuild:
		if err = r.resetAll(ctx); err == nil {
			err = r.rebuild(ctx)
		}
	default:
		err = r.rebuild(ctx)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(r.textOut(), "Restored cluster %q from %s (etcd revision %d, taken %s) in %.1fs.\n",
		r.c.Name, r.file, r.a.Meta.Etcd.Revision, r.a.Meta.TakenAt.Format(time.RFC3339), time.Since(start).Seconds())
	return nil
}

// backupFits compares the backup with the spec: another cluster,
// distribution or minor version is an error unless forced; another spec
// digest or patch version is a warning.
func backupFits(c *spec.Cluster, m backup.Metadata, force bool) ([]string, error) {
	var warnings, problems []string
	if m.Cluster != c.Name {
		problems = append(problems, fmt.Sprintf("the backup is of cluster %q, the spec describes %q", m.Cluster, c.Name))
	}
	if m.Distribution != c.Kubernetes.Distribution {
		problems = append(problems, fmt.Sprintf("the backup is of a %s cluster, the spec wants %s", m.Distribution, c.Kubernetes.Distribution))
	}
	if bm, sm := minor(m.KubernetesVersion), minor(c.Kubernetes.Version); bm != sm {
		problems = append(problems, fmt.Sprintf("the backup is of Kubernetes %s, the spec wants %s (another minor version)", m.KubernetesVersion, c.Kubernetes.Version))
	} else if strings.TrimPrefix(m.KubernetesVersion, "v") != strings.TrimPrefix(c.Kubernetes.Version, "v") {
		warnings = append(warnings, fmt.Sprintf("the backup is of Kubernetes %s, the spec wants %s", m.KubernetesVersion, c.Kubernetes.Version))
	}
	if m.SpecDigest != c.Digest {
		warnings = append(warnings, fmt.Sprintf("the spec changed since the backup (digest %.12s then, %.12s now): the restored objects are the backup's; apply afterwards converges what the spec manages", m.SpecDigest, c.Digest))
	}
	if len(problems) > 0 {
		if !force {
			return nil, fmt.Errorf("restore refused: %s; pass --force to restore it anyway", strings.Join(problems, "; "))
		}
		warnings = append(warnings, problems...)
	}
	return warnings, nil
}

func minor(v string) string {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// decide looks at the hosts: a first control plane with the backup's CA
// is restored in place; hosts without a cluster are rebuilt; anything else
// needs --rebuild.
func (r *restorer) decide(ctx context.Context) (restoreMode, string, error) {
	first := r.c.ControlPlanes()[0]
	res := map[string]kube.Residue{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(r.d.v.GetInt("parallel"), 1))
	for _, n := range r.c.Names() {
		g.Go(func() error {
			rr, err := kube.ProbeResidue(gctx, r.f.hosts[n])
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			mu.Lock()
			res[n] = rr
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, "", err
	}
	fr := res[first]
	if fr.ClusterState() && !fr.SeedOnly() {
		if ca, err := r.f.hosts[first].ReadFile(ctx, kube.CACert); err == nil {
			sum, err := backup.CertSHA256(ca)
			if err == nil && sum == r.a.Meta.CACertSHA256 {
				return modeInPlace, fmt.Sprintf("%s runs a cluster with the backup's certificate authority", first), nil
			}
		}
	}
	var busy []string
	for _, n := range r.c.Names() {
		if res[n].ClusterState() && !(n == first && res[n].SeedOnly()) {
			busy = append(busy, n)
		}
	}
	if len(busy) == 0 {
		return modeRebuild, "no host holds a cluster", nil
	}
	why := fmt.Sprintf("%s hold a cluster whose certificates are not the backup's (a cluster built after the loss, or half-built)", strings.Join(busy, ", "))
	if !r.d.v.GetBool("rebuild") {
		return 0, "", fmt.Errorf("restore refused: %s; restoring etcd into it would not work (its certificates and the restored data would not trust each other): pass --rebuild to reset every host and rebuild the cluster from the backup, or run `clusterctl reset` first", why)
	}
	return modeResetAndRebuild, why, nil
}

func (r *restorer) describe(mode restoreMode, why string) {
	m := r.a.Meta
	w := r.textOut()
	fmt.Fprintf(w, "Restore of cluster %q from %s: etcd revision %d (%d keys), taken %s on %s.\n",
		r.c.Name, r.file, m.Etcd.Revision, m.Etcd.TotalKeys, m.TakenAt.Format(time.RFC3339), m.Host)
	cps := r.c.ControlPlanes()
	switch mode {
	case modeInPlace:
		fmt.Fprintf(w, "In place (%s):\n", why)
		fmt.Fprintf(w, "  1. upload the snapshot to %s\n", strings.Join(cps, ", "))
		fmt.Fprintf(w, "  2. stop etcd and the control plane there (static pod manifests moved to %s)\n", kube.ParkedManifestsDir)
		fmt.Fprintf(w, "  3. etcdutl snapshot restore into a new data directory on each, which replaces the old one (kept until the cluster is healthy)\n")
		fmt.Fprintf(w, "  4. start the control plane, restart every kubelet, check health; then drop the old data\n")
	default:
		fmt.Fprintf(w, "Rebuild (%s):\n", why)
		step := 1
		if mode == modeResetAndRebuild {
			fmt.Fprintf(w, "  %d. reset every host (%s): the cluster on them is removed\n", step, strings.Join(r.c.Names(), ", "))
			step++
		}
		fmt.Fprintf(w, "  %d. prepare every host as apply does (host preparation, runtime, Kubernetes binaries and images)\n", step)
		fmt.Fprintf(w, "  %d. %s: the backup's certificate authorities and service-account keys, and its etcd data restored into %s\n", step+1, cps[0], kube.EtcdDataDir)
		fmt.Fprintf(w, "  %d. apply: kubeadm init on %s adopts them, the other hosts join, addons, manifests, health\n", step+2, cps[0])
	}
}

// each runs fn on every named host at once; every failure is reported.
func (r *restorer) each(ctx context.Context, names []string, fn func(ctx context.Context, name string, h host.Host) error) error {
	var mu sync.Mutex
	var errs []error
	var g errgroup.Group
	g.SetLimit(max(r.d.v.GetInt("parallel"), 1))
	for _, n := range names {
		g.Go(func() error {
			if err := fn(ctx, n, r.f.hosts[n]); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(sortedErrors(errs)...)
}

// etcdMember reads a control plane's member from its static pod, or from
// the copy an interrupted restore parked.
func etcdMember(ctx context.Context, h host.Host) (kube.EtcdMember, error) {
	m, err := kube.ReadEtcdMember(ctx, h, kube.EtcdManifest)
	if err == nil {
		return m, nil
	}
	if parked, perr := kube.ReadEtcdMember(ctx, h, kube.ParkedManifestsDir+"/etcd.yaml"); perr == nil {
		return parked, nil
	}
	return m, err
}

// inPlace restores every control plane's etcd from the snapshot, the
// upstream way; the old data directories stay until the cluster is healthy.
func (r *restorer) inPlace(ctx context.Context) error {
	cps := r.c.ControlPlanes()
	first := r.f.hosts[cps[0]]
	members := make([]kube.EtcdMember, len(cps))
	for i, n := range cps {
		m, err := etcdMember(ctx, r.f.hosts[n])
		if err != nil {
			return err
		}
		members[i] = m
	}
	t := time.Now()
	snaps := map[string]string{}
	var mu sync.Mutex
	err := r.each(ctx, cps, func(ctx context.Context, n string, h host.Host) error {
		rd, err := r.a.Snapshot()
		if err != nil {
			return err
		}
		defer rd.Close()
		file, err := kube.UploadSnapshot(ctx, h, rd, r.tag, r.a.Meta.Etcd.SHA256, r.a.Meta.Etcd.Size)
		mu.Lock()
		snaps[n] = file
		mu.Unlock()
		return err
	})
	defer func() {
		_ = r.each(context.WithoutCancel(ctx), cps, func(ctx context.Context, n string, h host.Host) error {
			if snaps[n] == "" {
				return nil
			}
			return kube.RemoveSnapshot(ctx, h, snaps[n])
		})
	}()
	if err != nil {
		return err
	}
	r.say("Uploaded the snapshot to %s (%.1fs).", strings.Join(cps, ", "), time.Since(t).Seconds())

	t = time.Now()
	restart := func(cause error) error {
		// Nothing was replaced yet: start the control plane again as it was.
		if serr := r.each(context.WithoutCancel(ctx), cps, func(ctx context.Context, _ string, h host.Host) error { return kube.StartControlPlane(ctx, h) }); serr != nil {
			return fmt.Errorf("%w; starting the control plane again failed too: %v (on each control plane: mv %s/*.yaml %s/)", cause, serr, kube.ParkedManifestsDir, kube.ManifestsDir)
		}
		return fmt.Errorf("%w; nothing was restored: the control plane runs again as before", cause)
	}
	if err := r.each(ctx, cps, func(ctx context.Context, _ string, h host.Host) error { return kube.StopControlPlane(ctx, h) }); err != nil {
		return restart(err)
	}
	r.say("Stopped etcd and the control plane on %s (%.1fs).", strings.Join(cps, ", "), time.Since(t).Seconds())

	t = time.Now()
	olds := map[string]string{}
	err = r.each(ctx, cps, func(ctx context.Context, n string, h host.Host) error {
		var self kube.EtcdMember
		for _, m := range members {
			if m.Host == n {
				self = m
			}
		}
		old, err := kube.RestoreEtcdData(ctx, h, self.Image, snaps[n], r.tag, self, members)
		mu.Lock()
		olds[n] = old
		mu.Unlock()
		return err
	})
	recovery := func() string {
		var b strings.Builder
		for _, n := range cps {
			_, old := kube.DataDirs(r.tag)
			fmt.Fprintf(&b, " on %s: `[ -d %s ] && rm -rf %s/member && mv %s %s/member; mv %s/*.yaml %s/`;", n, old, kube.EtcdDataDir, old, kube.EtcdDataDir, kube.ParkedManifestsDir, kube.ManifestsDir)
		}
		return "to go back to the data from before the restore," + strings.TrimSuffix(b.String(), ";")
	}
	if err != nil {
		swapped := 0
		for _, o := range olds {
			if o != "" {
				swapped++
			}
		}
		if swapped == 0 {
			return restart(err)
		}
		return fmt.Errorf("%w; the control plane is stopped; %s", err, recovery())
	}
	r.say("Restored etcd's data on %s (%.1fs).", strings.Join(cps, ", "), time.Since(t).Seconds())

	t = time.Now()
	if err := r.each(ctx, cps, func(ctx context.Context, _ string, h host.Host) error { return kube.StartControlPlane(ctx, h) }); err != nil {
		return fmt.Errorf("%w; %s", err, recovery())
	}
	// Every kubelet restarts so none keeps what it cached from before the
	// restore (Kubernetes' advice); on control planes this also starts the
	// static pods at once instead of at the kubelet's next look at its
	// manifests. Before the health check, so it sees the pods as the
	// restarted kubelets report them.
	if err := r.each(ctx, r.c.Names(), func(ctx context.Context, _ string, h host.Host) error { return kube.RestartKubelet(ctx, h) }); err != nil {
		return fmt.Errorf("%w; the control plane was started on the restored data", err)
	}
	if err := kube.WaitAPI(ctx, first, 300); err != nil {
		return fmt.Errorf("%w; the control plane was started on the restored data; if it stays down, %s", err, recovery())
	}
	r.say("Started the control plane and restarted every kubelet; the API server answers on the restored data (%.1fs).", time.Since(t).Seconds())
	if err := r.health(ctx); err != nil {
		return fmt.Errorf("%w; the old data is kept on the control planes: %s", err, recovery())
	}
	return r.each(ctx, cps, func(ctx context.Context, n string, h host.Host) error { return kube.DropOldData(ctx, h, olds[n]) })
}

// health runs the spec's health step (nodes, system pods, workloads, probes).
func (r *restorer) health(ctx context.Context) error {
	g, err := r.buildGraph([]string{plan.ClusterScope + "/addons/health"})
	if err != nil {
		return err
	}
	return r.applyGraph(ctx, g, false)
}

// buildGraph is the cluster's build, narrowed to only.
func (r *restorer) buildGraph(only []string) (*plan.Graph, error) {
	g, err := plan.BuildGraph(r.c)
	if err != nil {
		return nil, err
	}
	if len(only) == 0 {
		return g, nil
	}
	return plan.Select(g, only, nil)
}

// applyGraph walks g as apply does.
func (r *restorer) applyGraph(ctx context.Context, g *plan.Graph, withBundle bool) error {
	s, err := openGraphSession(ctx, r.d, r.c, g, withBundle, r.stderr)
	if err != nil {
		return err
	}
	defer s.Close()
	out, err := r.d.output()
	if err != nil {
		return err
	}
	return s.apply(ctx, r.d, r.stdout, r.stderr, out)
}

// resetAll resets every host (the cluster on them is not the backup's).
func (r *restorer) resetAll(ctx context.Context) error {
	r.say("Resetting every host.")
	scope, err := plan.NewResetScope(r.c, nil)
	if err != nil {
		return err
	}
	g, err := plan.BuildResetGraph(r.c, scope)
	if err != nil {
		return err
	}
	return r.applyGraph(ctx, g, false)
}

// Steps of a build that come before kubeadm init: the hosts' preparation.
var prepareKinds = []string{"hostprep", "runtime", "kube/install", "kube/images", "kube/apiserver-proxy"}

// rebuild prepares the hosts, seeds the first control plane from the
// backup, and applies.
func (r *restorer) rebuild(ctx context.Context) error {
	t := time.Now()
	prep, err := r.buildGraph(prepareKinds)
	if err != nil {
		return err
	}
	r.say("Preparing the hosts.")
	if err := r.applyGraph(ctx, prep, true); err != nil {
		return err
	}
	r.say("Prepared the hosts (%.1fs).", time.Since(t).Seconds())

	t = time.Now()
	firstName := r.c.ControlPlanes()[0]
	h := r.f.hosts[firstName]
	rd, err := r.a.Snapshot()
	if err != nil {
		return err
	}
	snap, err := kube.UploadSnapshot(ctx, h, rd, r.tag, r.a.Meta.Etcd.SHA256, r.a.Meta.Etcd.Size)
	rd.Close()
	if err != nil {
		return err
	}
	defer func() { _ = kube.RemoveSnapshot(context.WithoutCancel(ctx), h, snap) }()
	marker, err := json.Marshal(map[string]any{
		"backup": filepath.Base(r.file), "takenAt": r.a.Meta.TakenAt.Format(time.RFC3339), "cluster": r.a.Meta.Cluster,
		"etcdRevision": r.a.Meta.Etcd.Revision, "backupSHA256": r.a.SHA256,
	})
	if err != nil {
		return err
	}
	addr := r.c.Hosts[firstName].Address
	seed := kube.Seed{PKI: r.a.PKI, Snapshot: snap, Image: r.a.Meta.Etcd.Image, Tag: r.tag, Marker: marker,
		Member: kube.MemberFor(kube.Node{Name: firstName, Address: addr}, r.a.Meta.Etcd.Image)}
	if err := kube.SeedRestore(ctx, h, seed); err != nil {
		return err
	}
	r.say("Seeded %s with the backup's certificate authorities and etcd data (%.1fs).", firstName, time.Since(t).Seconds())

	t = time.Now()
	all, err := r.buildGraph(nil)
	if err != nil {
		return err
	}
	if err := r.applyGraph(ctx, all, true); err != nil {
		return fmt.Errorf("%w; the seed on %s stays until kubeadm init adopts it: fix the cause and run the same restore again (or `clusterctl apply`)", err, firstName)
	}
	r.say("Applied the spec on the restored control plane (%.1fs).", time.Since(t).Seconds())
	return nil
}
