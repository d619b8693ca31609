package k3s

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
)

// Bounds of the waits after k3s starts, in probes two seconds apart: the
// first start of a server imports the air-gap images and starts etcd; a
// joining server's etcd member starts as a learner and is promoted by the
// leader, which checks every 15 seconds.
const (
	serverWaitTries = 300 // 10 minutes
	agentWaitTries  = 150 // 5 minutes
)

// capSysResource is CAP_SYS_RESOURCE's bit in /proc/PID/status CapBnd.
const capSysResource = 24

// nodeState is what the node probe says about a host, in one round trip.
type nodeState struct {
	quirks
	// lacksSysResource: PID 1 (and so k3s's containerd) lacks
	// CAP_SYS_RESOURCE, which runc needs to give pod sandboxes their
	// negative oom_score_adj.
	lacksSysResource bool
	token            bool   // TokenFile exists and is not empty
	active           string // systemctl is-active of the role's unit
	enabled          string // systemctl is-enabled of it
	config           []byte // nil: missing
	registries       []byte
}

func (s nodeState) running() bool {
	return s.active == "active" || s.active == "activating" || s.active == "reloading"
}

func (m member) probeLine() string {
	u := unit(m.role)
	var b strings.Builder
	b.WriteString("[ -w /proc/sys/net/netfilter/nf_conntrack_max ] || echo conntrack read-only; ")
	// The data directory's file system, or its nearest existing parent's.
	b.WriteString(`d=` + DataDir + `/agent; while [ ! -d "$d" ]; do d=${d%/*}; [ -n "$d" ] || d=/; done; echo "datafs $(stat -f -c %T "$d")"; `)
	b.WriteString("grep '^CapBnd:' /proc/1/status; ")
	b.WriteString("[ -s " + TokenFile + " ] && echo token present; ")
	b.WriteString("echo \"unit $(systemctl is-active " + u + " 2>/dev/null) $(systemctl is-enabled " + u + " 2>/dev/null)\"; ")
	for _, f := range []string{ConfigFile, RegistriesFile} {
		b.WriteString("if [ -f " + f + " ]; then echo @@" + f + "; cat " + f + "; echo; fi; ")
	}
	b.WriteString("true")
	return b.String()
}

func (m member) probe(ctx context.Context, h host.Host) (nodeState, error) {
	out, err := runOut(ctx, h, m.probeLine())
	if err != nil {
		return nodeState{}, fmt.Errorf("inspect k3s on the host: %w", err)
	}
	var st nodeState
	files := map[string]*[]byte{"@@" + ConfigFile: &st.config, "@@" + RegistriesFile: &st.registries}
	var cur *[]byte
	for _, l := range strings.SplitAfter(out, "\n") {
		line := strings.TrimSuffix(l, "\n")
		if p, ok := files[line]; ok {
			cur, *p = p, []byte{}
			continue
		}
		if cur != nil {
			*cur = append(*cur, l...)
			continue
		}
		f := strings.Fields(line)
		switch {
		case line == "conntrack read-only":
			st.conntrackRO = true
		case len(f) == 2 && f[0] == "datafs":
			st.overlayData = f[1] == "overlayfs"
		case len(f) == 2 && f[0] == "CapBnd:":
			caps, err := strconv.ParseUint(f[1], 16, 64)
			st.lacksSysResource = err == nil && caps&(1<<capSysResource) == 0
		case line == "token present":
			st.token = true
		case len(f) >= 1 && f[0] == "unit":
			if len(f) > 1 {
				st.active = f[1]
			}
			if len(f) > 2 {
				st.enabled = f[2]
			}
		}
	}
	// Each file's section ends with the newline echo added.
	for _, p := range files {
		if *p != nil {
			*p = bytes.TrimSuffix(*p, []byte("\n"))
		}
	}
	return st, nil
}

// condPath prints a node's name, then TYPE=STATUS per condition.
const condPath = `jsonpath={.metadata.name}{"\n"}{range .status.conditions[*]}{.type}={.status}{"\n"}{end}`

// membership is what the cluster says of the node: registered at all, and
// its conditions (Ready, and on servers k3s's EtcdIsVoter).
type membership struct {
	registered bool
	conds      map[string]string
}

// member asks h (a server) what the cluster knows of node name.
func askNode(ctx context.Context, h host.Host, name string) (membership, error) {
	line := Kubectl + " --request-timeout=10s get node --ignore-not-found " + host.Quote(name) + " -o " + host.Quote(condPath)
	out, err := runOut(ctx, h, line)
	if err != nil {
		return membership{}, fmt.Errorf("ask %s for node %s: %w", h.Name(), name, err)
	}
	ms := membership{conds: map[string]string{}}
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if i == 0 {
			ms.registered = l == name
		} else if k, v, ok := strings.Cut(l, "="); ok {
			ms.conds[k] = v
		}
	}
	return ms, nil
}

// membershipDiff is the plan's line for a node that runs but is not (yet)
// what the cluster needs, or nil.
func (m member) membershipDiff(ms membership) []step.DiffLine {
	key := "node " + m.node.Name
	switch {
	case !ms.registered:
		return []step.DiffLine{{Key: key, From: "(not registered)", To: "registered"}}
	case m.role == RoleServer && !m.first && ms.conds["EtcdIsVoter"] != "True":
		from := "etcd: not a voting member"
		if v := ms.conds["EtcdIsVoter"]; v == "" {
			from = "etcd: no member status yet"
		}
		return []step.DiffLine{{Key: key, From: from, To: "etcd voting member"}}
	}
	return nil
}

// peer is the host the join goes through.
func (m member) peer(t step.Target) (host.Host, error) {
	if h, ok := t.Peers[m.via]; ok && h != nil {
		return h, nil
	}
	return nil, fmt.Errorf("host %s (the first server) is not connected", m.via)
}

// check: a fresh host (no config.yaml, k3s not running) is created; one
// whose config.yaml, registries.yaml, token file or service state differ
// is updated, the diff naming each config key that changes; a node that
// runs as rendered is asked of the cluster: registered (and, for a joined
// server, an etcd voting member) is no change.
func (m member) check(ctx context.Context, t step.Target, describe []step.DiffLine) (step.Change, error) {
	if err := m.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: describe}, nil
	}
	st, err := m.probe(ctx, t.Host)
	if err != nil {
		return step.Change{}, err
	}
	var notes []string
	if st.lacksSysResource {
		notes = append(notes, "warning: PID 1 on this host lacks CAP_SYS_RESOURCE; k3s's embedded containerd restricts oom_score_adj only inside user namespaces, so pod sandboxes may fail to start here")
	}
	cfg, err := m.config(st.quirks)
	if err != nil {
		return step.Change{}, err
	}
	reg, err := m.registries()
	if err != nil {
		return step.Change{}, err
	}
	if st.config == nil && !st.running() {
		return step.Change{Action: step.ActionCreate, Diff: describe, Note: strings.Join(notes, "; ")}, nil
	}
	var d []step.DiffLine
	if !bytes.Equal(st.config, cfg) {
		d = append(d, configDiff(ConfigFile, st.config, cfg)...)
		for _, l := range d {
			if strings.HasSuffix(l.Key, " node-label") || strings.HasSuffix(l.Key, " node-taint") {
				notes = append(notes, "k3s applies node-label and node-taint when a node registers only; change a registered node's labels and taints with kubectl")
				break
			}
		}
	}
	if !bytes.Equal(st.registries, reg) {
		from := "(missing)"
		if st.registries != nil {
			from = "sha256:" + hostprep.Digest(st.registries)[:12]
		}
		d = append(d, step.DiffLine{Key: RegistriesFile, From: from, To: "sha256:" + hostprep.Digest(reg)[:12]})
	}
	if !m.first && !st.token {
		d = append(d, step.DiffLine{Key: TokenFile, From: "(missing)", To: "written from " + m.via})
	}
	if len(d) > 0 && st.running() {
		notes = append(notes, "restarts "+unit(m.role)+" on "+m.node.Name+" only")
	}
	if st.active != "active" || st.enabled != "enabled" {
		d = append(d, step.DiffLine{Key: unit(m.role), From: orAbsent(st.active) + "/" + orAbsent(st.enabled), To: "active/enabled"})
	}
	if len(d) == 0 {
		via := t.Host
		if !m.first {
			if via, err = m.peer(t); err != nil {
				return step.Change{}, err
			}
		}
		ms, err := askNode(ctx, via, m.node.Name)
		if err != nil {
			return step.Change{}, err
		}
		d = m.membershipDiff(ms)
	}
	if len(d) == 0 {
		return step.Change{Action: step.ActionNone, Note: strings.Join(notes, "; ")}, nil
	}
	return step.Change{Action: step.ActionUpdate, Diff: d, Note: strings.Join(notes, "; ")}, nil
}

func orAbsent(s string) string {
	if s == "" {
		return "(absent)"
	}
	return s
}

var tokenRE = regexp.MustCompile(`^[!-~]{8,1000}$`)

// addToken registers a k3s token with the redactor: the whole token
// (K10<CA hash>::<user>:<password>), its credentials and the password.
func addToken(r *host.Redactor, token string) {
	r.Add(token)
	if _, cred, ok := strings.Cut(token, "::"); ok {
		r.Add(cred)
		if i := strings.LastIndexByte(cred, ':'); i >= 0 {
			r.Add(cred[i+1:])
		}
	}
}

// writeToken copies the join token from the first server into TokenFile
// (mode 0600): read with sudo over SSH, registered for redaction before
// anything can print it, held only in this function.
func (m member) writeToken(ctx context.Context, t step.Target) error {
	via, err := m.peer(t)
	if err != nil {
		return err
	}
	src := ServerTokenFile
	if m.role == RoleAgent {
		src = AgentTokenFile
	}
	raw, err := via.ReadFile(ctx, src)
	token := strings.TrimSpace(string(raw))
	addToken(t.Redactor, token)
	if err != nil {
		return fmt.Errorf("read the join token %s on %s: %w", src, m.via, err)
	}
	if !tokenRE.MatchString(token) {
		return fmt.Errorf("read the join token %s on %s: not a k3s token (%d bytes)", src, m.via, len(raw))
	}
	if err := t.Host.Upload(ctx, strings.NewReader(token+"\n"), TokenFile, host.FileOptions{Mode: 0o600, Owner: "root", Group: "root"}); err != nil {
		return fmt.Errorf("write %s: %w", TokenFile, err)
	}
	return nil
}

// apply converges the node: the join token when it has none, then
// registries.yaml and config.yaml (mode 0600, written only when they
// differ), the unit enabled and started, or restarted when a file it reads
// changed; then it waits, bounded, until the cluster has the node (a
// server's API answering, a joined server an etcd voter).
func (m member) apply(ctx context.Context, t step.Target) error {
	if err := m.validate(); err != nil {
		return err
	}
	h := t.Host
	st, err := m.probe(ctx, h)
	if err != nil {
		return err
	}
	cfg, err := m.config(st.quirks)
	if err != nil {
		return err
	}
	reg, err := m.registries()
	if err != nil {
		return err
	}
	changed := false
	if !m.first && !st.token {
		if err := m.writeToken(ctx, t); err != nil {
			return err
		}
		changed = true
	}
	for _, f := range []struct {
		path string
		body []byte
	}{{RegistriesFile, reg}, {ConfigFile, cfg}} {
		c, err := hostprep.WriteFile(ctx, h, f.path, f.body, 0o600)
		if err != nil {
			return err
		}
		changed = changed || c
	}
	u := unit(m.role)
	line := "systemctl enable --quiet " + u
	switch {
	case changed && st.running():
		line += " && systemctl restart --no-block " + u
	case st.active != "active":
		line += " && systemctl start --no-block " + u
	}
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("start %s: %w", u, err)
	}
	return m.wait(ctx, t)
}

// wait polls until the cluster has the node: the first server's API ready
// and its node registered; a joined server an etcd voting member (asked of
// the first server); an agent registered. On timeout the error carries
// the end of the unit's journal.
func (m member) wait(ctx context.Context, t step.Target) error {
	name := host.Quote(m.node.Name)
	get := Kubectl + " --request-timeout=5s get node " + name
	var cond, what string
	tries, on := serverWaitTries, t.Host
	switch {
	case m.first:
		cond = Kubectl + " --request-timeout=5s get --raw=/readyz >/dev/null 2>&1 && " + get + " -o name >/dev/null 2>&1"
		what = "its API server to answer and node " + m.node.Name + " to register"
	case m.role == RoleServer:
		cond = `[ "$(` + get + ` -o ` + host.Quote(`jsonpath={.status.conditions[?(@.type=="EtcdIsVoter")].status}`) + ` 2>/dev/null)" = True ]`
		what = "node " + m.node.Name + " to become an etcd voting member (" + m.via + "'s view)"
	default:
		cond = get + " -o name >/dev/null 2>&1"
		what = "node " + m.node.Name + " to register (" + m.via + "'s view)"
		tries = agentWaitTries
	}
	if !m.first {
		var err error
		if on, err = m.peer(t); err != nil {
			return err
		}
	}
	line := host.PollLine(cond, "", time.Duration(tries)*2*time.Second, 2*time.Second)
	err := on.Run(ctx, host.Cmd{Line: line})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("wait for %s: %w", what, err)
	}
	u := unit(m.role)
	logs, _ := runOut(context.WithoutCancel(ctx), t.Host, "systemctl is-active "+u+"; journalctl -u "+u+" --no-pager -n 25 2>&1; true")
	logs = t.Redactor.Redact(strings.TrimSpace(logs))
	return errors.Join(fmt.Errorf("k3s on %s: waited %ds for %s; the end of its journal:\n%s", m.node.Name, 2*tries, what, logs), err)
}
