// Package steptest holds what the step packages' tests share: the golden
// rendering of a check result and a writer of small fake bundles.
package steptest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Report renders a Check result for a golden file.
func Report(op step.Op, ch step.Change, err error) string {
	var b strings.Builder
	if err != nil {
		fmt.Fprintf(&b, "%s: error: %v\n", op.Kind(), err)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %s\n", op.Kind(), ch.Action)
	for _, d := range ch.Diff {
		fmt.Fprintf(&b, "  %s %s: %s -> %s\n", ch.Action.Symbol(), d.Key, d.From, d.To)
	}
	if ch.Note != "" {
		fmt.Fprintf(&b, "  note: %s\n", ch.Note)
	}
	return b.String()
}

// Golden compares the joined parts with testdata/NAME.golden.
func Golden(t *testing.T, name string, parts ...string) {
	t.Helper()
	hosttest.AssertGolden(t, filepath.Join("testdata", name+".golden"), strings.Join(parts, ""))
}

// Section titles one part of a golden file.
func Section(title, body string) string { return "=== " + title + "\n" + body }

// File is one artifact of a fake bundle; SHA256 and Size are computed.
type File struct {
	bundle.File
	Content []byte
}

// WriteBundle writes files and their manifest into a temporary directory
// and opens it as a bundle.
func WriteBundle(t *testing.T, versions map[string]string, files ...File) *bundle.Bundle {
	t.Helper()
	dir := t.TempDir()
	m := bundle.Manifest{FormatVersion: bundle.FormatVersion, Versions: versions}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(f.Content)
		f.SHA256, f.Size = hex.EncodeToString(sum[:]), int64(len(f.Content))
		m.Files = append(m.Files, f.File)
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestName), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
