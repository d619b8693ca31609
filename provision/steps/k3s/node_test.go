package k3s_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/k3s"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// converge checks op on host name (the check must say want), applies it
// and returns the check report and the host's transcript of both.
func converge(t *testing.T, c *fakeCluster, name string, op step.Op, want step.Action) (report, transcript string) {
	t.Helper()
	ctx := context.Background()
	h := c.hosts[name]
	before := h.Transcript()
	ch, err := op.Check(ctx, c.target(name, true))
	report = steptest.Report(op, ch, err)
	if err != nil || ch.Action != want {
		t.Fatalf("%s: check: want %s, got\n%s", name, want, report)
	}
	if err := op.Apply(ctx, c.target(name, true)); err != nil {
		t.Fatalf("%s: apply: %v", name, err)
	}
	return report, strings.TrimPrefix(h.Transcript(), before)
}

// recheck is the check of a converged node: it must be no change.
func recheck(t *testing.T, c *fakeCluster, name string, op step.Op) {
	t.Helper()
	ch, err := op.Check(context.Background(), c.target(name, true))
	if err != nil || ch.Action != step.ActionNone {
		t.Errorf("%s after apply: want none, got\n%s", name, steptest.Report(op, ch, err))
	}
}

func assertNoToken(t *testing.T, c *fakeCluster) {
	t.Helper()
	for name, h := range c.hosts {
		for _, secret := range []string{serverToken, agentToken, "3f8a1c9e7d5b2f4a6c8e0b1d3f5a7c9e", "9b7d5f3a1c8e6b4d2f0a9c7e5b3d1f8a"} {
			if strings.Contains(h.Transcript(), secret) {
				t.Errorf("%s's transcript shows a token", name)
			}
			if f, ok := h.File(k3s.ConfigFile); ok && strings.Contains(string(f.Content), secret) {
				t.Errorf("%s's config.yaml holds a token", name)
			}
		}
	}
}

// TestSingleServer: a fresh host becomes the first server (cluster-init),
// the cluster's API answering; a second apply changes and restarts
// nothing, and the check of the result is no change.
func TestSingleServer(t *testing.T) {
	c := newFakeCluster(t)
	c.add("s1", k3s.RoleServer)
	report, first := converge(t, c, "s1", initOp, step.ActionCreate)
	cfg, _ := c.hosts["s1"].File(k3s.ConfigFile)
	if cfg.Mode.Perm() != 0o600 || cfg.Owner != "root" || !strings.Contains(string(cfg.Content), "cluster-init: true\n") {
		t.Errorf("config.yaml: mode %o owner %s:\n%s", cfg.Mode.Perm(), cfg.Owner, cfg.Content)
	}
	recheck(t, c, "s1", initOp)
	_, second := converge(t, c, "s1", initOp, step.ActionNone)
	if strings.Contains(second, "upload:") || strings.Contains(second, "start") {
		t.Errorf("second apply wrote or (re)started:\n%s", second)
	}
	steptest.Golden(t, "single-server", steptest.Section("check", report), steptest.Section("apply (s1)", first),
		steptest.Section("apply again (s1)", second))
}

// TestHAServers: the first server, then two joins, one at a time: each
// reads the server token from the first server (held in memory, redacted),
// writes it to its token file (0600), starts and waits until the first
// server lists it as an etcd voter.
func TestHAServers(t *testing.T) {
	c := newFakeCluster(t)
	for _, n := range []string{"s1", "s2", "s3"} {
		c.add(n, k3s.RoleServer)
	}
	converge(t, c, "s1", initOp, step.ActionCreate)
	s1Before := c.hosts["s1"].Transcript()
	var parts []string
	for _, j := range []struct {
		name string
		op   k3s.JoinServer
	}{{"s2", joinS2}, {"s3", joinS3}} {
		report, tr := converge(t, c, j.name, j.op, step.ActionCreate)
		tok, ok := c.hosts[j.name].File(k3s.TokenFile)
		if !ok || string(tok.Content) != serverToken+"\n" || tok.Mode.Perm() != 0o600 || tok.Owner != "root" {
			t.Errorf("%s: token file %+v, want the server token, mode 0600, root", j.name, tok)
		}
		recheck(t, c, j.name, j.op)
		parts = append(parts, steptest.Section("check ("+j.name+")", report), steptest.Section("apply ("+j.name+")", tr))
	}
	parts = append(parts, steptest.Section("s1 during the joins", strings.TrimPrefix(c.hosts["s1"].Transcript(), s1Before)))
	assertNoToken(t, c)
	steptest.Golden(t, "ha-servers", parts...)
}

// A joined server whose etcd member is still a learner is not done: the
// check says so, and apply waits (and here times out) rather than let the
// next server join.
func TestServerNotYetVoter(t *testing.T) {
	c := newFakeCluster(t)
	c.add("s1", k3s.RoleServer)
	c.add("s2", k3s.RoleServer)
	converge(t, c, "s1", initOp, step.ActionCreate)
	c.voters = false
	c.hosts["s2"].ExpectFunc("journal", func(l string) bool { return strings.HasPrefix(l, "systemctl is-active k3s.service; journalctl") }).
		Stdout("activating\nk3s[812]: etcd member s2 is a learner; token " + serverToken + "\n")
	err := joinS2.Apply(context.Background(), c.target("s2", true))
	if err == nil || !strings.Contains(err.Error(), "etcd voting member") || !strings.Contains(err.Error(), "is a learner") {
		t.Fatalf("apply: %v", err)
	}
	if strings.Contains(err.Error(), serverToken) || strings.Contains(err.Error(), "3f8a1c9e7d5b2f4a6c8e0b1d3f5a7c9e") {
		t.Errorf("the error shows the token: %v", err)
	}
	ch, err := joinS2.Check(context.Background(), c.target("s2", true))
	steptest.Golden(t, "server-learner", steptest.Report(joinS2, ch, err))
}

// TestAgents: agents join with the agent token; they do not depend on
// each other (the planner runs them in parallel) and need only the first
// server.
func TestAgents(t *testing.T) {
	c := newFakeCluster(t)
	c.add("s1", k3s.RoleServer)
	c.add("a1", k3s.RoleAgent)
	c.add("a2", k3s.RoleAgent)
	converge(t, c, "s1", initOp, step.ActionCreate)
	var parts []string
	for _, j := range []struct {
		name string
		op   k3s.JoinAgent
	}{{"a1", agentOp}, {"a2", agentOp2}} {
		report, tr := converge(t, c, j.name, j.op, step.ActionCreate)
		if tok, _ := c.hosts[j.name].File(k3s.TokenFile); string(tok.Content) != agentToken+"\n" {
			t.Errorf("%s: token file holds %q, want the agent token", j.name, tok.Content)
		}
		recheck(t, c, j.name, j.op)
		parts = append(parts, steptest.Section("check ("+j.name+")", report), steptest.Section("apply ("+j.name+")", tr))
	}
	assertNoToken(t, c)
	steptest.Golden(t, "agents", parts...)
}

// TestConfigChange: a changed spec shows in the plan as the config.yaml
// keys that change, and apply rewrites the file and restarts only that
// node's service; the other nodes check as unchanged.
func TestConfigChange(t *testing.T) {
	c := newFakeCluster(t)
	c.add("s1", k3s.RoleServer)
	c.add("a1", k3s.RoleAgent)
	converge(t, c, "s1", initOp, step.ActionCreate)
	converge(t, c, "a1", agentOp, step.ActionCreate)

	changed := agentOp
	changed.Cluster.ProxyMode = "ipvs"
	changed.Runtime.Mirrors = map[string][]string{"docker.io": {"https://mirror2.edge.example.org"}}
	changed.Node.Labels = map[string]string{"tier": "web"}
	report, tr := converge(t, c, "a1", changed, step.ActionUpdate)
	if !strings.Contains(tr, "systemctl restart --no-block k3s-agent.service") {
		t.Errorf("a1's k3s-agent was not restarted:\n%s", tr)
	}
	recheck(t, c, "a1", changed)
	recheck(t, c, "s1", initOp)

	// The server: the same change restarts k3s.service there, nothing else.
	s := initOp
	s.Cluster.ProxyMode = "ipvs"
	sreport, str := converge(t, c, "s1", s, step.ActionUpdate)
	recheck(t, c, "a1", changed)
	steptest.Golden(t, "config-change", steptest.Section("check (a1)", report), steptest.Section("apply (a1)", tr),
		steptest.Section("check (s1)", sreport), steptest.Section("apply (s1)", str))
}

// A stopped node is started again, its files unchanged, without a restart.
func TestStoppedNode(t *testing.T) {
	c := newFakeCluster(t)
	c.add("s1", k3s.RoleServer)
	c.add("a1", k3s.RoleAgent)
	converge(t, c, "s1", initOp, step.ActionCreate)
	converge(t, c, "a1", agentOp, step.ActionCreate)
	c.hosts["a1"].active = "failed"
	report, tr := converge(t, c, "a1", agentOp, step.ActionUpdate)
	if strings.Contains(tr, "upload:") || strings.Contains(tr, "restart") || !strings.Contains(tr, "systemctl start --no-block k3s-agent.service") {
		t.Errorf("transcript:\n%s", tr)
	}
	steptest.Golden(t, "stopped-node", steptest.Section("check", report), steptest.Section("apply", tr))
}

// Host quirks reach config.yaml, and a host whose PID 1 lacks
// CAP_SYS_RESOURCE gets a warning in the plan.
func TestQuirks(t *testing.T) {
	c := newFakeCluster(t)
	n := c.add("s1", k3s.RoleServer)
	n.conntrackRO, n.overlay, n.noSysResource = true, true, true
	report, _ := converge(t, c, "s1", initOp, step.ActionCreate)
	if !strings.Contains(report, "CAP_SYS_RESOURCE") {
		t.Errorf("no warning:\n%s", report)
	}
	cfg, _ := n.File(k3s.ConfigFile)
	for _, want := range []string{`  - "conntrack-max-per-core=0"`, `snapshotter: "native"`} {
		if !strings.Contains(string(cfg.Content), want) {
			t.Errorf("config.yaml lacks %s:\n%s", want, cfg.Content)
		}
	}
}

// Offline (no facts) the ops describe what they would do; bad parameters
// are errors that name them.
func TestNodeErrors(t *testing.T) {
	ctx := context.Background()
	c := newFakeCluster(t)
	c.add("s1", k3s.RoleServer)
	c.add("a1", k3s.RoleAgent)
	ch, err := agentOp.Check(ctx, c.target("a1", false))
	if err != nil || ch.Action != step.ActionCreate || len(ch.Diff) == 0 {
		t.Errorf("offline: %s", steptest.Report(agentOp, ch, err))
	}
	bad := func(mut func(o *k3s.JoinAgent), want string) {
		t.Helper()
		o := agentOp
		o.Node.Labels = map[string]string{}
		mut(&o)
		if _, err := o.Check(ctx, c.target("a1", true)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want error %q, got %v", want, err)
		}
	}
	bad(func(o *k3s.JoinAgent) { o.Node.Labels["a"] = "b\nserver: x" }, "is not a label")
	bad(func(o *k3s.JoinAgent) { o.Cluster.Version = "1.34.2" }, "want e.g. 1.37.2+k3s1")
	bad(func(o *k3s.JoinAgent) { o.Cluster.Endpoint = "10.0.0.1; rm -rf /" }, "want HOST:PORT")
	bad(func(o *k3s.JoinAgent) { o.Runtime.Mirrors = map[string][]string{"docker.io": {"https://m\"\nx: 1"}} }, "is not an http(s) URL")
	bad(func(o *k3s.JoinAgent) { o.Cluster.Distribution = "kubeadm" }, "k3s clusters only")
	bad(func(o *k3s.JoinAgent) { o.Via = "" }, "no first server")

	// The first server is not connected: the join says which host.
	tg := c.target("a1", true)
	delete(tg.Peers, "s1")
	if err := agentOp.Apply(ctx, tg); err == nil || !strings.Contains(err.Error(), "s1 (the first server) is not connected") {
		t.Errorf("apply without s1: %v", err)
	}
	// The first server has no token yet: a clear error, nothing written.
	if err := agentOp.Apply(ctx, c.target("a1", true)); err == nil || !strings.Contains(err.Error(), "read the join token "+k3s.AgentTokenFile+" on s1") {
		t.Errorf("apply before s1 made its token: %v", err)
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error does not wrap fs.ErrNotExist: %v", err)
	}
	if _, ok := c.hosts["a1"].File(k3s.TokenFile); ok {
		t.Error("a token file was written")
	}
}
