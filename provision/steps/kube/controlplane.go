package kube

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Failure classes of a host kubeadm already touched.
var (
	// ErrHalfInitialised: an earlier kubeadm init or join stopped midway.
	// clusterctl never resets a host by itself; the error says how.
	ErrHalfInitialised = errors.New("half-initialised node")
	// ErrAPIDown: a complete control plane whose API server does not answer.
	ErrAPIDown = errors.New("API server does not answer")
)

// Least coreutils timeouts of kubeadm runs on a host (exit 124), on top of
// kubeadm's own waits (Timeouts.deadline).
const (
	initTimeout = 10 * time.Minute
	joinTimeout = 5 * time.Minute
)

// controlPlaneFiles are what a finished kubeadm init (or control-plane
// join) leaves; all present and a healthy API server mean "initialised".
var controlPlaneFiles = []string{
	AdminConf, CACert,
	ManifestsDir + "/etcd.yaml", ManifestsDir + "/kube-apiserver.yaml",
	ManifestsDir + "/kube-controller-manager.yaml", ManifestsDir + "/kube-scheduler.yaml",
}

// kubeadmDone are the objects kubeadm init's last phases create: with the
// API up but these missing, init stopped after the control plane started.
var kubeadmDone = []string{"configmap/kubeadm-config", "daemonset.apps/kube-proxy"}

// nodeState is what a node's kubeadm files and API server say.
type nodeState struct {
	present     map[string]bool
	apiReady    bool
	objects     map[string]bool
	conntrackRO bool
}

// probeNode reports which of files exist on h and, with api, whether the
// API server answers through admin.conf there (waiting up to a minute when
// every file is present: a rebooted control plane takes that long) and
// whether kubeadm's last objects exist; also whether nf_conntrack_max is
// writable. One round trip.
func probeNode(ctx context.Context, h host.Host, files []string, api bool) (nodeState, error) {
	var b strings.Builder
	b.WriteString("n=0; for f in " + host.Join(files...) + "; do if [ -e \"$f\" ]; then echo \"file $f\"; n=$((n+1)); fi; done; ")
	if api {
		fmt.Fprintf(&b, "ready=no; if [ -e %s ] && command -v kubectl >/dev/null 2>&1; then i=0; while :; do "+
			"if %s --request-timeout=5s get --raw=/readyz >/dev/null 2>&1; then ready=yes; break; fi; "+
			"i=$((i+1)); if [ $n -lt %d ] || [ $i -ge 30 ]; then break; fi; sleep 2; done; fi; "+
			"if [ $ready = yes ]; then echo api ready; %s --request-timeout=10s -n kube-system get %s -o name 2>/dev/null; fi; ",
			AdminConf, Kubectl, len(files), Kubectl, strings.Join(kubeadmDone, " "))
	}
	b.WriteString("[ -w /proc/sys/net/netfilter/nf_conntrack_max ] || echo conntrack read-only; true")
	out, err := runOut(ctx, h, b.String())
	if err != nil {
		return nodeState{}, fmt.Errorf("inspect kubeadm's files: %w", err)
	}
	st := nodeState{present: map[string]bool{}, objects: map[string]bool{}}
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "file "):
			st.present[strings.TrimPrefix(l, "file ")] = true
		case l == "api ready":
			st.apiReady = true
		case l == "conntrack read-only":
			st.conntrackRO = true
		case strings.Contains(l, "/"):
			st.objects[strings.TrimSpace(l)] = true
		}
	}
	return st, nil
}

func (s nodeState) fresh() bool { return len(s.present) == 0 }

func (s nodeState) lists(files []string) (present, missing []string) {
	for _, f := range files {
		if s.present[f] {
			present = append(present, f)
		} else {
			missing = append(missing, f)
		}
	}
	return present, missing
}

// resetHint is the one recovery clusterctl advises and never runs itself.
func resetHint(name string) string {
	return fmt.Sprintf("clusterctl never resets a host by itself: run `kubeadm reset -f` on %s, then apply again", name)
}

// controlPlaneReady says whether h is an initialised control plane (true),
// a fresh host (false), or neither (an error saying how to recover).
func controlPlaneReady(name string, s nodeState) (bool, error) {
	if s.fresh() {
		return false, nil
	}
	present, missing := s.lists(controlPlaneFiles)
	if len(missing) > 0 {
		return false, fmt.Errorf("%s is half-initialised (present: %s; missing: %s): an earlier kubeadm run stopped midway; %s: %w",
			name, strings.Join(present, ", "), strings.Join(missing, ", "), resetHint(name), ErrHalfInitialised)
	}
	if !s.apiReady {
		return false, fmt.Errorf("%s holds a complete control plane, but its API server did not answer within a minute: look at `journalctl -u kubelet` and `crictl ps -a` there; if kubeadm init never finished on it, %s: %w",
			name, resetHint(name), ErrAPIDown)
	}
	var lacking []string
	for _, o := range kubeadmDone {
		if !s.objects[o] {
			lacking = append(lacking, o)
		}
	}
	if len(lacking) > 0 {
		return false, fmt.Errorf("%s is half-initialised: its API server answers, but kubeadm init never finished (kube-system lacks %s); %s: %w",
			name, strings.Join(lacking, ", "), resetHint(name), ErrHalfInitialised)
	}
	return true, nil
}

func (o InitControlPlane) validate() error {
	return errors.Join(o.Cluster.validate(), o.Node.validate())
}

// Check: a fresh host is initialised; an initialised one (all of kubeadm's
// files, API server ready, kubeadm's last objects present) is left alone;
// anything in between is an error with the recovery step. The kubeadm
// config of a running cluster is not compared (changing it is an upgrade).
func (o InitControlPlane) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	st, err := probeNode(ctx, t.Host, controlPlaneFiles, true)
	if err != nil {
		return step.Change{}, err
	}
	if seed, err := restoreSeed(ctx, t.Host, st); err != nil || seed != "" {
		return step.Change{Action: step.ActionCreate, Diff: append(o.Describe(), step.DiffLine{Key: "restored from", To: seed})}, err
	}
	ready, err := controlPlaneReady(o.Node.Name, st)
	switch {
	case err != nil:
		return step.Change{}, err
	case ready:
		return step.Change{Action: step.ActionNone}, nil
	}
	return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
}

// Apply runs kubeadm init from an uploaded config (a fresh bootstrap token
// and certificate key, both registered for redaction), bounded in time,
// with its output in a log file on the host, then waits until the API
// server answers through admin.conf, which later cluster steps use.
func (o InitControlPlane) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	h := t.Host
	st, err := probeNode(ctx, h, controlPlaneFiles, true)
	if err != nil {
		return err
	}
	// A host seeded by `clusterctl restore` (SeedRestore): kubeadm init
	// adopts its certificates and etcd data.
	seed, err := restoreSeed(ctx, h, st)
	if err != nil {
		return err
	}
	if seed == "" {
		if ready, err := controlPlaneReady(o.Node.Name, st); err != nil || ready {
			return err
		}
	}
	token, certKey := newToken(), newCertificateKey()
	t.Redactor.Add(token)
	t.Redactor.Add(certKey)
	quirks := hostQuirks{CgroupV1: t.Facts != nil && t.Facts.CgroupV == 1, ConntrackReadOnly: st.conntrackRO}
	cfg, err := renderInit(o, t.Bundle != nil, quirks, token, certKey)
	if err != nil {
		return err
	}
	args := []string{"--upload-certs"}
	if seed != "" {
		args = append(args, "--ignore-preflight-errors=DirAvailable--var-lib-etcd")
	}
	if err := runKubeadm(ctx, h, "init", cfg, o.Cluster.Timeouts.deadline(initTimeout), args...); err != nil {
		return err
	}
	if err := WaitAPI(ctx, h, o.Cluster.Timeouts.apiSeconds()); err != nil || seed == "" {
		return err
	}
	return finishRestore(ctx, h, o.Node.Name)
}

// runKubeadm uploads cfg (mode 0600) and runs `kubeadm VERB --config` with
// it under a timeout, its output going to LogDir/kubeadm-VERB.log; the
// config is removed whatever happens, and a failure carries the log's tail.
func runKubeadm(ctx context.Context, h host.Host, verb string, cfg []byte, timeout string, args ...string) error {
	file := path.Join(ConfigDir, "kubeadm-"+verb+".yaml")
	log := path.Join(LogDir, "kubeadm-"+verb+".log")
	if err := h.Run(ctx, host.Cmd{Line: host.Join("install", "-d", "-m", "0700", "--", ConfigDir, LogDir)}); err != nil {
		return fmt.Errorf("make %s: %w", ConfigDir, err)
	}
	if err := h.Upload(ctx, strings.NewReader(string(cfg)), file, host.FileOptions{Mode: 0o600, Owner: "root", Group: "root"}); err != nil {
		return fmt.Errorf("upload the kubeadm %s config: %w", verb, err)
	}
	cmd := append([]string{"timeout", timeout, "kubeadm", verb, "--config", file}, args...)
	// umask 077: kubeadm prints join commands (short-lived secrets) into the
	// log, until redactLog takes them out.
	line := "umask 077; " + host.Join(cmd...) + " >" + host.Quote(log) + " 2>&1; rc=$?; " + host.Join("rm", "-f", "--", file) +
		"; " + redactLog(log) + "; if [ $rc -ne 0 ]; then echo \"kubeadm " + verb + " exited $rc (124: timed out after " + timeout + "s); the end of " + log + ":\"; " +
		host.Join("tail", "-n", "25", "--", log) + "; fi >&2; exit $rc"
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("kubeadm %s: %w", verb, err)
	}
	return nil
}

// redactLog is the shell command that replaces, in the kubeadm log p,
// whatever has the shape of a bootstrap token or a certificate key (the
// CA hash too, which is no secret) with <redacted>. Matching by shape
// keeps every secret off the command line; when sed fails, the log goes
// rather than stays in clear.
func redactLog(p string) string {
	return host.Join("sed", "-E", "-i", "-e", `s/[a-z0-9]{6}\.[a-z0-9]{16}/<redacted>/g`, "-e", `s/[a-f0-9]{64}/<redacted>/g`, "--", p) +
		" || " + host.Join("rm", "-f", "--", p)
}
