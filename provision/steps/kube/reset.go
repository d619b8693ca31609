package kube

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Reset tears Kubernetes down on one host and leaves it a prepared host:
// `kubeadm reset`, the kubelet stopped and disabled, the distribution's
// state, CNI configuration and interfaces, Kubernetes' packet filter rules
// and the pods' containers removed. The user's files, host preparation,
// containerd with its images and the Kubernetes binaries stay, so a later
// apply joins the host again quickly. A reset host is left alone.
//
// Reset never deletes the Node object (DeleteNode does, after it). It
// removes the host's etcd member only with RemoveEtcdMember: a control
// plane leaving a cluster that lives on; when the whole cluster goes there
// is no one left to tell.
type Reset struct {
	// ControlPlane is informational: the plan says what the host was.
	ControlPlane bool `json:"controlPlane,omitempty"`
	// RemoveEtcdMember lets kubeadm reset remove this control plane's
	// member from the etcd cluster (it warns, and goes on, if it cannot).
	RemoveEtcdMember bool `json:"removeEtcdMember,omitempty"`
}

func (Reset) Kind() string { return "kube/reset" }
func (o Reset) Describe() []step.DiffLine {
	what := "worker"
	if o.ControlPlane {
		what = "control plane (and its etcd data)"
	}
	d := []step.DiffLine{{Key: "kubernetes", From: what, To: "(removed; the host stays prepared)"}}
	if o.RemoveEtcdMember {
		d = append(d, step.DiffLine{Key: "etcd member", From: "listed", To: "(removed from the cluster)"})
	}
	return d
}

// resetScript is run with `sh -s` (see reset.sh).
//
//go:embed reset.sh
var resetScript string

// Where the kubelet and the CNI keep their state.
const (
	KubeletDir = "/var/lib/kubelet"
	PKIDir     = "/etc/kubernetes/pki"
	CNIConfDir = "/etc/cni/net.d"
)

// What reset removes and its check looks for.
var (
	resetFiles = []string{AdminConf, "/etc/kubernetes/super-admin.conf", KubeletConf, BootstrapKubeletConf,
		"/etc/kubernetes/controller-manager.conf", "/etc/kubernetes/scheduler.conf"}
	resetDirs = []string{PKIDir, ManifestsDir, "/etc/kubernetes/tmp", ConfigDir, EtcdDataDir, KubeletDir, CNIConfDir,
		"/var/lib/cni", "/run/flannel", SnapshotDir}
	resetLinks = []string{"cni0", "flannel.1", "flannel-v6.1", "kube-ipvs0"}
)

// Residue is what a host holds of a Kubernetes node, as Reset sees it.
type Residue struct {
	KubeletActive  string         // systemctl is-active
	KubeletEnabled string         // systemctl is-enabled ("" without a unit)
	Files          []string       // kubeconfigs
	Dirs           map[string]int // non-empty state directories: entries
	Mounts         int            // under the kubelet's directory
	Links          []string       // CNI and kube-proxy interfaces
	Chains         map[string]int // iptables/ip6tables: KUBE-*/FLANNEL* chains; nftables: kube-proxy tables
	Containers     int            // in containerd's k8s.io namespace
	Netns          int            // CNI network namespaces
}

// ClusterState says whether the host is (part of) a cluster member: a
// running or enabled kubelet alone is not (a freshly prepared host has
// one), nor are etcd snapshots kept on it.
func (r Residue) ClusterState() bool {
	dirs := 0
	for d := range r.Dirs {
		if d != SnapshotDir {
			dirs++
		}
	}
	return len(r.Files) > 0 || dirs > 0 || r.Mounts > 0 || len(r.Links) > 0 || r.Containers > 0 || r.Netns > 0 || r.chains() > 0
}

// Empty says whether reset has nothing left to do.
func (r Residue) Empty() bool { return !r.ClusterState() && r.Dirs[SnapshotDir] == 0 && !r.kubeletOn() }

func (r Residue) kubeletOn() bool {
	switch r.KubeletActive {
	case "active", "activating", "reloading", "deactivating":
		return true
	}
	return r.KubeletEnabled == "enabled"
}

func (r Residue) chains() int {
	n := 0
	for _, c := range r.Chains {
		n += c
	}
	return n
}

// Diff lists the residue for the plan.
func (r Residue) Diff() []step.DiffLine {
	var d []step.DiffLine
	if r.kubeletOn() {
		d = append(d, step.DiffLine{Key: "kubelet.service", From: r.KubeletActive + "/" + r.KubeletEnabled, To: "stopped, disabled"})
	}
	if len(r.Files) > 0 {
		d = append(d, step.DiffLine{Key: "kubeconfigs", From: strings.Join(r.Files, ", "), To: "(removed)"})
	}
	for _, dir := range resetDirs {
		if n := r.Dirs[dir]; n > 0 {
			d = append(d, step.DiffLine{Key: dir, From: plural(n, "entry", "entries"), To: "(removed)"})
		}
	}
	if r.Mounts > 0 {
		d = append(d, step.DiffLine{Key: "mounts under " + KubeletDir, From: strconv.Itoa(r.Mounts), To: "(unmounted)"})
	}
	if r.Containers > 0 {
		d = append(d, step.DiffLine{Key: "containers (" + ContainerdNamespace + ")", From: strconv.Itoa(r.Containers), To: "(removed; images kept)"})
	}
	if r.Netns > 0 {
		d = append(d, step.DiffLine{Key: "CNI network namespaces", From: strconv.Itoa(r.Netns), To: "(removed)"})
	}
	if len(r.Links) > 0 {
		d = append(d, step.DiffLine{Key: "interfaces", From: strings.Join(r.Links, ", "), To: "(deleted)"})
	}
	for _, t := range []string{"iptables", "ip6tables"} {
		if n := r.Chains[t]; n > 0 {
			d = append(d, step.DiffLine{Key: t, From: plural(n, "KUBE-/FLANNEL chain", "KUBE-/FLANNEL chains"), To: "(removed)"})
		}
	}
	if n := r.Chains["nftables"]; n > 0 {
		d = append(d, step.DiffLine{Key: "nftables", From: plural(n, "kube-proxy table", "kube-proxy tables"), To: "(removed)"})
	}
	return d
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// residueProbe lists the residue in one round trip, a line per finding.
func residueProbe() string {
	var b strings.Builder
	b.WriteString(`echo "kubelet $(systemctl is-active kubelet.service 2>/dev/null) $(systemctl is-enabled kubelet.service 2>/dev/null)"; `)
	b.WriteString("for f in " + host.Join(resetFiles...) + `; do [ -e "$f" ] && echo "file $f"; done; `)
	b.WriteString("for d in " + host.Join(resetDirs...) + `; do [ -d "$d" ] && echo "dir $d $(ls -A "$d" | wc -l)"; done; `)
	b.WriteString(`echo "mounts $(awk '$2 ~ "^/var/lib/kubelet/"' /proc/mounts | wc -l)"; `)
	b.WriteString("for i in " + host.Join(resetLinks...) + `; do [ -e "/sys/class/net/$i" ] && echo "link $i"; done; `)
	b.WriteString(`for t in iptables ip6tables; do command -v $t-save >/dev/null 2>&1 && echo "chains $t $($t-save 2>/dev/null | grep -cE '^:(KUBE-|FLANNEL)')"; done; `)
	b.WriteString(`command -v nft >/dev/null 2>&1 && echo "chains nftables $(nft list tables 2>/dev/null | grep -c ' kube-proxy$')"; `)
	b.WriteString(`command -v ctr >/dev/null 2>&1 && echo "containers $(ctr -n ` + ContainerdNamespace + ` containers ls -q 2>/dev/null | wc -l)"; `)
	b.WriteString(`echo "netns $(ls /var/run/netns 2>/dev/null | grep -c '^cni-')"; true`)
	return b.String()
}

// ProbeResidue looks at what h holds of a Kubernetes node.
func ProbeResidue(ctx context.Context, h host.Host) (Residue, error) {
	out, err := runOut(ctx, h, residueProbe())
	if err != nil {
		return Residue{}, fmt.Errorf("look for Kubernetes state: %w", err)
	}
	return parseResidue(out)
}

func parseResidue(out string) (Residue, error) {
	r := Residue{Dirs: map[string]int{}, Chains: map[string]int{}}
	atoi := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("look for Kubernetes state: %q is not a count", s)
		}
		return n, nil
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		var err error
		switch {
		case f[0] == "kubelet":
			if len(f) > 1 {
				r.KubeletActive = f[1]
			}
			if len(f) > 2 {
				r.KubeletEnabled = f[2]
			}
		case f[0] == "file" && len(f) == 2:
			r.Files = append(r.Files, f[1])
		case f[0] == "dir" && len(f) == 3:
			var n int
			if n, err = atoi(f[2]); n > 0 {
				r.Dirs[f[1]] = n
			}
		case f[0] == "mounts" && len(f) == 2:
			r.Mounts, err = atoi(f[1])
		case f[0] == "link" && len(f) == 2:
			r.Links = append(r.Links, f[1])
		case f[0] == "chains" && len(f) == 3:
			var n int
			if n, err = atoi(f[2]); n > 0 {
				r.Chains[f[1]] = n
			}
		case f[0] == "containers" && len(f) == 2:
			r.Containers, err = atoi(f[1])
		case f[0] == "netns" && len(f) == 2:
			r.Netns, err = atoi(f[1])
		default:
			err = fmt.Errorf("look for Kubernetes state: unexpected line %q", l)
		}
		if err != nil {
			return Residue{}, err
		}
	}
	return r, nil
}

// Check lists what the host holds of a node; a reset host has nothing to do.
func (o Reset) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if t.Facts == nil {
		return step.Change{Action: step.ActionDelete, Diff: o.Describe()}, nil
	}
	r, err := ProbeResidue(ctx, t.Host)
	if err != nil {
		return step.Change{}, err
	}
	if r.Empty() {
		return step.Change{Action: step.ActionNone}, nil
	}
	d := r.Diff()
	if o.RemoveEtcdMember && r.Dirs[EtcdDataDir] > 0 {
		d = append(d, step.DiffLine{Key: "etcd member", From: "listed", To: "(removed from the cluster)"})
	}
	return step.Change{Action: step.ActionDelete, Diff: d}, nil
}

// Apply runs the reset script (reset.sh) on the host, then looks again:
// anything left is an error naming it, with the script's complaints.
func (o Reset) Apply(ctx context.Context, t step.Target) error {
	h := t.Host
	r, err := ProbeResidue(ctx, h)
	if err != nil || r.Empty() {
		return err
	}
	var stderr strings.Builder
	member := "keep-member"
	if o.RemoveEtcdMember {
		member = "remove-member"
	}
	line := host.Join("sh", "-s", "--", CRISocket, LogDir, member)
	if err := h.Run(ctx, host.Cmd{Line: line, Stdin: strings.NewReader(resetScript), Stderr: &stderr}); err != nil {
		if s := strings.TrimSpace(stderr.String()); s != "" {
			return fmt.Errorf("reset %s: %w; the reset said: %s", h.Name(), err, host.Tail(s, 1024))
		}
		return fmt.Errorf("reset %s: %w", h.Name(), err)
	}
	left, err := ProbeResidue(ctx, h)
	if err != nil {
		return err
	}
	if !left.Empty() {
		var what []string
		for _, d := range left.Diff() {
			what = append(what, d.Key+" ("+d.From+")")
		}
		msg := fmt.Sprintf("reset %s: still there afterwards: %s", h.Name(), strings.Join(what, "; "))
		if s := strings.TrimSpace(stderr.String()); s != "" {
			msg += "; the reset said: " + host.Tail(s, 1024)
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// DeleteNode deletes a Node object through a control plane (Via) once its
// host was reset, so the host can join again under the same name (kubeadm
// refuses to join a node whose name a Ready Node still holds) and the
// cluster stops waiting for it. Its pods go with it.
type DeleteNode struct {
	Node string `json:"node"`
	Via  string `json:"via"`
}

func (DeleteNode) Kind() string { return "kube/delete-node" }
func (o DeleteNode) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "node/" + o.Node, From: "registered", To: "(deleted)"}}
}

func (o DeleteNode) validate() error {
	if !nameRE.MatchString(o.Node) {
		return fmt.Errorf("node name %q is not a DNS name", o.Node)
	}
	if o.Via == "" {
		return fmt.Errorf("delete node %s: no control plane to go through (via)", o.Node)
	}
	return nil
}

func (o DeleteNode) exists(ctx context.Context, t step.Target) (host.Host, bool, error) {
	cp, err := peer(t, o.Via)
	if err != nil {
		return nil, false, err
	}
	out, err := runOut(ctx, cp, Kubectl+" --request-timeout=10s get node "+host.Quote(o.Node)+" -o name --ignore-not-found")
	if err != nil {
		return nil, false, fmt.Errorf("ask %s for node %s: %w", o.Via, o.Node, err)
	}
	return cp, strings.TrimSpace(out) != "", nil
}

// Check: a Node the cluster lists is deleted.
func (o DeleteNode) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionDelete, Diff: o.Describe()}, nil
	}
	_, ok, err := o.exists(ctx, t)
	if err != nil || !ok {
		return step.Change{Action: step.ActionNone}, err
	}
	return step.Change{Action: step.ActionDelete, Diff: o.Describe()}, nil
}

// Apply deletes the Node and waits until it is gone.
func (o DeleteNode) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	cp, ok, err := o.exists(ctx, t)
	if err != nil || !ok {
		return err
	}
	line := Kubectl + " --request-timeout=70s delete node " + host.Quote(o.Node) + " --ignore-not-found --wait=true --timeout=60s"
	if err := cp.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("delete node %s through %s: %w", o.Node, o.Via, err)
	}
	return nil
}
