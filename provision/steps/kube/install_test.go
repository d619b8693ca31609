package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var install = kube.Install{Distribution: "kubeadm", Version: "1.34.10", Source: "bundle", NodeIP: "172.31.10.12"}

// expectProbe answers install's node probe: kubectl's version ("" when
// absent), the host's resolv.conf and whether systemd-resolved runs.
func expectProbe(h *hosttest.Fake, kubectl, resolv string, resolved bool) *hosttest.Expectation {
	out := ""
	if kubectl != "" {
		out = `{"clientVersion": {"gitVersion": "v` + kubectl + `"}}`
	}
	out += "\n@@resolv.conf\n" + resolv + "\n@@resolved\n"
	if resolved {
		out += "active\n"
	} else {
		out += "inactive\n"
	}
	return h.ExpectFunc("install probe", func(l string) bool {
		return strings.HasPrefix(l, "kubectl version --client -o json 2>/dev/null; echo; echo @@resolv.conf;")
	}).Stdout(out)
}

const publicResolv = "# from DHCP\nnameserver 192.0.2.53\nsearch example.net\n"

// TestInstallFresh: a prepared host without Kubernetes gets the binaries,
// the unit files and an enabled kubelet; a second Apply on the result
// uploads nothing; the facts of the result check as unchanged.
func TestInstallFresh(t *testing.T) {
	ctx := context.Background()
	b := testBundle(t)
	h := newNode(t, "h2")
	expectProbe(h, "", publicResolv, false).Times(3)
	ch, err := install.Check(ctx, step.Target{Host: h, Facts: freshFacts("h2"), Bundle: b})
	check := steptest.Report(install, ch, err)
	if ch.Action != step.ActionCreate {
		t.Errorf("fresh host: action %s, want create", ch.Action)
	}
	h.Expect("systemctl daemon-reload && systemctl enable --quiet kubelet.service && systemctl try-restart kubelet.service")
	if err := install.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h2"), Bundle: b}); err != nil {
		t.Fatal(err)
	}
	first := h.Transcript()
	for _, p := range []string{"/usr/bin/kubelet", "/usr/bin/kubeadm", "/usr/bin/kubectl", "/opt/cni/bin/flannel"} {
		if f, ok := h.File(p); !ok || f.Mode.Perm() != 0o755 || f.Owner != "root" {
			t.Errorf("%s: %+v, want mode 0755 owned by root", p, f)
		}
	}
	if f, _ := h.File("/etc/default/kubelet"); !strings.Contains(string(f.Content), "KUBELET_EXTRA_ARGS=--node-ip=172.31.10.12\n") {
		t.Errorf("/etc/default/kubelet:\n%s", f.Content)
	}

	// Idempotent: the same host again uploads and restarts nothing.
	h.Expect("systemctl enable --quiet kubelet.service")
	if err := install.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h2"), Bundle: b}); err != nil {
		t.Fatal(err)
	}
	second := strings.TrimPrefix(h.Transcript(), first)
	if strings.Contains(second, "upload:") {
		t.Errorf("second Apply uploaded:\n%s", second)
	}

	// The probe's view of the result: nothing to do.
	f := freshFacts("h2")
	f.Kubelet, f.Kubeadm = "1.34.10", "1.34.10"
	for _, p := range []string{kube.UnitFile, kube.DropInFile, kube.DefaultsFile, kube.FlannelCNI} {
		file, _ := h.File(p)
		f.Files[p] = sum(file.Content)
	}
	f.Services["kubelet"] = "enabled/inactive"
	expectProbe(h, "1.34.10", publicResolv, false)
	ch2, err := install.Check(ctx, step.Target{Host: h, Facts: f, Bundle: b})
	if err != nil || ch2.Action != step.ActionNone {
		t.Errorf("converged host: %s", steptest.Report(install, ch2, err))
	}
	steptest.Golden(t, "install-fresh", steptest.Section("check", check), steptest.Section("check and apply transcript", first), steptest.Section("apply again", second))
}

// TestInstallUpgrade: an older kubelet is replaced and, running, restarted.
func TestInstallUpgrade(t *testing.T) {
	ctx := context.Background()
	b := testBundle(t)
	h := newNode(t, "h1")
	f := freshFacts("h1")
	f.Kubelet, f.Kubeadm = "1.33.13", "1.33.13"
	f.Services["kubelet"] = "enabled/active"
	expectProbe(h, "1.33.13", publicResolv, false)
	ch, err := install.Check(ctx, step.Target{Host: h, Facts: f, Bundle: b})
	if ch.Action != step.ActionUpdate {
		t.Errorf("action %s, want update", ch.Action)
	}
	steptest.Golden(t, "install-upgrade-check", steptest.Report(install, ch, err))
}

func TestInstallErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		op   kube.Install
		skip []string
		want string
		is   error
	}{
		{name: "online", op: kube.Install{Distribution: "kubeadm", Version: "1.34.10", Source: "online"},
			want: "kubelet 1.34.10 is needed: online Kubernetes packages are not supported yet", is: kube.ErrOnlineUnsupported},
		{name: "k3s", op: kube.Install{Distribution: "k3s", Version: "1.34.10+k3s1", Source: "bundle"}, is: kube.ErrK3sUnsupported},
		{name: "no kubeadm in bundle", op: install, skip: []string{"bin/kubeadm"}, want: "has no bin/kubeadm (kubeadm)"},
		{name: "bad node IP", op: kube.Install{Distribution: "kubeadm", Version: "1.34.10", Source: "bundle", NodeIP: "1.2.3.4\nX=y"}, want: "is not an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newNode(t, "h1")
			expectProbe(h, "", publicResolv, false).AnyTimes()
			_, err := tc.op.Check(ctx, step.Target{Host: h, Facts: freshFacts("h1"), Bundle: testBundle(t, tc.skip...)})
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("Check: %v, want %q", err, tc.want)
			}
			if tc.name == "online" || tc.name == "k3s" {
				h.ExpectFunc("versions", func(l string) bool { return strings.Contains(l, "--version") }).AnyTimes()
				if err := tc.op.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h1")}); !errors.Is(err, tc.is) {
					t.Errorf("Apply: %v, want %v", err, tc.is)
				}
			}
		})
	}
}

// TestInstallOnlinePreinstalled: online mode accepts binaries already at
// the version and manages only the unit files.
func TestInstallOnlinePreinstalled(t *testing.T) {
	ctx := context.Background()
	op := kube.Install{Distribution: "kubeadm", Version: "1.34.10", Source: "online"}
	h := newNode(t, "h1")
	f := freshFacts("h1")
	f.Kubelet, f.Kubeadm = "1.34.10", "1.34.10"
	expectProbe(h, "1.34.10", publicResolv, false).Times(2)
	ch, err := op.Check(ctx, step.Target{Host: h, Facts: f})
	if err != nil || ch.Action != step.ActionUpdate || len(ch.Diff) != 4 {
		t.Errorf("Check: %s", steptest.Report(op, ch, err))
	}
	h.Expect("kubelet --version 2>/dev/null; kubeadm version -o short 2>/dev/null; true").Stdout("Kubernetes v1.34.10\nv1.34.10\n")
	h.Expect("systemctl daemon-reload && systemctl enable --quiet kubelet.service && systemctl try-restart kubelet.service")
	if err := op.Apply(ctx, step.Target{Host: h, Facts: f}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h.Transcript(), "/usr/bin/kubelet mode") {
		t.Error("online mode uploaded a binary")
	}
}

func TestInstallOffline(t *testing.T) {
	ch, err := install.Check(context.Background(), step.Target{})
	if err != nil || ch.Action != step.ActionCreate || len(ch.Diff) == 0 {
		t.Errorf("offline: %s", steptest.Report(install, ch, err))
	}
	if n := install.Needs(); len(n.Files) != 6 {
		t.Errorf("Needs: %+v", n)
	}
}

// TestInstallLoopbackResolver: a host whose resolv.conf names only
// loopback resolvers gets a kubelet resolv.conf naming its own address;
// with systemd-resolved (kubeadm's own case) or a real resolver, none.
func TestInstallLoopbackResolver(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, resolv string
		resolved     bool
		want         string
	}{
		{name: "loopback", resolv: "nameserver 127.0.0.1\nsearch lab.example\noptions ndots:2\n",
			want: "nameserver 172.31.10.12\nsearch lab.example\noptions ndots:2\n"},
		{name: "ipv6-loopback", resolv: "nameserver ::1\n", want: "nameserver 172.31.10.12\n"},
		{name: "empty", resolv: "", want: "nameserver 172.31.10.12\n"},
		{name: "systemd-resolved", resolv: "nameserver 127.0.0.53\n", resolved: true},
		{name: "mixed", resolv: "nameserver 127.0.0.1\nnameserver 10.0.0.2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newNode(t, "h2")
			expectProbe(h, "", tc.resolv, tc.resolved)
			h.ExpectFunc("systemctl", func(l string) bool { return strings.HasPrefix(l, "systemctl ") })
			if err := install.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h2"), Bundle: testBundle(t)}); err != nil {
				t.Fatal(err)
			}
			f, ok := h.File(kube.KubeletResolvConf)
			defaults, _ := h.File(kube.DefaultsFile)
			if tc.want == "" {
				if ok || strings.Contains(string(defaults.Content), "--resolv-conf") {
					t.Errorf("kubelet resolv.conf written:\n%s\n%s", f.Content, defaults.Content)
				}
				return
			}
			if !strings.HasSuffix(string(f.Content), tc.want) {
				t.Errorf("kubelet resolv.conf:\n%s\nwant it to end with:\n%s", f.Content, tc.want)
			}
			if !strings.Contains(string(defaults.Content), "KUBELET_EXTRA_ARGS=--node-ip=172.31.10.12 --resolv-conf=/etc/kubernetes/kubelet-resolv.conf\n") {
				t.Errorf("defaults:\n%s", defaults.Content)
			}
		})
	}
}

// TestInstallPreinstalledNotInBundle: a binary the bundle lacks but the
// host has (at the spec's version, as Check saw) is left alone.
func TestInstallPreinstalledNotInBundle(t *testing.T) {
	ctx := context.Background()
	h := newNode(t, "h1")
	h.SetFile("/usr/bin/kubeadm", []byte("kubeadm installed by hand\n"), 0o755)
	f := freshFacts("h1")
	f.Kubeadm = "1.34.10"
	expectProbe(h, "", publicResolv, false).Times(2)
	b := testBundle(t, "bin/kubeadm")
	if ch, err := install.Check(ctx, step.Target{Host: h, Facts: f, Bundle: b}); err != nil || ch.Action != step.ActionCreate {
		t.Fatalf("Check: %s", steptest.Report(install, ch, err))
	}
	h.ExpectFunc("systemctl", func(l string) bool { return strings.HasPrefix(l, "systemctl ") })
	if err := install.Apply(ctx, step.Target{Host: h, Facts: f, Bundle: b}); err != nil {
		t.Fatal(err)
	}
	if k, _ := h.File("/usr/bin/kubeadm"); string(k.Content) != "kubeadm installed by hand\n" {
		t.Errorf("kubeadm replaced: %q", k.Content)
	}
	// Without it on the host, the bundle's gap is the error.
	h2 := newNode(t, "h2")
	expectProbe(h2, "", publicResolv, false)
	if err := install.Apply(ctx, step.Target{Host: h2, Facts: freshFacts("h2"), Bundle: b}); err == nil || !strings.Contains(err.Error(), "has no bin/kubeadm") {
		t.Errorf("error %v", err)
	}
}
