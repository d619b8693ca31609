package kube_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// Answers to the residue probe, as real hosts gave them.
const (
	// A worker of a running cluster.
	residueWorker = "kubelet active enabled\nfile /etc/kubernetes/kubelet.conf\ndir /etc/kubernetes/pki 1\ndir /etc/kubernetes/clusterctl 0\n" +
		"dir /var/lib/kubelet 15\ndir /etc/cni/net.d 1\ndir /run/flannel 1\nmounts 2\nlink flannel.1\nchains iptables 35\nchains ip6tables 17\n" +
		"containers 6\nnetns 0\n"
	// A control plane of a running cluster.
	residueControlPlane = "kubelet active enabled\nfile /etc/kubernetes/admin.conf\nfile /etc/kubernetes/super-admin.conf\nfile /etc/kubernetes/kubelet.conf\n" +
		"file /etc/kubernetes/controller-manager.conf\nfile /etc/kubernetes/scheduler.conf\ndir /etc/kubernetes/pki 15\ndir /etc/kubernetes/manifests 4\n" +
		"dir /var/lib/etcd 1\ndir /var/lib/kubelet 15\ndir /etc/cni/net.d 1\ndir /run/flannel 1\nmounts 4\nlink cni0\nlink flannel.1\n" +
		"chains iptables 37\nchains ip6tables 17\ncontainers 14\nnetns 2\n"
	// A reset host: the unit is there, disabled; empty directories left.
	residueNone = "kubelet inactive disabled\ndir /etc/cni/net.d 0\ndir /var/lib/kubelet 0\ndir /var/lib/etcd 0\nmounts 0\nchains iptables 0\nchains ip6tables 0\ncontainers 0\nnetns 0\n"
	// A prepared host whose kubelet waits for kubeadm (crash-looping).
	residuePrepared = "kubelet activating enabled\nmounts 0\nchains iptables 0\nchains ip6tables 0\ncontainers 0\nnetns 0\n"
)

func isResidueProbe(l string) bool {
	return strings.HasPrefix(l, `echo "kubelet $(systemctl is-active`)
}

func TestResetCheck(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, probe string
		op          kube.Reset
		want        step.Action
		golden      string
	}{
		{name: "worker", probe: residueWorker, want: step.ActionDelete, golden: "reset-check-worker"},
		{name: "control plane leaving", probe: residueControlPlane, op: kube.Reset{ControlPlane: true, RemoveEtcdMember: true}, want: step.ActionDelete, golden: "reset-check-control-plane"},
		{name: "reset host", probe: residueNone, want: step.ActionNone},
		{name: "prepared host", probe: residuePrepared, want: step.ActionDelete},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hosttest.NewFake(t, "h1")
			h.ExpectFunc("probe", isResidueProbe).Stdout(tc.probe)
			ch, err := tc.op.Check(ctx, step.Target{Host: h, Facts: freshFacts("h1")})
			if err != nil || ch.Action != tc.want {
				t.Fatalf("Check: %s", steptest.Report(tc.op, ch, err))
			}
			if tc.golden != "" {
				steptest.Golden(t, tc.golden, steptest.Report(tc.op, ch, err))
			}
		})
	}
}

func TestResetApply(t *testing.T) {
	ctx := context.Background()
	h := hosttest.NewFake(t, "h2")
	h.ExpectFunc("probe before", isResidueProbe).Stdout(residueWorker)
	var script string
	h.Expect("sh -s -- unix:///run/containerd/containerd.sock /var/log/clusterctl keep-member").Do(func(_ context.Context, cmd host.Cmd) error {
		b, err := io.ReadAll(cmd.Stdin)
		script = string(b)
		return err
	})
	h.ExpectFunc("probe after", isResidueProbe).Stdout(residueNone)
	op := kube.Reset{}
	if err := op.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h2")}); err != nil {
		t.Fatal(err)
	}
	// The script reads completely before it runs, and keeps what a
	// prepared host needs.
	if !strings.HasSuffix(script, "reset_node \"$@\" </dev/null\n") {
		t.Errorf("the script does not end by running its one function with stdin from /dev/null:\n%s", script)
	}
	for _, keep := range []string{"/usr/bin", "/etc/containerd", "/etc/sysctl.d", "/etc/kubernetes/kubelet-resolv.conf", "images rm", "/etc/default/kubelet"} {
		if strings.Contains(script, keep) {
			t.Errorf("the reset script touches %s, which a prepared host keeps", keep)
		}
	}
	steptest.Golden(t, "reset-apply-worker", h.Transcript())
}

func TestResetApplyNoop(t *testing.T) {
	h := hosttest.NewFake(t, "h2")
	h.ExpectFunc("probe", isResidueProbe).Stdout(residueNone)
	if err := (kube.Reset{}).Apply(context.Background(), step.Target{Host: h, Facts: freshFacts("h2")}); err != nil {
		t.Fatal(err)
	}
}

func TestResetApplyLeftovers(t *testing.T) {
	h := hosttest.NewFake(t, "h2")
	h.ExpectFunc("probe before", isResidueProbe).Stdout(residueWorker)
	h.ExpectFunc("script", func(l string) bool { return strings.HasPrefix(l, "sh -s -- ") }).Stderr("reset: cannot unmount /var/lib/kubelet/pods/x\n")
	h.ExpectFunc("probe after", isResidueProbe).Stdout("kubelet inactive disabled\nmounts 1\ndir /var/lib/kubelet 1\n")
	err := (kube.Reset{}).Apply(context.Background(), step.Target{Host: h, Facts: freshFacts("h2")})
	want := "reset h2: still there afterwards: /var/lib/kubelet (1 entry); mounts under /var/lib/kubelet (1); the reset said: reset: cannot unmount /var/lib/kubelet/pods/x"
	if err == nil || err.Error() != want {
		t.Errorf("error\n got %v\nwant %s", err, want)
	}
}

func TestResetRemovesMember(t *testing.T) {
	h := hosttest.NewFake(t, "h2")
	h.ExpectFunc("probe", isResidueProbe).Stdout(residueControlPlane)
	h.Expect("sh -s -- unix:///run/containerd/containerd.sock /var/log/clusterctl remove-member")
	h.ExpectFunc("probe", isResidueProbe).Stdout(residueNone)
	if err := (kube.Reset{ControlPlane: true, RemoveEtcdMember: true}).Apply(context.Background(), step.Target{Host: h, Facts: freshFacts("h2")}); err != nil {
		t.Fatal(err)
	}
}

func TestResidueGarbage(t *testing.T) {
	for _, out := range []string{"dir /var/lib/etcd many\n", "surprise\n", "containers -1\n"} {
		h := hosttest.NewFake(t, "h1")
		h.ExpectFunc("probe", isResidueProbe).Stdout(out)
		if _, err := kube.ProbeResidue(context.Background(), h); err == nil {
			t.Errorf("%q accepted", out)
		}
	}
}

func TestResetOffline(t *testing.T) {
	op := kube.Reset{ControlPlane: true}
	ch, err := op.Check(context.Background(), step.Target{})
	if err != nil || ch.Action != step.ActionDelete || len(ch.Diff) != 1 {
		t.Errorf("offline Check: %s", steptest.Report(op, ch, err))
	}
}

func TestDeleteNode(t *testing.T) {
	ctx := context.Background()
	cp := hosttest.NewFake(t, "h1")
	get := "kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=10s get node h3 -o name --ignore-not-found"
	cp.Expect(get).Stdout("node/h3\n").Times(2)
	cp.Expect("kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=70s delete node h3 --ignore-not-found --wait=true --timeout=60s")
	cp.Expect(get)
	op := kube.DeleteNode{Node: "h3", Via: "h1"}
	tg := step.Target{Host: cp, Facts: freshFacts("h1"), Peers: map[string]host.Host{"h1": cp}}
	ch, err := op.Check(ctx, tg)
	if err != nil || ch.Action != step.ActionDelete {
		t.Fatalf("Check: %s", steptest.Report(op, ch, err))
	}
	if err := op.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if ch, err := op.Check(ctx, tg); err != nil || ch.Action != step.ActionNone {
		t.Errorf("Check after: %s", steptest.Report(op, ch, err))
	}
	if _, err := (kube.DeleteNode{Node: "h3; reboot", Via: "h1"}).Check(ctx, tg); err == nil {
		t.Error("hostile node name accepted")
	}
}

// kube-proxy's nftables tables are residue too, named in the plan; a host
// without them (or without nft) has nothing to say about nftables.
func TestResidueNftables(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("probe", isResidueProbe).Stdout("kubelet inactive disabled\nchains iptables 0\nchains nftables 2\n")
	r, err := kube.ProbeResidue(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if !r.ClusterState() {
		t.Error("two kube-proxy tables are not cluster state")
	}
	var got []string
	for _, d := range r.Diff() {
		got = append(got, d.Key+": "+d.From+" -> "+d.To)
	}
	if want := "nftables: 2 kube-proxy tables -> (removed)"; strings.Join(got, "\n") != want {
		t.Errorf("diff %q, want %q", got, want)
	}
	h = hosttest.NewFake(t, "h1")
	h.ExpectFunc("probe", isResidueProbe).Stdout(residueNone + "chains nftables 0\n")
	if r, err := kube.ProbeResidue(context.Background(), h); err != nil || !r.Empty() {
		t.Errorf("no tables: residue %+v, error %v; want empty", r, err)
	}
}
