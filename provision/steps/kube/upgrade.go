package kube

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Timeouts of kubeadm's upgrade runs on a host (coreutils timeout): apply
// and node restart static pods one by one and wait for each.
const (
	upgradePlanTimeout  = "300"
	upgradeApplyTimeout = "900"
	upgradeNodeTimeout  = "600"
)

// upgradeWork is what one node still needs to reach the target version.
type upgradeWork struct {
	from, to     string // the node's oldest version, the target
	kubeadm      bool   // install the target's kubeadm
	controlPlane bool   // kubeadm upgrade apply (first) / node (others)
	nodeConfig   bool   // a worker's kubeadm upgrade node
	kubelet      bool   // swap the kubelet and restart it
	kubectl      bool
	uncordon     bool // clusterctl's cordon left from an earlier run
}

func (w upgradeWork) none() bool {
	return !w.kubeadm && !w.controlPlane && !w.nodeConfig && !w.kubelet && !w.kubectl && !w.uncordon
}

// drain: anything that restarts the node's pods or kubelet drains it first.
func (w upgradeWork) drain() bool { return w.controlPlane || w.nodeConfig || w.kubelet }

// assess compares the node's and the cluster's versions with the target
// under the skew policy: every version the node runs must be the target or
// one it may upgrade from, and so must the oldest API server.
func (o UpgradeNode) assess(nv nodeVersions, cv clusterVersions) (upgradeWork, error) {
	to := strings.TrimPrefix(o.Cluster.Version, "v")
	reported, ok := cv.kubelets[o.Node]
	if !ok && o.Role == RoleWorker {
		return upgradeWork{}, nil // half-joined: its join step resets it and joins it at the target
	}
	if !ok {
		return upgradeWork{}, fmt.Errorf("%s has a kubelet.conf, but the cluster has no node %s: %s: %w", o.Node, o.Node, resetHint(o.Node), ErrHalfInitialised)
	}
	vs := []string{reported, nv.kubelet}
	if o.controlPlane() {
		if nv.apiServer == "" {
			return upgradeWork{}, fmt.Errorf("%s is a control plane in the spec, but has no kube-apiserver manifest with a version tag in %s", o.Node, ManifestsDir)
		}
		vs = append(vs, nv.apiServer)
	}
	if a := cv.oldestAPIServer(); a != "" {
		vs = append(vs, a)
	}
	for _, v := range vs {
		if v == "" {
			continue
		}
		if _, err := CheckUpgrade(v, to); err != nil {
			return upgradeWork{}, err
		}
	}
	w := upgradeWork{
		from:     oldest(vs...),
		to:       to,
		kubeadm:  o.Cluster.Distribution == "kubeadm" && !sameVersion(nv.kubeadm, to),
		kubelet:  !sameVersion(nv.kubelet, to) || !sameVersion(reported, to),
		kubectl:  !sameVersion(nv.kubectl, to),
		uncordon: cv.cordoned[o.Node] != "",
	}
	switch o.Role {
	case RoleFirstControlPlane:
		w.controlPlane = !sameVersion(nv.apiServer, to) || !sameVersion(cv.config, to)
	case RoleControlPlane:
		w.controlPlane = !sameVersion(nv.apiServer, to)
	default:
		w.nodeConfig = w.kubelet
	}
	return w, nil
}

// state probes the node and, through the first control plane, the cluster.
func (o UpgradeNode) state(ctx context.Context, t step.Target) (nodeVersions, clusterVersions, error) {
	nv, err := probeNodeVersions(ctx, t.Host)
	if err != nil || !nv.member {
		return nv, clusterVersions{}, err
	}
	cp, err := peer(t, o.Via)
	if err != nil {
		return nv, clusterVersions{}, err
	}
	cv, err := probeCluster(ctx, cp)
	if err != nil {
		return nv, cv, err
	}
	if !cv.exists {
		return nv, cv, fmt.Errorf("%s joined a cluster, but %s has no %s: %w", o.Node, o.Via, AdminConf, ErrAPIDown)
	}
	return nv, cv, nil
}

// checkBundle: the upgrade installs the target's binaries from the bundle,
// which must be made for that version.
func (o UpgradeNode) checkBundle(b *bundle.Bundle) error {
	if b == nil {
		return fmt.Errorf("upgrading %s needs Kubernetes %s's binaries, and they come only from a bundle: %w", o.Node, o.Cluster.Version, ErrOnlineUnsupported)
	}
	if v := b.Manifest.Versions["kubernetes"]; v != "" && !sameVersion(v, o.Cluster.Version) {
		return fmt.Errorf("the bundle %s holds Kubernetes %s, the spec asks for %s: assemble it again from %s's artifacts (`clusterctl bundle --from DIR`)", b.Dir, v, o.Cluster.Version, o.Cluster.Version)
	}
	for _, bin := range kubeBinaries {
		if _, _, err := bundleFile(b, bin); err != nil {
			return err
		}
	}
	return nil
}

// Check: a node that has not joined (a fresh host joins at the target) or
// runs the target everywhere is left alone; one running an older version
// the skew policy allows upgrading from shows each part of its upgrade; a
// newer version or a skipped minor is an error naming what is allowed.
func (o UpgradeNode) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return o.CheckOffline(), nil
	}
	nv, cv, err := o.state(ctx, t)
	if err != nil || !nv.member {
		return step.Change{Action: step.ActionNone}, err
	}
	w, err := o.assess(nv, cv)
	if err != nil || w.none() {
		return step.Change{Action: step.ActionNone}, err
	}
	if err := o.checkBundle(t.Bundle); err != nil {
		return step.Change{}, err
	}
	return step.Change{Action: step.ActionUpdate, Diff: o.diff(w, nv, cv), Note: o.note()}, nil
}

func (o UpgradeNode) note() string {
	if o.Role == RoleWorker {
		return "workers upgrade after every control plane, in batches; the node is back Ready, uncordoned and its pods running before the next batch"
	}
	return "control planes upgrade one at a time after the etcd snapshot; the API server and the node are back before the next host"
}

func (o UpgradeNode) diff(w upgradeWork, nv nodeVersions, cv clusterVersions) []step.DiffLine {
	var d []step.DiffLine
	add := func(key, from, to string) {
		if from == "" {
			from = "(absent)"
		}
		d = append(d, step.DiffLine{Key: key, From: from, To: to})
	}
	add("kubernetes", w.from, w.to)
	if w.kubeadm {
		add("kubeadm", nv.kubeadm, w.to+" (bundle)")
	}
	if w.controlPlane {
		how := "kubeadm upgrade node"
		if o.Role == RoleFirstControlPlane {
			how = "kubeadm upgrade plan, then kubeadm upgrade apply " + GitVersion(w.to)
		}
		add("control plane", nv.apiServer, w.to+" ("+how+")")
	}
	if w.drain() {
		timeout := o.DrainTimeout
		if timeout == "" {
			timeout = "5m"
		}
		add("node", "schedulable", "cordoned, drained --ignore-daemonsets --delete-emptydir-data (PodDisruptionBudgets respected, timeout "+timeout+")")
	}
	if w.nodeConfig {
		add("kubelet config", w.from, w.to+" (kubeadm upgrade node)")
	}
	if w.kubelet {
		add("kubelet", cv.kubelets[o.Node], w.to+" (bundle; restart, wait Ready)")
	}
	if w.kubectl {
		add("kubectl", nv.kubectl, w.to+" (bundle)")
	}
	if w.drain() || w.uncordon {
		add("node", "cordoned", "uncordoned once Ready at "+w.to+" with its pods running")
	}
	return d
}

// upgrader is one distribution's part of a node upgrade; cordon, drain,
// the waits and uncordon around it are the same for every distribution.
// k3s's (swap the k3s binary, restart k3s or k3s-agent: the server
// upgrades its own control plane and datastore) goes beside kubeadm's.
type upgrader interface {
	// prepare installs what upgrades the control plane (kubeadm).
	prepare(ctx context.Context, t step.Target, o UpgradeNode, w upgradeWork) error
	// controlPlane moves a control plane's components to the version.
	controlPlane(ctx context.Context, t step.Target, o UpgradeNode) error
	// nodeConfig refreshes a worker's kubelet configuration.
	nodeConfig(ctx context.Context, t step.Target, o UpgradeNode) error
	// swap installs the node's new binaries and restarts what runs them;
	// restart forces the restart when the binaries were already in place.
	swap(ctx context.Context, t step.Target, o UpgradeNode, restart bool) error
}

func upgraderFor(distribution string) (upgrader, error) {
	switch distribution {
	case "kubeadm":
		return kubeadmUpgrader{}, nil
	case "k3s":
		return nil, ErrK3sUnsupported
	}
	return nil, fmt.Errorf("distribution %q: want kubeadm", distribution)
}

// Apply upgrades the node, each part only when still needed: kubeadm from
// the bundle; on a control plane `kubeadm upgrade plan` and `apply` (the
// first) or `kubeadm upgrade node`, then the API server is waited for;
// cordon and drain through the first control plane; on a worker `kubeadm
// upgrade node`; the kubelet and kubectl swapped and the kubelet
// restarted; then it waits for the node Ready at the version, uncordons it
// and waits for its pods. A drain that fails uncordons the untouched node.
func (o UpgradeNode) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	nv, cv, err := o.state(ctx, t)
	if err != nil || !nv.member {
		return err
	}
	w, err := o.assess(nv, cv)
	if err != nil || w.none() {
		return err
	}
	if err := o.checkBundle(t.Bundle); err != nil {
		return err
	}
	switch o.Role {
	case RoleWorker:
		// The planner upgrades control planes first; this holds when a
		// selection (--only, --skip) or a failure left them behind.
		if err := CheckKubelet(w.to, cv.oldestAPIServer()); err != nil {
			return err
		}
	case RoleControlPlane:
		if !sameVersion(cv.config, w.to) {
			return fmt.Errorf("the cluster's kubeadm-config is at %s: the first control plane's kube/upgrade (kubeadm upgrade apply %s) must succeed before %s upgrades: %w",
				cv.config, GitVersion(w.to), o.Node, ErrSkew)
		}
	}
	u, err := upgraderFor(o.Cluster.Distribution)
	if err != nil {
		return err
	}
	cp, err := peer(t, o.Via)
	if err != nil {
		return err
	}
	waitSecs, _ := seconds(o.WaitTimeout)
	if err := u.prepare(ctx, t, o, w); err != nil {
		return err
	}
	if w.controlPlane {
		if err := u.controlPlane(ctx, t, o); err != nil {
			return err
		}
	}
	cordoned := false
	if w.drain() {
		if cordoned, err = o.cordon(ctx, cp, cv); err != nil {
			return err
		}
		if err := o.drainNode(ctx, cp); err != nil {
			if cordoned && !w.controlPlane {
				// Nothing on the node changed yet: it goes back to serving.
				if uerr := o.uncordonNode(ctx, cp); uerr != nil {
					err = errors.Join(err, uerr)
				} else {
					err = fmt.Errorf("%w (%s was uncordoned and still runs %s)", err, o.Node, w.from)
				}
			}
			return err
		}
	}
	if w.nodeConfig {
		if err := u.nodeConfig(ctx, t, o); err != nil {
			return err
		}
	}
	if err := u.swap(ctx, t, o, w.kubelet); err != nil {
		return err
	}
	if err := waitNodeAt(ctx, cp, o.Node, w.to, waitSecs); err != nil {
		return err
	}
	if o.controlPlane() {
		if err := waitAPIStable(ctx, t.Host, waitSecs); err != nil {
			return err
		}
	}
	if o.Cluster.ProxyMode == "nftables" {
		if err := o.restartKubeProxy(ctx, cp); err != nil {
			return err
		}
	}
	if err := waitNodePods(ctx, cp, o.Node, waitSecs); err != nil {
		return err
	}
	if cordoned || w.uncordon {
		return o.uncordonNode(ctx, cp)
	}
	return nil
}

// cordon marks the node unschedulable with clusterctl's annotation, unless
// someone else cordoned it (then it stays cordoned afterwards); it says
// whether the cordon is clusterctl's.
func (o UpgradeNode) cordon(ctx context.Context, cp host.Host, cv clusterVersions) (bool, error) {
	if cv.unschedulable[o.Node] && cv.cordoned[o.Node] == "" {
		return false, nil
	}
	if err := markAndCordon(ctx, cp, o.Node, GitVersion(o.Cluster.Version)); err != nil {
		return false, err
	}
	return true, nil
}

// markAndCordon cordons node through cp with clusterctl's annotation set
// to mark, so a re-run knows the cordon is its own and lifts it.
func markAndCordon(ctx context.Context, cp host.Host, node, mark string) error {
	line := Kubectl + " annotate node --overwrite " + host.Join(node, CordonAnnotation+"="+mark) + " && " +
		Kubectl + " cordon " + host.Quote(node)
	return retryKubectl(ctx, cp, "cordon "+node, line)
}

// retryKubectl runs an idempotent kubectl line through cp until it
// succeeds, for up to two minutes: right after a control plane's upgrade
// its API server may restart once more (the new kubelet restarts its
// static pods), after the waits said it was ready.
func retryKubectl(ctx context.Context, cp host.Host, what, line string) error {
	return waitUntil(ctx, cp, what, "{ "+line+"; } >/dev/null 2>&1", line+" >/dev/null", 120)
}

func (o UpgradeNode) drainNode(ctx context.Context, cp host.Host) error {
	secs, _ := seconds(o.DrainTimeout)
	line := Kubectl + " drain " + host.Quote(o.Node) + fmt.Sprintf(" --ignore-daemonsets --delete-emptydir-data --timeout=%ds", secs)
	if err := cp.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("drain %s (PodDisruptionBudgets may block evictions): %w", o.Node, err)
	}
	return nil
}

// restartKubeProxy replaces the node's kube-proxy pod. Seen in e2e
// (1.36.3 -> 1.37.2, nftables mode): after the upgrade, kube-proxy's table
// on upgraded nodes listed the right rules but ClusterIP and NodePort
// traffic was refused until the pod was restarted; the cause is not known
// yet. The DaemonSet makes a new pod, which waitNodePods then waits for.
func (o UpgradeNode) restartKubeProxy(ctx context.Context, cp host.Host) error {
	line := Kubectl + " -n kube-system delete pod -l k8s-app=kube-proxy --field-selector " + host.Quote("spec.nodeName="+o.Node) + " --wait=true --timeout=60s"
	return retryKubectl(ctx, cp, "restart kube-proxy on "+o.Node, line)
}

func (o UpgradeNode) uncordonNode(ctx context.Context, cp host.Host) error {
	line := Kubectl + " uncordon " + host.Quote(o.Node) + " && " + Kubectl + " annotate node " + host.Join(o.Node, CordonAnnotation+"-")
	return retryKubectl(ctx, cp, "uncordon "+o.Node, line)
}

// waitAPIStable waits until a control plane's API server answers /readyz
// ten times in a row, two seconds apart: the new kubelet may restart the
// static pods (changed pod hashes) a little after it reports Ready.
func waitAPIStable(ctx context.Context, h host.Host, secs int) error {
	ready := Kubectl + " --request-timeout=5s get --raw=/readyz"
	line := fmt.Sprintf("ok=0; end=$(( $(date +%%s) + %d )); while [ $ok -lt 10 ]; do if %s >/dev/null 2>&1; then ok=$((ok+1)); else ok=0; fi; "+
		"if [ $(date +%%s) -ge $end ]; then %s; exit 1; fi; sleep 2; done", secs, ready, ready)
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("the API server did not answer steadily for 20s within %ds after the kubelet restart: %w%s", secs, err, controlPlaneDiagnosis(ctx, h))
	}
	return nil
}

// controlPlaneDiagnosis is what a control plane says about its static pods
// when its API server does not come back: the end of the newest API server
// and etcd container logs and of the kubelet's journal. Best effort, bounded.
func controlPlaneDiagnosis(ctx context.Context, h host.Host) string {
	line := `for c in kube-apiserver etcd; do f=$(ls -t /var/log/pods/kube-system_${c}-*/${c}/*.log 2>/dev/null | head -n 1); ` +
		`[ -n "$f" ] && { echo "== $f"; tail -n 6 -- "$f" | cut -c1-300; }; done; ` +
		`echo "== kubelet"; journalctl -u kubelet.service --no-pager -n 200 2>/dev/null | grep -E ' [EW][0-9]{4} ' | tail -n 8 | cut -c1-300`
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil || strings.TrimSpace(out.String()) == "" {
		return ""
	}
	return "; on the host:\n" + host.Tail(strings.TrimSpace(out.String()), 3072)
}

// waitNodeAt waits until the node is Ready with its kubelet at version.
func waitNodeAt(ctx context.Context, cp host.Host, node, version string, secs int) error {
	get := Kubectl + " --request-timeout=5s get node " + host.Quote(node) + " -o jsonpath=" +
		host.Quote(`{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}`)
	check := "[ \"$(" + get + " 2>/dev/null)\" = " + host.Quote(GitVersion(version)+" True") + " ]"
	show := "echo " + host.Quote("node "+node+":") + " \"$(" + get + " 2>&1)\" " + host.Quote("(want "+GitVersion(version)+" True)") + " >&2"
	return waitUntil(ctx, cp, fmt.Sprintf("node %s Ready at %s", node, GitVersion(version)), check, show, secs)
}

// waitNodePods waits until every pod on the node runs with all containers
// ready (finished pods, Succeeded or Failed, aside): its DaemonSets (CNI,
// kube-proxy) and static pods are back before the next host is touched.
func waitNodePods(ctx context.Context, cp host.Host, node string, secs int) error {
	list := Kubectl + " --request-timeout=10s get pods -A --field-selector " + host.Quote("spec.nodeName="+node) + " -o jsonpath=" +
		host.Quote(`{range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.phase} {.status.containerStatuses[*].ready}{"\n"}{end}`)
	bad := `awk 'NF == 0 || $2 == "Succeeded" || $2 == "Failed" { next } $2 != "Running" || NF < 3 || / false/ { bad = 1; print } END { exit bad }'`
	check := "{ " + list + " 2>/dev/null | " + bad + " >/dev/null; }"
	show := "{ echo " + host.Quote("pods not running and ready on "+node+":") + "; " + list + " 2>&1 | " + bad + "; } >&2"
	return waitUntil(ctx, cp, "the pods on "+node, check, show, secs)
}

// kubeadmUpgrader is the kubeadm driver's upgrade.
type kubeadmUpgrader struct{}

// prepare installs the target's kubeadm from the bundle and checks it
// reports the target.
func (kubeadmUpgrader) prepare(ctx context.Context, t step.Target, o UpgradeNode, w upgradeWork) error {
	if !w.kubeadm {
		return nil
	}
	if _, err := installBinaries(ctx, t.Host, t.Bundle, map[string]bool{"kubeadm": true}); err != nil {
		return err
	}
	out, err := runOut(ctx, t.Host, "kubeadm version -o short")
	if err != nil {
		return fmt.Errorf("ask the new kubeadm for its version: %w", err)
	}
	if got := strings.TrimSpace(out); got != GitVersion(o.Cluster.Version) {
		return fmt.Errorf("the bundle's kubeadm reports %s, the spec asks for %s", got, GitVersion(o.Cluster.Version))
	}
	return nil
}

// controlPlane: on the first, `kubeadm upgrade plan` (the checks, logged)
// then `kubeadm upgrade apply`; on the others `kubeadm upgrade node`. The
// images are in containerd already (kube/images of every host runs
// before), so kubeadm pulls nothing.
func (kubeadmUpgrader) controlPlane(ctx context.Context, t step.Target, o UpgradeNode) error {
	v := GitVersion(o.Cluster.Version)
	if o.Role == RoleFirstControlPlane {
		if err := runKubeadmLogged(ctx, t.Host, "upgrade-plan", upgradePlanTimeout, "upgrade", "plan", v); err != nil {
			return err
		}
		args := append([]string{"upgrade", "apply", v, "--yes"}, cgroupV1Preflight(t)...)
		if err := runKubeadmLogged(ctx, t.Host, "upgrade-apply", upgradeApplyTimeout, args...); err != nil {
			return err
		}
	} else if err := runKubeadmLogged(ctx, t.Host, "upgrade-node", upgradeNodeTimeout, append([]string{"upgrade", "node"}, cgroupV1Preflight(t)...)...); err != nil {
		return err
	}
	return WaitAPI(ctx, t.Host, o.Cluster.Timeouts.apiSeconds())
}

// nodeConfig: `kubeadm upgrade node` on a worker writes the kubelet
// configuration of the new version.
func (kubeadmUpgrader) nodeConfig(ctx context.Context, t step.Target, _ UpgradeNode) error {
	return runKubeadmLogged(ctx, t.Host, "upgrade-node", upgradeNodeTimeout, append([]string{"upgrade", "node"}, cgroupV1Preflight(t)...)...)
}

// cgroupV1Preflight: kubeadm 1.35+ fails its SystemVerification preflight on
// a cgroup v1 host (upgrade apply included, found by e2e) unless told to
// skip it, as init and join configs on such hosts say.
func cgroupV1Preflight(t step.Target) []string {
	if t.Facts != nil && t.Facts.CgroupV == 1 {
		return []string{"--ignore-preflight-errors=SystemVerification"}
	}
	return nil
}

// swap uploads the kubelet and kubectl that differ from the bundle's and
// restarts the kubelet when it changed (or restart asks for it).
func (kubeadmUpgrader) swap(ctx context.Context, t step.Target, _ UpgradeNode, restart bool) error {
	changed, err := installBinaries(ctx, t.Host, t.Bundle, map[string]bool{"kubelet": true, "kubectl": true})
	if err != nil {
		return err
	}
	if !changed["kubelet"] && !restart {
		return nil
	}
	if err := t.Host.Run(ctx, host.Cmd{Line: "systemctl daemon-reload && systemctl restart kubelet.service"}); err != nil {
		return fmt.Errorf("restart the kubelet: %w", err)
	}
	return nil
}

// runKubeadmLogged runs `kubeadm ARGS` under a timeout with its output in
// LogDir/kubeadm-NAME.log; a failure carries the log's tail.
func runKubeadmLogged(ctx context.Context, h host.Host, name, timeout string, args ...string) error {
	log := path.Join(LogDir, "kubeadm-"+name+".log")
	cmd := append([]string{"timeout", timeout, "kubeadm"}, args...)
	line := host.Join("install", "-d", "-m", "0700", "--", LogDir) + " && " + host.Join(cmd...) + " >" + host.Quote(log) + " 2>&1; rc=$?; " +
		"if [ $rc -ne 0 ]; then echo \"kubeadm " + strings.Join(args[:min(2, len(args))], " ") + " exited $rc (124: timed out after " + timeout + "s); the end of " + log + ":\"; " +
		host.Join("tail", "-n", "25", "--", log) + "; fi >&2; exit $rc"
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("kubeadm %s: %w", strings.Join(args, " "), err)
	}
	return nil
}
