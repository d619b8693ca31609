package k3s_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/k3s"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// The cluster's tokens as k3s writes them (secure format: K10, the CA
// hash, then credentials).
const (
	serverToken = "K1011f9c0d3b5e1a2f4c6d8e0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1::server:3f8a1c9e7d5b2f4a6c8e0b1d3f5a7c9e"
	agentToken  = "K1011f9c0d3b5e1a2f4c6d8e0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1::node:9b7d5f3a1c8e6b4d2f0a9c7e5b3d1f8a"
)

// fakeCluster simulates k3s on strict fake hosts: each node's unit state
// follows the systemctl commands it gets; the first server answers node
// queries and the bounded waits from the cluster's node list, and writes
// its token files when it first comes up, as k3s does.
type fakeCluster struct {
	t     *testing.T
	red   *host.Redactor
	mu    sync.Mutex
	hosts map[string]*fakeNode
	nodes map[string]map[string]string // registered node -> condition -> status
	// voters: whether a joining server's etcd member becomes a voter.
	voters bool
	// waitFails makes every bounded wait time out.
	waitFails bool
}

type fakeNode struct {
	*hosttest.Fake
	c               *fakeCluster
	name, role      string
	active, enabled string
	conntrackRO     bool
	overlay         bool
	noSysResource   bool
}

func newFakeCluster(t *testing.T) *fakeCluster {
	return &fakeCluster{t: t, red: host.NewRedactor(), hosts: map[string]*fakeNode{}, nodes: map[string]map[string]string{}, voters: true}
}

var nodeRE = regexp.MustCompile(`get node (?:--ignore-not-found )?([a-z0-9-]+)`)

func (c *fakeCluster) add(name, role string) *fakeNode {
	f := steptest.NewFileHost(c.t, name)
	f.Redactor = c.red
	n := &fakeNode{Fake: f, c: c, name: name, role: role, active: "inactive", enabled: "disabled"}
	c.hosts[name] = n
	f.ExpectFunc("k3s node probe", func(l string) bool {
		return strings.HasPrefix(l, "[ -w /proc/sys/net/netfilter/nf_conntrack_max ] || echo conntrack read-only;")
	}).Do(n.answerProbe).AnyTimes()
	f.ExpectFunc("systemctl enable [&& start|restart]", func(l string) bool {
		return strings.HasPrefix(l, "systemctl enable --quiet k3s")
	}).Do(n.systemctl).AnyTimes()
	f.ExpectFunc("node query", func(l string) bool {
		return strings.HasPrefix(l, k3s.Kubectl+" --request-timeout=10s get node --ignore-not-found ")
	}).Do(c.answerNode).AnyTimes()
	f.ExpectFunc("bounded wait", func(l string) bool { return strings.HasPrefix(l, "{ end=") }).Do(c.wait).AnyTimes()
	return n
}

// target is the step target of host name, with every host as a peer.
func (c *fakeCluster) target(name string, facts bool) step.Target {
	peers := map[string]host.Host{}
	for n, h := range c.hosts {
		peers[n] = h.Fake
	}
	tg := step.Target{Host: c.hosts[name].Fake, Redactor: c.red, Peers: peers}
	if facts {
		tg.Facts = freshFacts(name)
	}
	return tg
}

func (n *fakeNode) answerProbe(_ context.Context, cmd host.Cmd) error {
	var b strings.Builder
	if n.conntrackRO {
		b.WriteString("conntrack read-only\n")
	}
	fs := "ext4"
	if n.overlay {
		fs = "overlayfs"
	}
	fmt.Fprintf(&b, "datafs %s\n", fs)
	caps := "000001ffffffffff"
	if n.noSysResource {
		caps = "000001fffeffffff"
	}
	fmt.Fprintf(&b, "CapBnd:\t%s\n", caps)
	if f, ok := n.File(k3s.TokenFile); ok && len(f.Content) > 0 {
		b.WriteString("token present\n")
	}
	fmt.Fprintf(&b, "unit %s %s\n", n.active, n.enabled)
	for _, p := range []string{k3s.ConfigFile, k3s.RegistriesFile} {
		if f, ok := n.File(p); ok {
			b.WriteString("@@" + p + "\n" + string(f.Content) + "\n")
		}
	}
	_, err := cmd.Stdout.Write([]byte(b.String()))
	return err
}

func (n *fakeNode) systemctl(_ context.Context, cmd host.Cmd) error {
	want := "k3s.service"
	if n.role == k3s.RoleAgent {
		want = "k3s-agent.service"
	}
	if !strings.Contains(cmd.Line, want) {
		n.c.t.Errorf("%s: %q names the wrong unit (want %s)", n.name, cmd.Line, want)
	}
	n.enabled = "enabled"
	if strings.Contains(cmd.Line, "start --no-block") || strings.Contains(cmd.Line, "restart --no-block") {
		n.active = "active"
	}
	return nil
}

func (c *fakeCluster) answerNode(_ context.Context, cmd host.Cmd) error {
	name := nodeRE.FindStringSubmatch(cmd.Line)[1]
	c.mu.Lock()
	defer c.mu.Unlock()
	conds, ok := c.nodes[name]
	if !ok {
		return nil
	}
	out := name + "\n"
	for _, k := range []string{"Ready", "EtcdIsVoter"} {
		if v, ok := conds[k]; ok {
			out += k + "=" + v + "\n"
		}
	}
	_, err := cmd.Stdout.Write([]byte(out))
	return err
}

// wait: the node the wait is for comes up (registered, Ready, a server an
// etcd voter unless voters is off); the first server writes its tokens.
func (c *fakeCluster) wait(_ context.Context, cmd host.Cmd) error {
	if c.waitFails {
		return &host.ExitError{Host: "fake", Command: cmd.Line, Code: 1}
	}
	name := nodeRE.FindStringSubmatch(cmd.Line)[1]
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.hosts[name]
	if n == nil || n.active != "active" {
		c.t.Errorf("wait for %s, whose k3s does not run", name)
		return &host.ExitError{Host: "fake", Command: cmd.Line, Code: 1}
	}
	conds := map[string]string{"Ready": "True"}
	if n.role == k3s.RoleServer {
		conds["EtcdIsVoter"] = "True"
		if !c.voters {
			conds["EtcdIsVoter"] = "False"
		}
	}
	c.nodes[name] = conds
	if strings.Contains(cmd.Line, "get --raw=/readyz") {
		n.SetFile(k3s.ServerTokenFile, []byte(serverToken+"\n"), 0o600)
		n.SetFile(k3s.AgentTokenFile, []byte(agentToken+"\n"), 0o600)
		n.SetFile(k3s.KubeconfigFile, []byte("apiVersion: v1\n"), 0o600)
	}
	if !c.voters && n.role == k3s.RoleServer && !strings.Contains(cmd.Line, "get --raw=/readyz") {
		return &host.ExitError{Host: "fake", Command: cmd.Line, Code: 1}
	}
	return nil
}
