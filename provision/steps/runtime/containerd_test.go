package runtime_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
	"github.com/clusterctl/clusterctl/provision/steps/runtime"
)

var _ = flag.Bool("update", false, "rewrite golden files")

var base = runtime.Containerd{Source: "bundle", CgroupDriver: "systemd", SandboxImage: "registry.k8s.io/pause:3.10.1",
	Mirrors:            map[string][]string{"docker.io": {"mirror.local:5000", "https://mirror2.example.com/v2-cache"}, "quay.io": {"http://10.0.0.5:5000"}},
	InsecureRegistries: []string{"registry.local:5000", "http://10.0.0.5:5000"}}

// TestRenderGolden pins config.toml and the hosts.toml files for the
// variants that matter.
func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name     string
		op       runtime.Containerd
		restrict bool
		v3       bool
	}{
		{"systemd-restricted-mirrors", base, true, false},
		{"cgroupfs-plain", runtime.Containerd{Source: "online", CgroupDriver: "cgroupfs"}, false, false},
		{"forced-restrict", runtime.Containerd{Source: "online", CgroupDriver: "systemd", RestrictOOMScoreAdj: true}, false, false},
		{"v3-systemd-restricted-mirrors", base, true, true},
		{"v3-cgroupfs-plain", runtime.Containerd{Source: "bundle", CgroupDriver: "cgroupfs"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config, hosts, err := tc.op.Render(tc.restrict, tc.v3)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "== %s\n%s", runtime.ConfigFile, config)
			for _, p := range facts.Sorted(hosts) {
				fmt.Fprintf(&b, "== %s\n%s", p, hosts[p])
			}
			hosttest.AssertGolden(t, filepath.Join("testdata", "render-"+tc.name+".golden"), b.String())
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		op   runtime.Containerd
		want string
	}{
		{runtime.Containerd{Source: "bundle", CgroupDriver: "cgroupv2"}, "cgroup driver"},
		{runtime.Containerd{Source: "ftp", CgroupDriver: "systemd"}, "source"},
		{runtime.Containerd{Source: "bundle", CgroupDriver: "systemd", SandboxImage: "x\"\nevil"}, "sandbox image"},
		{runtime.Containerd{Source: "bundle", CgroupDriver: "systemd", Mirrors: map[string][]string{"../../etc": {"m"}}}, "registry"},
		{runtime.Containerd{Source: "bundle", CgroupDriver: "systemd", Mirrors: map[string][]string{"docker.io": {"ftp://m"}}}, "mirror"},
		{runtime.Containerd{Source: "bundle", CgroupDriver: "systemd", Mirrors: map[string][]string{"docker.io": {"https://m\"]\n[x"}}}, "mirror"},
		{runtime.Containerd{Source: "bundle", CgroupDriver: "systemd", InsecureRegistries: []string{"reg/../x"}}, "registry"},
	} {
		_, err := tc.op.Check(context.Background(), step.Target{Host: hosttest.NewFake(t, "n")})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.op, err, tc.want)
		}
	}
}

func loadFacts(t *testing.T, name string) *facts.Facts {
	b, err := os.ReadFile(filepath.Join("..", "hostprep", "testdata", name+".probe"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := facts.Parse("node-1", b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const noSysResource = "CapBnd:\t000001fffeffffff\n"

func TestCheck(t *testing.T) {
	op := runtime.Containerd{Source: "bundle", CgroupDriver: "systemd"}
	converged := func(f *facts.Facts, restrict bool) {
		config, _, _ := op.Render(restrict, false)
		f.Files[runtime.ConfigFile] = hostprep.Digest(config)
		f.Containerd = "1.6.20~ds1"
		f.Services["containerd"] = "enabled/active"
	}
	tests := []struct {
		name    string
		op      runtime.Containerd
		edit    func(f *facts.Facts)
		caps    string
		want    step.Action
		wantErr string
		diff    string
	}{
		{name: "fresh", op: op, caps: noSysResource, want: step.ActionCreate},
		{name: "converged", op: op, caps: noSysResource, edit: func(f *facts.Facts) { converged(f, true) }, want: step.ActionNone},
		// The same config is wrong on a host whose root has CAP_SYS_RESOURCE.
		{name: "capability differs", op: op, caps: "CapBnd:\t000001ffffffffff\n", edit: func(f *facts.Facts) { converged(f, true) },
			want: step.ActionUpdate, diff: runtime.ConfigFile},
		{name: "stopped", op: op, caps: noSysResource, edit: func(f *facts.Facts) { converged(f, true); f.Services["containerd"] = "enabled/inactive" },
			want: step.ActionUpdate, diff: "containerd.service"},
		{name: "cni links missing", op: op, caps: noSysResource, edit: func(f *facts.Facts) {
			converged(f, true)
			f.Files["/usr/lib/cni/bridge"] = "abc"
		}, want: step.ActionUpdate, diff: "CNI plugins"},
		{name: "systemd driver without systemd", op: op, edit: func(f *facts.Facts) { f.Init = "other" }, wantErr: "choose cgroupDriver \"cgroupfs\""},
		{name: "version note", op: runtime.Containerd{Source: "bundle", CgroupDriver: "systemd", Version: "1.7"}, caps: noSysResource,
			edit: func(f *facts.Facts) { converged(f, true) }, want: step.ActionNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := loadFacts(t, "debian-fresh")
			if tc.edit != nil {
				tc.edit(f)
			}
			h := hosttest.NewFake(t, "node-1")
			if tc.caps != "" {
				h.Expect("grep '^CapBnd:' /proc/1/status").Stdout(tc.caps)
			}
			ch, err := tc.op.Check(context.Background(), step.Target{Host: h, Facts: f})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.Action != tc.want {
				t.Errorf("action %s, want %s: %+v", ch.Action, tc.want, ch.Diff)
			}
			if tc.diff != "" && (len(ch.Diff) == 0 || !strings.Contains(ch.Diff[0].Key, tc.diff)) {
				t.Errorf("diff %+v, want %q first", ch.Diff, tc.diff)
			}
		})
	}
}

// TestApplyRestartsOnlyOnChange: with every file already as rendered, Apply
// starts (not restarts) containerd; in bundle mode a missing containerd is
// a clear error.
func TestApplyRestartsOnlyOnChange(t *testing.T) {
	op := runtime.Containerd{Source: "bundle", CgroupDriver: "cgroupfs"}
	config, _, _ := op.Render(true, false)
	h := hosttest.NewFake(t, "node-1")
	h.Expect("command -v containerd >/dev/null")
	h.Expect("grep '^CapBnd:' /proc/1/status").Stdout(noSysResource)
	h.ExpectFunc("stat config", func(l string) bool { return strings.Contains(l, "sha256sum < /etc/containerd/config.toml") }).
		Stdout(hostprep.Digest(config) + "  -\n644 root root\n")
	h.ExpectFunc("list managed hosts.toml", func(l string) bool { return strings.HasPrefix(l, "for f in /etc/containerd/certs.d/") }).
		Stdout("/etc/containerd/certs.d/old.example/hosts.toml\n")
	h.Expect("rm -f -- /etc/containerd/certs.d/old.example/hosts.toml && rmdir --ignore-fail-on-non-empty -- /etc/containerd/certs.d/old.example")
	h.ExpectFunc("link CNI", func(l string) bool { return strings.HasPrefix(l, "mkdir -p -- /opt/cni/bin /etc/cni/net.d") })
	// The stale registry file was removed: that is a config change.
	h.Expect("systemctl enable --quiet containerd.service && systemctl restart containerd.service")
	h.ExpectFunc("wait", func(l string) bool { return strings.Contains(l, "ctr version") })
	if err := op.Apply(context.Background(), step.Target{Host: h}); err != nil {
		t.Fatal(err)
	}

	h2 := hosttest.NewFake(t, "node-1")
	h2.Expect("command -v containerd >/dev/null")
	h2.Expect("grep '^CapBnd:' /proc/1/status").Stdout(noSysResource)
	h2.ExpectFunc("stat config", func(l string) bool { return strings.Contains(l, "sha256sum < /etc/containerd/config.toml") }).
		Stdout(hostprep.Digest(config) + "  -\n644 root root\n")
	h2.ExpectFunc("list managed hosts.toml", func(l string) bool { return strings.HasPrefix(l, "for f in /etc/containerd/certs.d/") })
	h2.ExpectFunc("link CNI", func(l string) bool { return strings.HasPrefix(l, "mkdir -p -- /opt/cni/bin /etc/cni/net.d") })
	h2.Expect("systemctl enable --quiet containerd.service && systemctl start containerd.service")
	h2.ExpectFunc("wait", func(l string) bool { return strings.Contains(l, "ctr version") })
	if err := op.Apply(context.Background(), step.Target{Host: h2}); err != nil {
		t.Fatal(err)
	}

	h3 := hosttest.NewFake(t, "node-1")
	h3.Expect("command -v containerd >/dev/null").Exit(1)
	err := op.Apply(context.Background(), step.Target{Host: h3})
	if !errors.Is(err, runtime.ErrNotInstalled) || !strings.Contains(err.Error(), "hostprep/packages") {
		t.Fatalf("err = %v, want ErrNotInstalled naming the packages step", err)
	}
}
