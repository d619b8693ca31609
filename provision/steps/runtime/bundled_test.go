package runtime_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/provision/steps/runtime"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
	"github.com/clusterctl/clusterctl/templates"
)

// runtimeBundle is a bundle with containerd 2's binaries and one CNI plugin.
func runtimeBundle(t *testing.T, paths ...string) *bundle.Bundle {
	if paths == nil {
		paths = []string{"bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr", "bin/runc", "cni/bridge"}
	}
	var files []steptest.File
	for _, p := range paths {
		kind := bundle.KindBinary
		if strings.HasPrefix(p, "cni/") {
			kind = bundle.KindCNI
		}
		files = append(files, steptest.File{File: bundle.File{Path: p, Kind: kind}, Content: []byte(p + " 2.4.2")})
	}
	return steptest.WriteBundle(t, map[string]string{"kubernetes": "1.37.2", "containerd": "2.4.2"}, files...)
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// installed is the sha256sum answer of a host that has the bundle's files.
const allDsts = "/usr/local/bin/containerd /usr/local/bin/containerd-shim-runc-v2 /usr/local/bin/ctr /usr/local/sbin/runc /opt/cni/bin/bridge"

func sumsAnswer(current bool) string {
	if !current {
		return ""
	}
	var b strings.Builder
	for _, p := range []string{"bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr", "bin/runc", "cni/bridge"} {
		dst := map[string]string{"bin/containerd": "/usr/local/bin/containerd", "bin/containerd-shim-runc-v2": "/usr/local/bin/containerd-shim-runc-v2",
			"bin/ctr": "/usr/local/bin/ctr", "bin/runc": "/usr/local/sbin/runc", "cni/bridge": "/opt/cni/bin/bridge"}[p]
		fmt.Fprintf(&b, "%s  %s\n", sum(p+" 2.4.2"), dst)
	}
	return b.String()
}

func expectSums(h *hosttest.Fake, answer string) {
	h.ExpectFunc("sha256sum of the runtime", func(l string) bool {
		return strings.HasPrefix(l, "mkdir -p -- /opt/cni/bin /usr/local/bin /usr/local/sbin && { sha256sum -- ") && strings.Contains(l, allDsts)
	}).Stdout(answer)
}

func TestCheckBundled(t *testing.T) {
	op := runtime.Containerd{Source: "bundle", CgroupDriver: "systemd"}
	unit, err := templates.Render("containerd.service.tmpl", nil)
	if err != nil {
		t.Fatal(err)
	}
	v3, _, _ := op.Render(true, true)
	v2, _, _ := op.Render(true, false)
	converged := func(f *facts.Facts) {
		f.Containerd = "v2.4.2"
		f.Files[runtime.ConfigFile] = hostprep.Digest(v3)
		f.Files[runtime.UnitFile] = hostprep.Digest(unit)
		f.Services["containerd"] = "enabled/active"
		f.Files["/usr/lib/cni/bridge"] = "debian's" // a package left behind: not linked over the bundle's plugin
	}
	for _, tc := range []struct {
		name     string
		edit     func(f *facts.Facts)
		sums     *string // nil: the step must not ask
		want     step.Action
		diffKeys []string
		note     string
	}{
		{name: "fresh host", sums: ptr(sumsAnswer(false)), want: step.ActionCreate,
			diffKeys: []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "CNI plugin bridge", runtime.UnitFile, runtime.ConfigFile, "containerd.service"}},
		{name: "converged", edit: converged, sums: ptr(sumsAnswer(true)), want: step.ActionNone},
		{name: "debian containerd on a host that has not joined", edit: func(f *facts.Facts) {
			converged(f)
			f.Containerd = "1.6.20~ds1"
			f.Files[runtime.ConfigFile] = hostprep.Digest(v2)
		}, sums: ptr(""), want: step.ActionUpdate,
			diffKeys: []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "CNI plugin bridge", runtime.ConfigFile}},
		{name: "debian containerd on a joined node stays", edit: func(f *facts.Facts) {
			converged(f)
			f.Containerd = "1.6.20~ds1"
			f.Files[runtime.ConfigFile] = hostprep.Digest(v2)
			f.Files["/etc/kubernetes/kubelet.conf"] = "abc"
			delete(f.Files, "/usr/lib/cni/bridge")
		}, want: step.ActionNone, note: "containerd 1.6.20~ds1 stays on this node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := loadFacts(t, "debian-fresh")
			if tc.edit != nil {
				tc.edit(f)
			}
			h := hosttest.NewFake(t, "node-1")
			h.Expect("grep '^CapBnd:' /proc/1/status").Stdout(noSysResource)
			if tc.sums != nil {
				expectSums(h, *tc.sums)
			}
			ch, err := op.Check(context.Background(), step.Target{Host: h, Facts: f, Bundle: runtimeBundle(t)})
			if err != nil {
				t.Fatal(err)
			}
			if ch.Action != tc.want {
				t.Errorf("action %s, want %s: %+v", ch.Action, tc.want, ch.Diff)
			}
			var keys []string
			for _, d := range ch.Diff {
				keys = append(keys, d.Key)
			}
			if strings.Join(keys, ",") != strings.Join(tc.diffKeys, ",") {
				t.Errorf("diff keys %q, want %q", keys, tc.diffKeys)
			}
			if tc.want == step.ActionCreate && (ch.Diff[0].From != "(absent)" || ch.Diff[0].To != "2.4.2 (bundle)") {
				t.Errorf("containerd line %+v", ch.Diff[0])
			}
			if !strings.Contains(ch.Note, tc.note) {
				t.Errorf("note %q, want %q", ch.Note, tc.note)
			}
		})
	}
}

// A bundle with containerd but without runc is refused, naming the file.
func TestCheckBundledIncomplete(t *testing.T) {
	op := runtime.Containerd{Source: "bundle", CgroupDriver: "systemd"}
	h := hosttest.NewFake(t, "node-1")
	b := runtimeBundle(t, "bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr")
	_, err := op.Check(context.Background(), step.Target{Host: h, Facts: loadFacts(t, "debian-fresh"), Bundle: b})
	if err == nil || !strings.Contains(err.Error(), "bin/runc") {
		t.Fatalf("err = %v, want one naming bin/runc", err)
	}
}

// TestApplyBundled: only the files whose digest differs are uploaded, the
// unit is written and systemd reloaded, and containerd restarts.
func TestApplyBundled(t *testing.T) {
	op := runtime.Containerd{Source: "bundle", CgroupDriver: "cgroupfs"}
	b := runtimeBundle(t)
	config, _, _ := op.Render(false, true)
	h := hosttest.NewFake(t, "node-1")
	current := sumsAnswer(true)
	// runc differs on the host: only it is uploaded.
	current = strings.Replace(current, sum("bin/runc 2.4.2"), sum("old runc"), 1)
	expectSums(h, current)
	h.Expect("sha256sum -- /usr/local/sbin/runc").Stdout(sum("bin/runc 2.4.2") + "  /usr/local/sbin/runc\n")
	h.ExpectFunc("stat unit", func(l string) bool { return strings.Contains(l, "sha256sum < /etc/systemd/system/containerd.service") }).
		Stdout("missing\n")
	h.Expect("systemctl daemon-reload")
	h.Expect("command -v containerd >/dev/null")
	h.Expect("grep '^CapBnd:' /proc/1/status").Stdout("CapBnd:\t000001ffffffffff\n")
	h.ExpectFunc("stat config", func(l string) bool { return strings.Contains(l, "sha256sum < /etc/containerd/config.toml") }).
		Stdout(hostprep.Digest(config) + "  -\n644 root root\n")
	h.ExpectFunc("list managed hosts.toml", func(l string) bool { return strings.HasPrefix(l, "for f in /etc/containerd/certs.d/") })
	h.ExpectFunc("link CNI", func(l string) bool { return strings.HasPrefix(l, "mkdir -p -- /opt/cni/bin /etc/cni/net.d") })
	h.Expect("systemctl enable --quiet containerd.service && systemctl restart containerd.service")
	h.ExpectFunc("wait", func(l string) bool { return strings.Contains(l, "ctr version") })
	if err := op.Apply(context.Background(), step.Target{Host: h, Bundle: b}); err != nil {
		t.Fatal(err)
	}
	if f, ok := h.File("/usr/local/sbin/runc"); !ok || string(f.Content) != "bin/runc 2.4.2" || f.Mode != 0o755 {
		t.Errorf("runc on the host: %+v", f)
	}
	if _, ok := h.File("/usr/local/bin/containerd"); ok {
		t.Error("containerd was uploaded although its digest matched")
	}
	if _, ok := h.File(runtime.UnitFile); !ok {
		t.Error("the unit was not written")
	}
}

func ptr(s string) *string { return &s }
