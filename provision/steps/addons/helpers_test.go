package addons_test

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var _ = flag.Bool("update", false, "rewrite golden files")

// testBundle holds fake image archives named as the e2e artifacts are.
func testBundle(t *testing.T, images ...string) *bundle.Bundle {
	t.Helper()
	var files []steptest.File
	for _, img := range images {
		name := img[strings.LastIndexByte(img, '/')+1 : strings.LastIndexByte(img, ':')]
		files = append(files, steptest.File{
			File:    bundle.File{Path: "images/" + name + ".tar", Kind: bundle.KindImage, Image: img},
			Content: []byte("fake " + img + "\n"),
		})
	}
	return steptest.WriteBundle(t, nil, files...)
}

func someFacts() *facts.Facts { return &facts.Facts{Host: "h1", OSFamily: "debian"} }

func isDiff(l string) bool  { return strings.Contains(l, " diff --server-side ") }
func isApply(l string) bool { return strings.Contains(l, " apply --server-side ") }

// kubectlDiffOutput is what kubectl diff prints for a new namespace.
const newNamespaceDiff = `diff -u -N /tmp/LIVE-2364/v1.Namespace..kube-flannel /tmp/MERGED-2364/v1.Namespace..kube-flannel
--- /tmp/LIVE-2364/v1.Namespace..kube-flannel	2026-11-22 01:56:30.000000000 +0000
+++ /tmp/MERGED-2364/v1.Namespace..kube-flannel	2026-11-22 01:56:30.000000000 +0000
@@ -0,0 +1,10 @@
+apiVersion: v1
+kind: Namespace
`

const changedDaemonSetDiff = `diff -u -N /tmp/LIVE-9/apps.v1.DaemonSet.kube-flannel.kube-flannel-ds /tmp/MERGED-9/apps.v1.DaemonSet.kube-flannel.kube-flannel-ds
--- /tmp/LIVE-9/apps.v1.DaemonSet.kube-flannel.kube-flannel-ds
+++ /tmp/MERGED-9/apps.v1.DaemonSet.kube-flannel.kube-flannel-ds
@@ -40,7 +40,7 @@
-        image: registry.local/clusterctl/flannel:v0.28.9
+        image: registry.local/clusterctl/flannel:v0.28.10
`

type hostCmd = host.Cmd

func readAll(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}

func stepTarget(h host.Host, b *bundle.Bundle) step.Target {
	return step.Target{Host: h, Facts: someFacts(), Bundle: b}
}
