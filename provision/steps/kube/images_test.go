package kube_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// ctrList answers `ctr images ls` for images "NAME" (at the test bundle's
// digest) or "NAME=DIGEST"; bare digests are the CRI's own entries.
func ctrList(cmd host.Cmd, have []string) error {
	fmt.Fprintln(cmd.Stdout, "REF                                       TYPE                                       DIGEST  SIZE PLATFORMS LABELS")
	for _, h := range have {
		name, digest, ok := strings.Cut(h, "=")
		if !ok {
			digest = imageDigest(name)
		}
		fmt.Fprintf(cmd.Stdout, "%s application/vnd.oci.image.manifest.v1+json %s 74.0 MiB linux/amd64 io.cri-containerd.image=managed\n", name, digest)
	}
	return nil
}

func TestImages(t *testing.T) {
	ctx := context.Background()
	b := testBundle(t)
	for _, tc := range []struct {
		name, role string
		preloaded  []string
		want       step.Action
	}{
		{name: "worker-fresh", role: "worker", want: step.ActionCreate},
		{name: "control-plane-fresh", role: "control-plane", want: step.ActionCreate},
		{name: "worker-partial", role: "worker", preloaded: []string{"registry.local/k8s/pause:3.10.1", "sha256:0123abcd"}, want: step.ActionUpdate},
		// kube-proxy rebuilt under the same name: imported again.
		{name: "worker-rebuilt", role: "worker", preloaded: []string{"registry.local/k8s/pause:3.10.1", "registry.local/k8s/kube-proxy:v1.34.10=sha256:0ld",
			"registry.local/k8s/coredns:v1.12.1", "registry.local/clusterctl/flannel:v0.28.10"}, want: step.ActionUpdate},
		{name: "worker-done", role: "worker", preloaded: []string{"registry.local/k8s/pause:3.10.1", "registry.local/k8s/kube-proxy:v1.34.10",
			"registry.local/k8s/coredns:v1.12.1", "registry.local/clusterctl/flannel:v0.28.10"}, want: step.ActionNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := kube.Images{Role: tc.role}
			h := newNode(t, "h1")
			// ctr answers from what was preloaded and imported; an import
			// names the image as the archive's annotation does.
			have := append([]string{}, tc.preloaded...)
			byFile := map[string]string{}
			for _, f := range b.Of("image") {
				byFile[f.Path[strings.LastIndexByte(f.Path, '/')+1:]] = f.Image
			}
			h.ExpectFunc("ctr images ls", func(l string) bool { return strings.Contains(l, "ctr -n k8s.io images ls") }).Do(
				func(_ context.Context, cmd host.Cmd) error { return ctrList(cmd, have) }).AnyTimes()
			h.ExpectFunc("ctr import", func(l string) bool { return strings.HasPrefix(l, "ctr -n k8s.io images import ") }).Do(
				func(_ context.Context, cmd host.Cmd) error {
					f := strings.Fields(cmd.Line)[5]
					_, name, _ := strings.Cut(f[strings.LastIndexByte(f, '/')+1:], "-") // staged as DIGEST-NAME
					have = append(have, byFile[name])
					return nil
				}).AnyTimes()
			tg := step.Target{Host: h, Facts: freshFacts("h1"), Bundle: b}
			ch, err := op.Check(ctx, tg)
			if err != nil || ch.Action != tc.want {
				t.Fatalf("Check: %s", steptest.Report(op, ch, err))
			}
			if err := op.Apply(ctx, tg); err != nil {
				t.Fatal(err)
			}
			ch2, err := op.Check(ctx, tg)
			if err != nil || ch2.Action != step.ActionNone {
				t.Errorf("Check after Apply: %s", steptest.Report(op, ch2, err))
			}
			if tc.role == "worker" && strings.Contains(strings.Join(have, " "), "kube-apiserver") {
				t.Errorf("worker got control-plane images: %v", have)
			}
			steptest.Golden(t, "images-"+tc.name, steptest.Section("check", steptest.Report(op, ch, err)), steptest.Section("transcript", h.Transcript()))
		})
	}
}

func TestImagesErrors(t *testing.T) {
	ctx := context.Background()
	h := newNode(t, "h1")
	h.ExpectFunc("ctr images ls", func(l string) bool { return strings.Contains(l, "images ls") }).AnyTimes()
	var onlyBins []string
	for p := range bundleFiles {
		if strings.HasPrefix(p, "images/") {
			onlyBins = append(onlyBins, p)
		}
	}
	op := kube.Images{Role: "worker"}
	if _, err := op.Check(ctx, step.Target{Host: h, Facts: freshFacts("h1"), Bundle: testBundle(t, onlyBins...)}); err == nil || !strings.Contains(err.Error(), "has no images") {
		t.Errorf("bundle without images: %v", err)
	}
	if _, err := op.Check(ctx, step.Target{Host: h, Facts: freshFacts("h1")}); err == nil || !strings.Contains(err.Error(), "no bundle was given") {
		t.Errorf("no bundle: %v", err)
	}
	// An archive whose annotation names another image is caught.
	h2 := newNode(t, "h2")
	h2.ExpectFunc("ctr images ls", func(l string) bool { return strings.Contains(l, "images ls") }).AnyTimes()
	h2.ExpectFunc("import", func(l string) bool { return strings.HasPrefix(l, "ctr -n k8s.io images import") }).AnyTimes()
	err := op.Apply(ctx, step.Target{Host: h2, Facts: freshFacts("h2"), Bundle: testBundle(t)})
	if err == nil || !strings.Contains(err.Error(), "at the archive's digest after the import") {
		t.Errorf("wrong annotation: %v", err)
	}
	// An archive that is not an OCI layout is named.
	bad := testBundle(t)
	if err := os.WriteFile(filepath.Join(bad.Dir, "images/pause.tar"), []byte("not a tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Check(ctx, step.Target{Host: h, Facts: freshFacts("h1"), Bundle: bad}); err == nil || !strings.Contains(err.Error(), "bundle image images/pause.tar: no index.json (not an OCI archive)") {
		t.Errorf("garbage archive: %v", err)
	}
}
