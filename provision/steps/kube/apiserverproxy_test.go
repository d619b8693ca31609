package kube_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// proxyOp is what the planner emits for a node of a 3+1 node-local cluster.
var proxyOp = kube.APIServerProxy{Cluster: "e2e", Listen: "127.0.0.1:7443", Backends: []kube.Backend{
	{Name: "h1", Address: "172.31.13.11:6443"}, {Name: "h2", Address: "172.31.13.12:6443"}, {Name: "h3", Address: "172.31.13.13:6443"},
}}

// debianDefault stands for the haproxy.cfg Debian's package installs.
const debianDefault = "global\n\tlog /dev/log\tlocal0\n\tdaemon\n"

const (
	validateCmd = `if out=$(haproxy -c -q -f /etc/haproxy/haproxy.cfg.clusterctl-new 2>&1); then mv -f -- /etc/haproxy/haproxy.cfg.clusterctl-new /etc/haproxy/haproxy.cfg; else rm -f -- /etc/haproxy/haproxy.cfg.clusterctl-new; printf '%s\n' "$out" >&2; exit 1; fi`
	waitTail    = ` && { end=$(( $(date +%s) + 10 )); until ss -Hltn 'sport = :7443' | grep -q .; do if [ $(date +%s) -ge $end ]; then echo 'haproxy does not listen on 127.0.0.1:7443:' >&2; journalctl -u haproxy.service -n 20 --no-pager >&2; exit 1; fi; sleep 0.5; done; }`
	reloadCmd   = "systemctl enable --quiet haproxy.service && systemctl reload-or-restart haproxy.service" + waitTail
	startCmd    = "systemctl enable --quiet haproxy.service && systemctl start haproxy.service" + waitTail
)

// proxyNode is a node after hostprep/packages installed haproxy with
// Debian's config; its `haproxy -c` accepts (or rejects) the new config
// and the rename happens in the fake's filesystem.
func proxyNode(t *testing.T, accept bool) *hosttest.Fake {
	h := newNode(t, "h4")
	h.SetFile(kube.HAProxyConfig, []byte(debianDefault), 0o644)
	h.ExpectFunc("command -v haproxy", func(l string) bool { return l == "command -v haproxy >/dev/null" }).AnyTimes()
	v := h.ExpectFunc("haproxy -c", func(l string) bool { return l == validateCmd })
	if accept {
		v.Do(func(_ context.Context, _ host.Cmd) error {
			f, _ := h.File(kube.HAProxyConfig + ".clusterctl-new")
			h.SetFile(kube.HAProxyConfig, f.Content, f.Mode)
			return nil
		}).AnyTimes()
	} else {
		v.Stderr("[ALERT]    (1) : config : parsing [/etc/haproxy/haproxy.cfg.clusterctl-new:42] : unknown keyword 'bogus'\n").Exit(1)
	}
	return h
}

func proxyFacts(h *hosttest.Fake) *step.Target {
	f := freshFacts("h4")
	f.Packages = map[string]string{"haproxy": "2.6.12-1+deb12u4"}
	cfg, _ := h.File(kube.HAProxyConfig)
	f.Files[kube.HAProxyConfig] = sum(cfg.Content)
	f.Services["haproxy"] = "enabled/active"
	return &step.Target{Host: h, Facts: f}
}

// TestAPIServerProxy: the packaged default config is replaced (checked by
// haproxy -c, renamed into place) and haproxy reloaded; a second Apply
// writes nothing and only makes sure it runs; the result checks as
// unchanged. The rendered haproxy.cfg is pinned.
func TestAPIServerProxy(t *testing.T) {
	ctx := context.Background()
	h := proxyNode(t, true)
	ch, err := proxyOp.Check(ctx, *proxyFacts(h))
	check := steptest.Report(proxyOp, ch, err)
	if ch.Action != step.ActionUpdate {
		t.Errorf("packaged config: %s, want update", check)
	}
	h.Expect(reloadCmd)
	if err := proxyOp.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h4")}); err != nil {
		t.Fatal(err)
	}
	first := h.Transcript()
	if up, _ := h.File(kube.HAProxyConfig + ".clusterctl-new"); up.Mode.Perm() != 0o644 || up.Owner != "root" || up.Group != "root" {
		t.Errorf("haproxy.cfg uploaded with mode %o owner %s:%s, want 0644 root:root", up.Mode.Perm(), up.Owner, up.Group)
	}
	cfg, _ := h.File(kube.HAProxyConfig)
	for _, want := range []string{"\tbind 127.0.0.1:7443\n", "\tserver h1 172.31.13.11:6443\n", "\tserver h3 172.31.13.13:6443\n", "http-check send meth GET uri /readyz\n"} {
		if !strings.Contains(string(cfg.Content), want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	steptest.Golden(t, "haproxy.cfg", string(cfg.Content))

	h.Expect(startCmd)
	if err := proxyOp.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h4")}); err != nil {
		t.Fatal(err)
	}
	second := strings.TrimPrefix(h.Transcript(), first)
	if strings.Contains(second, "upload:") || strings.Contains(second, "reload") {
		t.Errorf("second Apply wrote or reloaded:\n%s", second)
	}
	again, err := proxyOp.Check(ctx, *proxyFacts(h))
	if err != nil || again.Action != step.ActionNone {
		t.Errorf("converged node: %s, want none", steptest.Report(proxyOp, again, err))
	}
	steptest.Golden(t, "apiserver-proxy", steptest.Section("check", check), steptest.Section("apply", first),
		steptest.Section("apply again", second), steptest.Section("check again", steptest.Report(proxyOp, again, err)))
}

// A config haproxy rejects never replaces the working one, and nothing is
// reloaded.
func TestAPIServerProxyRejected(t *testing.T) {
	h := proxyNode(t, false)
	err := proxyOp.Apply(context.Background(), step.Target{Host: h, Facts: freshFacts("h4")})
	if err == nil || !strings.Contains(err.Error(), "haproxy rejected the rendered /etc/haproxy/haproxy.cfg (the old one is kept)") ||
		!strings.Contains(err.Error(), "unknown keyword 'bogus'") {
		t.Fatalf("error %v, want haproxy's rejection", err)
	}
	if cfg, _ := h.File(kube.HAProxyConfig); string(cfg.Content) != debianDefault {
		t.Errorf("haproxy.cfg replaced by a rejected config:\n%s", cfg.Content)
	}
	steptest.Golden(t, "apiserver-proxy-rejected", h.Transcript(), "error: "+err.Error()+"\n")
}

func TestAPIServerProxyNotInstalled(t *testing.T) {
	h := newNode(t, "h4")
	h.Expect("command -v haproxy >/dev/null").Exit(1)
	err := proxyOp.Apply(context.Background(), step.Target{Host: h})
	if !errors.Is(err, kube.ErrProxyNotInstalled) || !strings.Contains(err.Error(), "hostprep/packages installs it") {
		t.Errorf("error %v, want ErrProxyNotInstalled naming hostprep/packages", err)
	}
	// The check says so too (facts: no haproxy package, no config, no unit).
	ch, err := proxyOp.Check(context.Background(), step.Target{Host: h, Facts: freshFacts("h4")})
	if err != nil || ch.Action != step.ActionCreate {
		t.Fatalf("check: %s", steptest.Report(proxyOp, ch, err))
	}
	steptest.Golden(t, "apiserver-proxy-absent", steptest.Report(proxyOp, ch, nil))
}

func TestAPIServerProxyOffline(t *testing.T) {
	ch, err := proxyOp.Check(context.Background(), step.Target{})
	if err != nil || ch.Action != step.ActionCreate || len(ch.Diff) != 1 ||
		ch.Diff[0].To != "h1 172.31.13.11:6443, h2 172.31.13.12:6443, h3 172.31.13.13:6443" {
		t.Errorf("offline: %s", steptest.Report(proxyOp, ch, err))
	}
}

func TestAPIServerProxyInvalid(t *testing.T) {
	for name, mod := range map[string]func(o *kube.APIServerProxy){
		"listen not loopback": func(o *kube.APIServerProxy) { o.Listen = "0.0.0.0:7443" },
		"listen no port":      func(o *kube.APIServerProxy) { o.Listen = "127.0.0.1" },
		"no backends":         func(o *kube.APIServerProxy) { o.Backends = nil },
		"backend name":        func(o *kube.APIServerProxy) { o.Backends[0].Name = "h1\n\tserver evil 10.0.0.1:6443" },
		"duplicate name":      func(o *kube.APIServerProxy) { o.Backends[1].Name = "h1" },
		"backend address":     func(o *kube.APIServerProxy) { o.Backends[2].Address = "172.31.13.13" },
		"address injection":   func(o *kube.APIServerProxy) { o.Backends[2].Address = "172.31.13.13:6443 backup" },
		"cluster name":        func(o *kube.APIServerProxy) { o.Cluster = "e2e\nglobal" },
	} {
		o := proxyOp
		o.Backends = append([]kube.Backend{}, o.Backends...)
		mod(&o)
		if _, err := o.Check(context.Background(), step.Target{}); err == nil {
			t.Errorf("%s: invalid op accepted", name)
		}
		if err := o.Apply(context.Background(), step.Target{Host: hosttest.NewFake(t, "h4")}); err == nil {
			t.Errorf("%s: invalid op applied", name)
		}
	}
}

// The rendered config passes the real haproxy's check where haproxy (and
// its user, which the config names) is installed on this machine; e2e
// TestClusterHA runs it on every node for real.
func TestAPIServerProxyConfigHAProxyAccepts(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed here; the e2e (TestClusterHA) checks the config with the hosts' haproxy")
	}
	if _, err := user.Lookup("haproxy"); err != nil {
		t.Skip("no haproxy user here (haproxy not installed from its package)")
	}
	cfg, err := proxyOp.Render()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", p).CombinedOutput(); err != nil || strings.Contains(string(out), "WARNING") {
		t.Errorf("haproxy -c: %v\n%s", err, out)
	}
}

// Behind the node-local proxy, the kubeadm config points every node at it
// and the API server's certificate names the loopback addresses.
func TestInitNodeLocal(t *testing.T) {
	o := initOp
	o.Cluster.Endpoint, o.Cluster.EndpointMode = "127.0.0.1:7443", "node-local"
	h := newNode(t, "h1")
	h.ExpectFunc("probe", isProbe).Stdout(probeFresh)
	h.Expect("install -d -m 0700 -- /etc/kubernetes/clusterctl /var/log/clusterctl")
	h.ExpectFunc("kubeadm init", func(l string) bool { return strings.Contains(l, "kubeadm init --config") })
	h.ExpectFunc("wait for the API", func(l string) bool {
		return strings.Contains(l, "until kubectl --kubeconfig=/etc/kubernetes/admin.conf")
	})
	if err := o.Apply(context.Background(), step.Target{Host: h, Facts: freshFacts("h1"), Bundle: testBundle(t), Redactor: host.NewRedactor()}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := h.File("/etc/kubernetes/clusterctl/kubeadm-init.yaml")
	for _, want := range []string{`controlPlaneEndpoint: "127.0.0.1:7443"`, "  bindPort: 6443\n",
		"  certSANs:\n  - \"api.example.net\"\n  - \"127.0.0.1\"\n  - \"localhost\"\n"} {
		if !strings.Contains(string(cfg.Content), want) {
			t.Errorf("init config lacks %q:\n%s", want, cfg.Content)
		}
	}
}
