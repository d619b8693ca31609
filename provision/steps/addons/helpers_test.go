package addons_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
)

var _ = flag.Bool("update", false, "rewrite golden files")

// testBundle holds fake image archives named as the e2e artifacts are.
func testBundle(t *testing.T, images ...string) *bundle.Bundle {
	t.Helper()
	dir := t.TempDir()
	m := bundle.Manifest{FormatVersion: bundle.FormatVersion}
	for _, img := range images {
		name := img[strings.LastIndexByte(img, '/')+1 : strings.LastIndexByte(img, ':')]
		rel := "images/" + name + ".tar"
		content := []byte("fake " + img + "\n")
		if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), content, 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(content)
		m.Files = append(m.Files, bundle.File{Path: rel, Kind: bundle.KindImage, SHA256: hex.EncodeToString(s[:]), Size: int64(len(content)), Image: img})
	}
	raw, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestName), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func someFacts() *facts.Facts { return &facts.Facts{Host: "h1", OSFamily: "debian"} }

// report renders a Check result for a golden file.
func report(op step.Op, ch step.Change, err error) string {
	var b strings.Builder
	if err != nil {
		fmt.Fprintf(&b, "%s: error: %v\n", op.Kind(), err)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %s\n", op.Kind(), ch.Action)
	for _, d := range ch.Diff {
		fmt.Fprintf(&b, "  %s %s: %s -> %s\n", ch.Action.Symbol(), d.Key, d.From, d.To)
	}
	return b.String()
}

func golden(t *testing.T, name string, parts ...string) {
	t.Helper()
	hosttest.AssertGolden(t, filepath.Join("testdata", name+".golden"), strings.Join(parts, ""))
}

func section(title, body string) string { return "=== " + title + "\n" + body }

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
