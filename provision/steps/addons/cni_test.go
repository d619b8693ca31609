package addons_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/addons"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

const flannelImage = "registry.local/clusterctl/flannel:v0.28.10"

var cni = addons.CNI{Plugin: "flannel", PodCIDR: "10.244.0.0/16"}

func TestCNICheck(t *testing.T) {
	ctx := context.Background()
	b := testBundle(t, "registry.local/k8s/pause:3.10.1", flannelImage)
	for _, tc := range []struct {
		name   string
		stdout []string // per diff call
		codes  []int
		want   step.Action
		err    string
	}{
		{name: "no-cluster-yet", stdout: []string{"clusterctl: no cluster yet\n"}, codes: []int{0}, want: step.ActionCreate},
		{name: "namespace-missing", stdout: []string{newNamespaceDiff}, codes: []int{1}, want: step.ActionCreate},
		{name: "image-changed", stdout: []string{"", changedDaemonSetDiff}, codes: []int{0, 1}, want: step.ActionUpdate},
		{name: "converged", stdout: []string{"", ""}, codes: []int{0, 0}, want: step.ActionNone},
		{name: "api-error", stdout: []string{""}, codes: []int{2}, err: "kubectl diff: h1: command exited 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hosttest.NewFake(t, "h1")
			for i := range tc.stdout {
				h.ExpectFunc("kubectl diff", isDiff).Stdout(tc.stdout[i]).Exit(tc.codes[i])
			}
			ch, err := cni.Check(ctx, stepTarget(h, b))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || ch.Action != tc.want {
				t.Fatalf("Check: %s", steptest.Report(cni, ch, err))
			}
			steptest.Golden(t, "cni-check-"+tc.name, steptest.Report(cni, ch, err), steptest.Section("transcript", h.Transcript()))
		})
	}
}

func TestCNIApply(t *testing.T) {
	b := testBundle(t, flannelImage)
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("apply", isApply).Times(2)
	h.Expect("kubectl --kubeconfig=/etc/kubernetes/admin.conf rollout status daemonset/kube-flannel-ds --timeout 180s -n kube-flannel")
	if err := cni.Apply(context.Background(), stepTarget(h, b)); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "cni-apply", h.Transcript())
}

// TestFlannelManifest pins the manifest as applied (stdin of the applies).
func TestFlannelManifest(t *testing.T) {
	b := testBundle(t, flannelImage)
	h := hosttest.NewFake(t, "h1")
	var docs []string
	h.ExpectFunc("apply", isApply).Do(func(_ context.Context, cmd hostCmd) error {
		docs = append(docs, readAll(cmd.Stdin))
		return nil
	}).Times(2)
	h.ExpectFunc("rollout", func(l string) bool { return strings.Contains(l, "rollout status") })
	if err := cni.Apply(context.Background(), stepTarget(h, b)); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(docs, "---\n")
	for _, want := range []string{`"Network": "10.244.0.0/16"`, "image: " + `"` + flannelImage + `"`, `imagePullPolicy: "Never"`,
		`"/bin/cp", "-f", "/flannel", "/opt/cni/bin/flannel"`, "--kube-subnet-mgr", "NET_ADMIN"} {
		if !strings.Contains(all, want) {
			t.Errorf("manifest lacks %s", want)
		}
	}
	steptest.Golden(t, "flannel-manifest", all)
}

func TestCNIErrors(t *testing.T) {
	ctx := context.Background()
	h := hosttest.NewFake(t, "h1")
	if _, err := cni.Check(ctx, step.Target{Host: h, Facts: someFacts()}); !errors.Is(err, addons.ErrOnlineCNIUnsupported) {
		t.Errorf("online: %v", err)
	}
	if _, err := cni.Check(ctx, stepTarget(h, testBundle(t, "registry.local/k8s/pause:3.10.1"))); err == nil || !strings.Contains(err.Error(), "has no flannel image") {
		t.Errorf("no flannel image: %v", err)
	}
	calico := addons.CNI{Plugin: "calico", PodCIDR: "10.244.0.0/16"}
	if _, err := calico.Check(ctx, stepTarget(h, testBundle(t, flannelImage))); err == nil || !strings.Contains(err.Error(), `cni "calico" is not supported yet`) {
		t.Errorf("calico: %v", err)
	}
	bad := addons.CNI{Plugin: "flannel", PodCIDR: "10.244.0.0/16\"}, {\"x"}
	if _, err := bad.Check(ctx, stepTarget(h, testBundle(t, flannelImage))); err == nil {
		t.Error("a hostile pod CIDR was accepted")
	}
	// Offline: what it would do, without a host.
	if ch, err := cni.Check(ctx, step.Target{Bundle: testBundle(t, flannelImage)}); err != nil || ch.Action != step.ActionCreate {
		t.Errorf("offline: %s", steptest.Report(cni, ch, err))
	}
}
