package kube_test

import (
	"context"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/runtime"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// runtimeBundle carries containerd 2.4.2 (fake binaries).
func runtimeBundle(t *testing.T) *bundle.Bundle {
	var files []steptest.File
	for _, p := range []string{"bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr", "bin/runc"} {
		files = append(files, steptest.File{File: bundle.File{Path: p, Kind: bundle.KindBinary}, Content: []byte("fake " + p + "\n")})
	}
	files = append(files, steptest.File{File: bundle.File{Path: "cni/bridge", Kind: bundle.KindCNI}, Content: []byte("fake bridge\n")})
	return steptest.WriteBundle(t, map[string]string{"kubernetes": "1.37.2", "containerd": "2.4.2"}, files...)
}

func migrateOp(node string) kube.MigrateRuntime {
	return kube.MigrateRuntime{Node: node, Via: "h1", DrainTimeout: "2m", WaitTimeout: "3m",
		Runtime: runtime.Containerd{Source: "bundle", CgroupDriver: "systemd", SandboxImage: "registry.local/k8s/pause:3.10.2"}}
}

// joined are the facts of a worker that joined on Debian's containerd.
func joined(name string) *facts.Facts {
	f := freshFacts(name)
	f.Files[kube.KubeletConf] = "abc"
	return f
}

func TestMigrateRuntimeCheck(t *testing.T) {
	op := migrateOp("h2")
	for _, tc := range []struct {
		name   string
		facts  *facts.Facts
		bundle *bundle.Bundle
		source string
		want   step.Action
	}{
		{"joined on containerd 1.6", joined("h2"), runtimeBundle(t), "bundle", step.ActionUpdate},
		{"not joined", freshFacts("h2"), runtimeBundle(t), "bundle", step.ActionNone},
		{"already on containerd 2", func() *facts.Facts { f := joined("h2"); f.Containerd = "v2.4.2"; return f }(), runtimeBundle(t), "bundle", step.ActionNone},
		{"bundle without containerd", joined("h2"), testBundle(t), "bundle", step.ActionNone},
		{"online", joined("h2"), nil, "online", step.ActionNone},
		{"offline plan", nil, runtimeBundle(t), "bundle", step.ActionNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := op
			o.Runtime.Source = tc.source
			ch, err := o.Check(context.Background(), step.Target{Host: hosttest.NewFake(t, "h2"), Facts: tc.facts, Bundle: tc.bundle})
			if err != nil || ch.Action != tc.want {
				t.Fatalf("Check: %s, want %s", steptest.Report(o, ch, err), tc.want)
			}
			if tc.want == step.ActionUpdate && (ch.Diff[0].From != "1.6.20~ds1 (distribution package)" || ch.Diff[0].To != "2.4.2 (bundle)") {
				t.Errorf("diff %+v", ch.Diff)
			}
		})
	}
}

// migrationFakes are the first control plane (kubectl answers) and the
// worker being moved; fail names a command of the worker's that fails.
func migrationFakes(t *testing.T, drainFails bool, fail string) (cp, h *hosttest.Fake) {
	cp = newNode(t, "h1")
	cp.ExpectFunc("read schedulability", func(l string) bool { return strings.Contains(l, " get node h2 -o jsonpath=") })
	cp.ExpectFunc("cordon", func(l string) bool { return strings.Contains(l, "cordon h2") && !strings.Contains(l, "uncordon") })
	drain := cp.ExpectFunc("drain", func(l string) bool { return strings.Contains(l, " drain h2 ") })
	if drainFails {
		drain.Exit(1).Stderr("Cannot evict pod as it would violate the pod's disruption budget.")
	}
	cp.ExpectFunc("waits", func(l string) bool { return strings.HasPrefix(l, "{ end=") && !strings.Contains(l, "cordon") }).AnyTimes()
	cp.ExpectFunc("uncordon", func(l string) bool { return strings.Contains(l, "uncordon h2") })

	h = newNode(t, "h2")
	h.Expect("if command -v containerd >/dev/null; then containerd --version; fi").Stdout("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n")
	h.Expect("grep '^CapBnd:' /proc/1/status").Stdout("CapBnd:\t000001ffffffffff\n").AnyTimes()
	h.ExpectFunc("stop kubelet and pods", func(l string) bool { return strings.HasPrefix(l, "systemctl stop kubelet.service && ") }).AnyTimes()
	h.Expect("systemctl daemon-reload").AnyTimes()
	start := h.Expect("systemctl enable --quiet containerd.service && systemctl start containerd.service").AnyTimes()
	if fail == "start" {
		start.Exit(1).Stderr("Job for containerd.service failed")
	}
	h.ExpectFunc("ctr version", func(l string) bool { return strings.Contains(l, "ctr version") }).AnyTimes()
	h.Expect("systemctl start kubelet.service").AnyTimes()
	h.ExpectFunc("revert", func(l string) bool {
		return strings.HasPrefix(l, "systemctl stop kubelet.service containerd.service; rm -f -- ")
	}).AnyTimes()
	h.Expect("systemctl start containerd.service").AnyTimes()
	return cp, h
}

func TestMigrateRuntime(t *testing.T) {
	cp, h := migrationFakes(t, false, "")
	op := migrateOp("h2")
	tg := step.Target{Host: h, Facts: joined("h2"), Bundle: runtimeBundle(t), Peers: map[string]host.Host{"h1": cp, "h2": h}}
	if err := op.Apply(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/usr/local/bin/containerd", "/usr/local/sbin/runc", "/opt/cni/bin/bridge", runtime.UnitFile} {
		if _, ok := h.File(p); !ok {
			t.Errorf("%s not installed", p)
		}
	}
	if f, _ := h.File(runtime.ConfigFile); !strings.Contains(string(f.Content), "version = 3") {
		t.Errorf("config.toml:\n%s", f.Content)
	}
	steptest.Golden(t, "migrate-runtime", steptest.Section("transcript h2", h.Transcript()), steptest.Section("transcript h1", cp.Transcript()))
}

// A drain that cannot evict leaves the node on its old runtime, uncordoned.
func TestMigrateRuntimeDrainFails(t *testing.T) {
	cp, h := migrationFakes(t, true, "")
	err := migrateOp("h2").Apply(context.Background(), step.Target{Host: h, Facts: joined("h2"), Bundle: runtimeBundle(t), Peers: map[string]host.Host{"h1": cp}})
	if err == nil || !strings.Contains(err.Error(), "h2 was uncordoned and still runs containerd 1.6.20~ds1") {
		t.Fatalf("Apply: %v", err)
	}
	if _, ok := h.File("/usr/local/bin/containerd"); ok {
		t.Error("containerd was installed after a failed drain")
	}
	if !strings.Contains(cp.Transcript(), "uncordon h2") {
		t.Error("h2 was not uncordoned")
	}
}

// A containerd 2 that does not start: the node goes back to containerd
// 1.x (the bundle's binaries and unit removed, config version 2) and is
// uncordoned; the error says so.
func TestMigrateRuntimeReverts(t *testing.T) {
	cp, h := migrationFakes(t, false, "start")
	err := migrateOp("h2").Apply(context.Background(), step.Target{Host: h, Facts: joined("h2"), Bundle: runtimeBundle(t), Peers: map[string]host.Host{"h1": cp}})
	if err == nil || !strings.Contains(err.Error(), "start the bundle's containerd") ||
		!strings.Contains(err.Error(), "h2 is back on containerd 1.6.20~ds1 and uncordoned") {
		t.Fatalf("Apply: %v", err)
	}
	tr := h.Transcript()
	if !strings.Contains(tr, "rm -f -- /etc/systemd/system/containerd.service /usr/local/bin/containerd") {
		t.Errorf("the bundle's containerd was not removed:\n%s", tr)
	}
	if f, _ := h.File(runtime.ConfigFile); !strings.Contains(string(f.Content), "version = 2") {
		t.Errorf("config.toml after the revert:\n%s", f.Content)
	}
	if !strings.Contains(cp.Transcript(), "uncordon h2") {
		t.Error("h2 was not uncordoned")
	}
}
