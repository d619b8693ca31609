package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var joinWorker = kube.JoinWorker{Cluster: cluster, Via: "h1", Node: kube.Node{Name: "h2", Address: "172.31.10.12",
	Labels: map[string]string{"clusterctl.dev/pool": "apps", "tier": "web"}}}

var joinCP = kube.JoinControlPlane{Cluster: cluster, Via: "h1", Node: kube.Node{Name: "h4", Address: "172.31.10.14",
	Taints: []kube.Taint{{Key: kube.ControlPlaneTaint, Effect: "NoSchedule"}}}}

const (
	testToken   = "x7k2qa.9mfz4t1cw8bd0e3h"
	testCertKey = "7f3c1a9e2b4d6f80a1c3e5f70921b3d5e7f9a1c3e5d7b9f1a3c5e7d9b1f3a5c7"
)

// firstCP is the control plane joins go through: it makes the token (and
// for control planes the certificate key) and lists nodes.
func firstCP(t *testing.T, red *host.Redactor, ca []byte, nodes string) *hosttest.Fake {
	cp := redacting(t, "h1", red)
	cp.SetFile(kube.CACert, ca, 0o644)
	cp.ExpectFunc("token create", func(l string) bool { return strings.HasPrefix(l, "kubeadm token create --ttl 15m ") }).Stdout(testToken + "\n").AnyTimes()
	cp.ExpectFunc("upload certs", func(l string) bool { return l == "kubeadm init phase upload-certs --upload-certs" }).
		Stdout("[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace\n[upload-certs] Using certificate key:\n" + testCertKey + "\n").AnyTimes()
	cp.ExpectFunc("wait for the node", func(l string) bool { return strings.Contains(l, "get node ") }).AnyTimes()
	cp.ExpectFunc("token delete", func(l string) bool { return strings.HasPrefix(l, "kubeadm token delete x7k2qa") }).AnyTimes()
	cp.ExpectFunc("list nodes", func(l string) bool { return strings.HasSuffix(l, "get nodes -o name") }).Stdout(nodes).AnyTimes()
	return cp
}

func TestJoinFresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   step.Op
		host string
	}{
		{name: "worker", op: joinWorker, host: "h2"},
		{name: "control-plane", op: joinCP, host: "h4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			red := host.NewRedactor()
			ca, hash := testCA(t)
			cp := firstCP(t, red, ca, "node/h1\n")
			h := redacting(t, tc.host, red)
			h.ExpectFunc("probe", isProbe).Stdout("conntrack read-only\n").Times(2)
			h.Expect("install -d -m 0700 -- /etc/kubernetes/clusterctl /var/log/clusterctl")
			h.ExpectFunc("kubeadm join", func(l string) bool {
				return strings.HasPrefix(l, "umask 077; timeout 900 kubeadm join --config /etc/kubernetes/clusterctl/kubeadm-join.yaml >/var/log/clusterctl/kubeadm-join.log 2>&1;")
			})
			tg := step.Target{Host: h, Facts: freshFacts(tc.host), Bundle: testBundle(t), Redactor: red, Peers: map[string]host.Host{"h1": cp, tc.host: h}}
			ch, err := tc.op.Check(ctx, tg)
			if err != nil || ch.Action != step.ActionCreate {
				t.Fatalf("Check: %s", steptest.Report(tc.op, ch, err))
			}
			if err := tc.op.Apply(ctx, tg); err != nil {
				t.Fatal(err)
			}
			cfg, _ := h.File("/etc/kubernetes/clusterctl/kubeadm-join.yaml")
			for _, want := range []string{`token: "` + testToken + `"`, `caCertHashes: ["` + hash + `"]`, `apiServerEndpoint: "172.31.10.11:6443"`} {
				if !strings.Contains(string(cfg.Content), want) {
					t.Errorf("join config lacks %s:\n%s", want, cfg.Content)
				}
			}
			if tc.name == "worker" && !strings.Contains(string(cfg.Content), "taints: []") {
				t.Errorf("worker join config keeps default taints:\n%s", cfg.Content)
			}
			if got := strings.Contains(string(cfg.Content), `certificateKey: "`+testCertKey+`"`); got != (tc.name == "control-plane") {
				t.Errorf("certificate key in the config: %v\n%s", got, cfg.Content)
			}
			assertNoSecrets(t, []string{testToken, testCertKey, hash}, h.Transcript(), cp.Transcript())
			steptest.Golden(t, "join-"+tc.name+"-fresh", steptest.Section("check", steptest.Report(tc.op, ch, nil)),
				steptest.Section("transcript "+tc.host, h.Transcript()), steptest.Section("transcript h1", cp.Transcript()))
		})
	}
}

// TestJoinFailureRedacted: kubeadm join fails printing the token (as its
// verbose output does): the error shows *** instead.
func TestJoinFailureRedacted(t *testing.T) {
	ctx := context.Background()
	red := host.NewRedactor()
	ca, _ := testCA(t)
	cp := firstCP(t, red, ca, "node/h1\n")
	h := redacting(t, "h2", red)
	h.ExpectFunc("probe", isProbe).Stdout("")
	h.Expect("install -d -m 0700 -- /etc/kubernetes/clusterctl /var/log/clusterctl")
	h.ExpectFunc("kubeadm join", func(l string) bool { return strings.HasPrefix(l, "umask 077; timeout 900 kubeadm join") }).
		Stderr("kubeadm join exited 1: [discovery] Failed to connect to API Server using token " + testToken + "\n").Exit(1)
	err := joinWorker.Apply(ctx, step.Target{Host: h, Facts: freshFacts("h2"), Bundle: testBundle(t), Redactor: red, Peers: map[string]host.Host{"h1": cp}})
	if err == nil || !strings.Contains(err.Error(), "using token ***") {
		t.Fatalf("error %v, want the token redacted", err)
	}
	assertNoSecrets(t, []string{testToken}, err.Error(), h.Transcript(), cp.Transcript())
	// The token was deleted after the failed join.
	if !strings.Contains(cp.Transcript(), "run: kubeadm token delete x7k2qa >/dev/null 2>&1") {
		t.Errorf("token not deleted:\n%s", cp.Transcript())
	}
}

// TestJoinStates: a worker half-joined to this cluster (no CA yet, or the
// first control plane's CA) is planned as a repair; another cluster's
// leftovers, and a half-joined control plane, are errors that touch nothing.
func TestJoinStates(t *testing.T) {
	ctx := context.Background()
	ca, _ := testCA(t)
	otherCA, _ := testCA(t)
	const half = "file /etc/kubernetes/bootstrap-kubelet.conf\nfile /etc/kubernetes/pki/ca.crt\n"
	for _, tc := range []struct {
		name, probe, nodes string
		op                 step.Op
		hostCA             []byte
		want               step.Action
		diff               string // the repair's "from", when want is update
		is                 error
		msg                string
	}{
		{name: "joined", op: joinWorker, probe: "file /etc/kubernetes/kubelet.conf\nfile /etc/kubernetes/pki/ca.crt\nfile /var/lib/kubelet/config.yaml\n",
			nodes: "node/h1\nnode/h2\n", want: step.ActionNone},
		{name: "half-joined worker", op: joinWorker, probe: half, hostCA: ca, want: step.ActionUpdate,
			diff: "half-joined (present: /etc/kubernetes/bootstrap-kubelet.conf, /etc/kubernetes/pki/ca.crt; missing: /etc/kubernetes/kubelet.conf, /var/lib/kubelet/config.yaml)"},
		{name: "deleted worker", op: joinWorker, probe: "file /etc/kubernetes/kubelet.conf\n", nodes: "node/h1\n", want: step.ActionUpdate,
			diff: "half-joined (a kubelet.conf, but the cluster has no node h2)"},
		{name: "another cluster's worker", op: joinWorker, probe: half, hostCA: otherCA, is: kube.ErrHalfInitialised,
			msg: "h2 has kubeadm files of another cluster (present: /etc/kubernetes/bootstrap-kubelet.conf, /etc/kubernetes/pki/ca.crt; missing: /etc/kubernetes/kubelet.conf, /var/lib/kubelet/config.yaml; its /etc/kubernetes/pki/ca.crt is not h1's): clusterctl never resets a host by itself: run `kubeadm reset -f` on h2, then apply again"},
		{name: "half-joined control plane", op: joinCP, probe: "file /etc/kubernetes/pki/ca.crt\n", is: kube.ErrHalfInitialised,
			msg: "h4 is half-joined (present: /etc/kubernetes/pki/ca.crt; missing: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := firstCP(t, nil, ca, tc.nodes)
			name := "h2"
			if _, cpJoin := tc.op.(kube.JoinControlPlane); cpJoin {
				name = "h4"
			}
			h := newNode(t, name)
			if tc.hostCA != nil {
				h.SetFile(kube.CACert, tc.hostCA, 0o644)
			}
			h.ExpectFunc("probe", isProbe).Stdout(tc.probe).AnyTimes()
			tg := step.Target{Host: h, Facts: freshFacts(name), Bundle: testBundle(t), Peers: map[string]host.Host{"h1": cp}}
			ch, err := tc.op.Check(ctx, tg)
			if tc.is == nil {
				if err != nil || ch.Action != tc.want {
					t.Fatalf("Check: %s", steptest.Report(tc.op, ch, err))
				}
				if tc.diff != "" && (len(ch.Diff) != 1 || ch.Diff[0].From != tc.diff) {
					t.Errorf("repair diff %+v, want from %q", ch.Diff, tc.diff)
				}
				return
			}
			applyErr := tc.op.Apply(ctx, tg)
			for _, e := range []error{err, applyErr} {
				if !errors.Is(e, tc.is) || !strings.Contains(e.Error(), tc.msg) {
					t.Errorf("error %v, want %v saying %q", e, tc.is, tc.msg)
				}
			}
			if strings.Contains(cp.Transcript(), "token create") || strings.Contains(h.Transcript(), "kubeadm reset") {
				t.Errorf("a host that must not be touched was:\n%s\n%s", cp.Transcript(), h.Transcript())
			}
		})
	}
}

func TestJoinWithoutPeer(t *testing.T) {
	h := newNode(t, "h2")
	h.ExpectFunc("probe", isProbe).Stdout("file /etc/kubernetes/kubelet.conf\n")
	_, err := joinWorker.Check(context.Background(), step.Target{Host: h, Facts: freshFacts("h2")})
	if err == nil || !strings.Contains(err.Error(), "host h1 (the first control plane) is not connected") {
		t.Errorf("error %v", err)
	}
}
