package k3s_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/k3s"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var install = k3s.Install{Version: "1.34.2+k3s1", Source: "bundle", Role: k3s.RoleServer}

// testBundle: the k3s binaries and air-gap archives of two architectures
// and one workload image (small fakes).
func testBundle(t *testing.T, skip ...string) *bundle.Bundle {
	var files []steptest.File
	for _, f := range []struct{ path, kind, image string }{
		{"bin/k3s", bundle.KindBinary, ""},
		{"bin/k3s-arm64", bundle.KindBinary, ""},
		{"airgap/k3s-airgap-images-amd64.tar.zst", bundle.KindAirgap, ""},
		{"airgap/k3s-airgap-images-arm64.tar.zst", bundle.KindAirgap, ""},
		{"images/hello.tar", bundle.KindImage, "registry.local/clusterctl/hello:v1"},
	} {
		if contains(skip, f.path) {
			continue
		}
		files = append(files, steptest.File{File: bundle.File{Path: f.path, Kind: f.kind, Image: f.image}, Content: []byte("fake " + f.path + "\n")})
	}
	return steptest.WriteBundle(t, map[string]string{"kubernetes": "1.34.2+k3s1"}, files...)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// installHost answers Install's probe (digests and missing links) from its
// files, the binary's --version with version, and records links made.
func installHost(t *testing.T, name, version string) *hosttest.Fake {
	h := steptest.NewFileHost(t, name)
	h.ExpectFunc("install probe", func(l string) bool {
		return strings.HasPrefix(l, "sha256sum -- ") && strings.Contains(l, "; for n in kubectl crictl ctr;")
	}).Do(func(_ context.Context, cmd host.Cmd) error {
		list, _, _ := strings.Cut(strings.TrimPrefix(cmd.Line, "sha256sum -- "), " 2>/dev/null")
		for _, p := range strings.Fields(list) {
			if f, ok := h.File(p); ok {
				fmt.Fprintf(cmd.Stdout, "%s  %s\n", steptest.Sum(f.Content), p)
			}
		}
		for _, n := range []string{"kubectl", "crictl", "ctr"} {
			if _, ok := h.File(k3s.LinkDir + "/" + n); !ok {
				fmt.Fprintf(cmd.Stdout, "nolink %s\n", n)
			}
		}
		return nil
	}).AnyTimes()
	h.Expect(k3s.BinPath + " --version").Stdout("k3s version v" + version + " (0123abcd)\ngo version go1.24.9\n").AnyTimes()
	h.ExpectFunc("links and reload", func(l string) bool {
		return strings.HasPrefix(l, "ln -s ") || strings.HasPrefix(l, "systemctl daemon-reload") || strings.HasPrefix(l, "systemctl try-restart")
	}).Do(func(_ context.Context, cmd host.Cmd) error {
		for _, part := range strings.Split(cmd.Line, " && ") {
			if f := strings.Fields(part); len(f) == 4 && f[0] == "ln" {
				h.SetFile(f[3], []byte("-> "+f[2]), 0o777)
			}
		}
		return nil
	}).AnyTimes()
	h.Expect("mkdir -p -- " + k3s.ImagesDir + " " + k3s.ConfigDir).AnyTimes()
	return h
}

// factsOf is what the facts probe would report of h after an install.
func factsOf(h *hosttest.Fake, name, version string) *facts.Facts {
	f := freshFacts(name)
	f.K3s = version
	for _, p := range []string{k3s.UnitDir + "/k3s.service", k3s.UnitDir + "/k3s-agent.service"} {
		if file, ok := h.File(p); ok {
			f.Files[p] = steptest.Sum(file.Content)
		}
	}
	return f
}

// TestInstallBundle: a fresh host gets the binary, the air-gap archive of
// its architecture and the bundle's images in ImagesDir, the unit and the
// links; a second apply uploads nothing; the result checks as unchanged.
func TestInstallBundle(t *testing.T) {
	ctx := context.Background()
	b := testBundle(t)
	h := installHost(t, "s1", "1.34.2+k3s1")
	ch, err := install.Check(ctx, step.Target{Host: h, Facts: freshFacts("s1"), Bundle: b})
	check := steptest.Report(install, ch, err)
	if ch.Action != step.ActionCreate {
		t.Errorf("fresh host: %s", check)
	}
	if err := install.Apply(ctx, step.Target{Host: h, Facts: freshFacts("s1"), Bundle: b}); err != nil {
		t.Fatal(err)
	}
	first := h.Transcript()
	if f, ok := h.File(k3s.BinPath); !ok || f.Mode.Perm() != 0o755 || f.Owner != "root" || string(f.Content) != "fake bin/k3s\n" {
		t.Errorf("%s: %+v", k3s.BinPath, f)
	}
	for _, p := range []string{k3s.ImagesDir + "/k3s-airgap-images-amd64.tar.zst", k3s.ImagesDir + "/hello.tar"} {
		if _, ok := h.File(p); !ok {
			t.Errorf("%s not installed", p)
		}
	}
	if _, ok := h.File(k3s.ImagesDir + "/k3s-airgap-images-arm64.tar.zst"); ok {
		t.Error("the arm64 archive went to an x86_64 host")
	}

	if err := install.Apply(ctx, step.Target{Host: h, Facts: factsOf(h, "s1", "1.34.2+k3s1"), Bundle: b}); err != nil {
		t.Fatal(err)
	}
	second := strings.TrimPrefix(h.Transcript(), first)
	if strings.Contains(second, "upload:") || strings.Contains(second, "restart") {
		t.Errorf("second apply uploaded or restarted:\n%s", second)
	}
	ch2, err := install.Check(ctx, step.Target{Host: h, Facts: factsOf(h, "s1", "1.34.2+k3s1"), Bundle: b})
	if err != nil || ch2.Action != step.ActionNone {
		t.Errorf("converged host: %s", steptest.Report(install, ch2, err))
	}
	steptest.Golden(t, "install-bundle", steptest.Section("check", check), steptest.Section("apply", first), steptest.Section("apply again", second))
}

// An aarch64 agent gets k3s-arm64 and the arm64 archive, and the agent unit.
func TestInstallArm64Agent(t *testing.T) {
	ctx := context.Background()
	op := install
	op.Role = k3s.RoleAgent
	h := installHost(t, "a1", "1.34.2+k3s1")
	f := freshFacts("a1")
	f.Arch = "aarch64"
	if err := op.Apply(ctx, step.Target{Host: h, Facts: f, Bundle: testBundle(t)}); err != nil {
		t.Fatal(err)
	}
	if b, _ := h.File(k3s.BinPath); string(b.Content) != "fake bin/k3s-arm64\n" {
		t.Errorf("binary %q, want k3s-arm64", b.Content)
	}
	if _, ok := h.File(k3s.ImagesDir + "/k3s-airgap-images-arm64.tar.zst"); !ok {
		t.Error("no arm64 archive")
	}
	if u, ok := h.File(k3s.UnitDir + "/k3s-agent.service"); !ok || !strings.Contains(string(u.Content), "k3s agent\n") {
		t.Errorf("agent unit: %s", u.Content)
	}
}

// An upgrade replaces the binary and restarts k3s if it runs.
func TestInstallUpgrade(t *testing.T) {
	ctx := context.Background()
	b := testBundle(t)
	h := installHost(t, "s1", "1.34.2+k3s1")
	if err := install.Apply(ctx, step.Target{Host: h, Facts: freshFacts("s1"), Bundle: b}); err != nil {
		t.Fatal(err)
	}
	h.SetFile(k3s.BinPath, []byte("older k3s\n"), 0o755)
	f := factsOf(h, "s1", "1.33.5+k3s1")
	ch, err := install.Check(ctx, step.Target{Host: h, Facts: f, Bundle: b})
	before := h.Transcript()
	if err := install.Apply(ctx, step.Target{Host: h, Facts: f, Bundle: b}); err != nil {
		t.Fatal(err)
	}
	tr := strings.TrimPrefix(h.Transcript(), before)
	if !strings.Contains(tr, "systemctl try-restart k3s.service") {
		t.Errorf("no restart after the upgrade:\n%s", tr)
	}
	steptest.Golden(t, "install-upgrade", steptest.Section("check", steptest.Report(install, ch, err)), steptest.Section("apply", tr))
}

// Online: the host fetches the binary and the archive itself, checks
// their sha256 and moves them into place.
func TestInstallOnline(t *testing.T) {
	ctx := context.Background()
	op := k3s.Install{Version: "1.34.2+k3s1", Source: "online", Role: k3s.RoleServer,
		Binary: &k3s.Download{URL: "https://github.com/k3s-io/k3s/releases/download/v1.34.2%2Bk3s1/k3s", SHA256: strings.Repeat("a", 64)},
		Images: &k3s.Download{URL: "https://github.com/k3s-io/k3s/releases/download/v1.34.2%2Bk3s1/k3s-airgap-images-amd64.tar.zst", SHA256: strings.Repeat("b", 64)}}
	h := installHost(t, "s1", "1.34.2+k3s1")
	h.ExpectFunc("download", func(l string) bool { return strings.HasPrefix(l, "tmp=") }).Times(2)
	ch, err := op.Check(ctx, step.Target{Host: h, Facts: freshFacts("s1")})
	check := steptest.Report(op, ch, err)
	if err := op.Apply(ctx, step.Target{Host: h, Facts: freshFacts("s1")}); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "install-online", steptest.Section("check", check), steptest.Section("apply", h.Transcript()))
}

func TestInstallErrors(t *testing.T) {
	ctx := context.Background()
	// No air-gap archive in the bundle.
	h := installHost(t, "s1", "1.34.2+k3s1")
	if _, err := install.Check(ctx, step.Target{Host: h, Facts: freshFacts("s1"), Bundle: testBundle(t, "airgap/k3s-airgap-images-amd64.tar.zst")}); err == nil ||
		!strings.Contains(err.Error(), "no k3s air-gap images for amd64") {
		t.Errorf("bundle without the archive: %v", err)
	}
	if _, err := install.Check(ctx, step.Target{Host: h, Facts: freshFacts("s1"), Bundle: testBundle(t, "bin/k3s")}); err == nil ||
		!strings.Contains(err.Error(), "has no bin/k3s") {
		t.Errorf("bundle without the binary: %v", err)
	}
	// The bundle's binary is another version than the spec's.
	h2 := installHost(t, "s2", "1.33.5+k3s1")
	if err := install.Apply(ctx, step.Target{Host: h2, Facts: freshFacts("s2"), Bundle: testBundle(t)}); err == nil ||
		!strings.Contains(err.Error(), `says "k3s version v1.33.5+k3s1 (0123abcd)", the spec asks for k3s 1.34.2+k3s1`) {
		t.Errorf("wrong binary version: %v", err)
	}
	// ...and the next plan says so before anything is uploaded.
	if _, err := install.Check(ctx, step.Target{Host: h2, Facts: factsOf(h2, "s2", "1.33.5+k3s1"), Bundle: testBundle(t)}); err == nil ||
		!strings.Contains(err.Error(), "k3s on s2 is 1.33.5+k3s1") {
		t.Errorf("check of the wrong binary: %v", err)
	}
	for _, tc := range []struct {
		op   k3s.Install
		want string
	}{
		{k3s.Install{Version: "1.34.2", Source: "bundle", Role: "server"}, "want e.g. 1.37.2+k3s1"},
		{k3s.Install{Version: "1.34.2+k3s1", Source: "online", Role: "server"}, `artifacts.urls "k3s"`},
		{k3s.Install{Version: "1.34.2+k3s1", Source: "online", Role: "server", Binary: &k3s.Download{URL: "ftp://x/k3s", SHA256: "nope"}}, "is not an http(s) URL"},
		{k3s.Install{Version: "1.34.2+k3s1", Source: "bundle", Role: "worker"}, `role "worker"`},
	} {
		if _, err := tc.op.Check(ctx, step.Target{Host: h, Facts: freshFacts("s1")}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want %q, got %v", tc.op, tc.want, err)
		}
	}
}
