//go:build integration

package k3s_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/k3s"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
	sshx "github.com/clusterctl/clusterctl/provision/transport/ssh"
)

const (
	itNet    = "172.31.18"
	itPrefix = "ct18"
)

// fakeK3s stands in for the k3s binary on the test hosts (no k3s release
// can be had here): it reports its version, runs as the service doing
// nothing but what clusterctl reads afterwards (a first server's tokens
// and kubeconfig, as k3s writes them), and answers the kubectl queries
// clusterctl makes as a healthy cluster would. It proves the driver's
// shell, files, units and SSH paths on real hosts, not k3s itself.
const fakeK3s = `#!/bin/sh
case "$1" in
--version) echo "k3s version v1.34.2+k3s1 (fake)"; echo "go version go1.26"; exit 0 ;;
server)
	if grep -q '^cluster-init: true' /etc/rancher/k3s/config.yaml; then
		mkdir -p /var/lib/rancher/k3s/server && cd /var/lib/rancher/k3s/server
		[ -s token ] || { umask 077; echo "K10$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')::server:$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >token; }
		ln -sf token agent-token
		echo "apiVersion: v1" >/etc/rancher/k3s/k3s.yaml
	fi
	exec sleep infinity ;;
agent) exec sleep infinity ;;
kubectl)
	node=; prev=; out=
	for a; do
		case "$a" in --raw=/readyz) echo ok; exit 0 ;; esac
		if [ "$prev" = node ] || [ "$prev" = --ignore-not-found ]; then node=$a; fi
		case "$a" in name) out=name ;; *EtcdIsVoter*) out=voter ;; *conditions*) out=conds ;; esac
		prev=$a
	done
	case "$out" in
	name) echo "node/$node" ;;
	voter) printf True ;;
	conds) printf '%s\nReady=True\nEtcdIsVoter=True\n' "$node" ;;
	esac ;;
esac
`

// TestK3sOnTestHosts: the k3s driver's ops against real sshd hosts with
// a stand-in k3s: install from a bundle, the first server, an agent
// joined through sudo with the agent token, a config change restarting
// only the agent, and every re-check clean.
func TestK3sOnTestHosts(t *testing.T) {
	ctx := context.Background()
	c, err := testhosts.Start(ctx, testhosts.Options{Net: itNet, Count: 2, Prefix: itPrefix, Logf: t.Logf})
	if err != nil {
		t.Fatalf("start test hosts: %v", err)
	}
	defer c.Close()
	pool := sshx.NewPool()
	defer pool.Close()
	red := host.NewRedactor()
	hosts := map[string]host.Host{}
	for i, name := range []string{"s1", "a1"} {
		th, _ := c.Host(i + 1)
		user := "root"
		if name == "a1" {
			user = "tester"
		}
		h := pool.Host(sshx.Config{Name: name, Address: th.Addr, User: user, IdentityFiles: []string{c.KeyFile},
			KnownHostsFile: c.KnownHosts, Redactor: red, DialTimeout: 5 * time.Second})
		if user != "root" {
			h = host.WithSudo(h, host.SudoOptions{Redactor: red})
		}
		hosts[name] = h
	}
	airgap := make([]byte, 3<<20)
	rand.Read(airgap)
	b := steptest.WriteBundle(t, nil,
		steptest.File{File: bundle.File{Path: "bin/k3s", Kind: bundle.KindBinary}, Content: []byte(fakeK3s)},
		steptest.File{File: bundle.File{Path: "airgap/k3s-airgap-images-amd64.tar.zst", Kind: bundle.KindAirgap}, Content: airgap})

	cl := cluster
	th1, _ := c.Host(1)
	cl.Endpoint, cl.APIServerSANs = th1.Addr+":6443", nil
	s1 := k3s.Init{Cluster: cl, Node: kube.Node{Name: "s1", Address: th1.Addr, Taints: cpTaint}}
	th2, _ := c.Host(2)
	a1 := k3s.JoinAgent{Cluster: cl, Via: "s1", Node: kube.Node{Name: "a1", Address: th2.Addr, Labels: map[string]string{"tier": "web"}}}
	target := func(name string, needs facts.Request) step.Target {
		f, err := facts.Gather(ctx, hosts[name], needs)
		if err != nil {
			t.Fatalf("%s: facts: %v", name, err)
		}
		return step.Target{Host: hosts[name], Facts: f, Bundle: b, Redactor: red, Peers: hosts}
	}
	converge := func(name string, op step.Op, needs facts.Request, want step.Action) step.Change {
		t.Helper()
		ch, err := op.Check(ctx, target(name, needs))
		if err != nil || ch.Action != want {
			t.Fatalf("%s: check: want %s, got\n%s", name, want, steptest.Report(op, ch, err))
		}
		start := time.Now()
		if err := op.Apply(ctx, target(name, needs)); err != nil {
			t.Fatalf("%s: apply %s: %v", name, op.Kind(), err)
		}
		t.Logf("%s: %s applied in %s:\n%s", name, op.Kind(), time.Since(start).Round(time.Millisecond), steptest.Report(op, ch, nil))
		if ch2, err := op.Check(ctx, target(name, needs)); err != nil || ch2.Action != step.ActionNone {
			t.Errorf("%s: re-check after apply: %s", name, steptest.Report(op, ch2, err))
		}
		return ch
	}

	for name, role := range map[string]string{"s1": k3s.RoleServer, "a1": k3s.RoleAgent} {
		op := k3s.Install{Version: "1.34.2+k3s1", Source: "bundle", Role: role}
		converge(name, op, op.Needs(), step.ActionCreate)
		// The stand-in cannot tell systemd it is ready (Type=notify): a
		// test-only drop-in makes its unit a simple one.
		unit := strings.TrimSuffix(k3s.UnitDir+"/k3s.service", ".service")
		if role == k3s.RoleAgent {
			unit += "-agent"
		}
		if err := hosts[name].Run(ctx, host.Cmd{Line: "mkdir -p " + unit + ".service.d && printf '[Service]\\nType=simple\\n' >" + unit + ".service.d/10-test.conf && systemctl daemon-reload"}); err != nil {
			t.Fatal(err)
		}
	}
	// systemd's own check of the unit clusterctl wrote.
	if out, err := c.Exec(ctx, 1, "systemd-analyze verify /etc/systemd/system/k3s.service 2>&1; echo rc=$?"); err != nil || !strings.HasSuffix(strings.TrimSpace(out), "rc=0") {
		t.Errorf("systemd-analyze verify k3s.service: %v\n%s", err, out)
	} else if strings.TrimSpace(out) != "rc=0" {
		t.Logf("systemd-analyze verify k3s.service:\n%s", out)
	}

	ch := converge("s1", s1, facts.Request{}, step.ActionCreate)
	t.Logf("s1 note: %s", ch.Note)
	converge("a1", a1, facts.Request{}, step.ActionCreate)
	token, err := c.Exec(ctx, 1, "cat /var/lib/rancher/k3s/server/token")
	token = strings.TrimSpace(token)
	if err != nil || !strings.HasPrefix(token, "K10") {
		t.Fatalf("s1's token: %v %q", err, token)
	}
	if red.Redact(token) == token {
		t.Error("the agent token read from s1 is not registered for redaction")
	}
	got, err := c.Exec(ctx, 2, "stat -c '%a %U' /etc/rancher/k3s/token /etc/rancher/k3s/config.yaml; cat /etc/rancher/k3s/token; grep -c K10 /etc/rancher/k3s/config.yaml || true; systemctl is-active k3s-agent")
	if want := fmt.Sprintf("600 root\n600 root\n%s\n0\nactive\n", token); err != nil || got != want {
		t.Errorf("a1: got\n%s\nwant\n%s(%v)", got, want, err)
	}
	cfg, _ := c.Exec(ctx, 2, "cat /etc/rancher/k3s/config.yaml")
	if !strings.Contains(cfg, `snapshotter: "native"`) {
		t.Errorf("a1's data directory is on the test hosts' overlay root, but config.yaml keeps the overlayfs snapshotter:\n%s", cfg)
	}
	t.Logf("a1 config.yaml:\n%s", cfg)

	// A config change restarts k3s-agent on a1 and nothing on s1.
	before, _ := c.Exec(ctx, 1, "systemctl show -p ActiveEnterTimestampMonotonic k3s")
	agentBefore, _ := c.Exec(ctx, 2, "systemctl show -p ActiveEnterTimestampMonotonic k3s-agent")
	a1.Cluster.ProxyMode = "ipvs"
	ch = converge("a1", a1, facts.Request{}, step.ActionUpdate)
	if len(ch.Diff) != 1 || ch.Diff[0].Key != "config.yaml kube-proxy-arg" || !strings.HasPrefix(ch.Diff[0].To, "proxy-mode=ipvs") || !strings.Contains(ch.Note, "restarts k3s-agent.service on a1 only") {
		t.Errorf("config change: %s", steptest.Report(a1, ch, nil))
	}
	after, _ := c.Exec(ctx, 1, "systemctl show -p ActiveEnterTimestampMonotonic k3s")
	agentAfter, _ := c.Exec(ctx, 2, "systemctl show -p ActiveEnterTimestampMonotonic k3s-agent")
	if before != after || agentBefore == agentAfter {
		t.Errorf("restarts: s1 %q -> %q (want unchanged), a1 %q -> %q (want restarted)", before, after, agentBefore, agentAfter)
	}
	if ch, err := s1.Check(ctx, target("s1", facts.Request{})); err != nil || ch.Action != step.ActionNone {
		t.Errorf("s1 after a1's change: %s", steptest.Report(s1, ch, err))
	}
}
