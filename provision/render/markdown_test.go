package render

import (
	"bytes"
	"flag"
	"html"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/state"
	"github.com/clusterctl/clusterctl/provision/step"
)

// -update rewrites golden files (read by hosttest.AssertGolden).
var _ = flag.Bool("update", false, "rewrite golden files")

// hostile is text a host or a spec could hand us.
const hostile = "a|b `code` ```fence``` <script>alert(1)</script> </details> *em* _u_ [x](http://e) ![i](j) ~~s~~ $x$ # h \\ & \"q\" 'a'\nnext line\n\n</details>"

func TestEscapeMD(t *testing.T) {
	for name, in := range map[string]string{
		"hostile": hostile,
		"pipes":   "| a | b |",
		"details": "</details><details><summary>x</summary>",
		"script":  "<script>alert(document.cookie)</script>",
		"ticks":   "````",
		"newline": "line1\nline2\n\nline4",
		"plain":   "cp1 10.0.0.1:6443 node-1/hostprep/sysctl",
	} {
		t.Run(name, func(t *testing.T) {
			got := escapeMD(in)
			for _, bad := range []string{"|", "`", "<script", "</details", "<details", "\n", "*", "_", "[", "$"} {
				if strings.Contains(got, bad) {
					t.Errorf("escapeMD(%q) = %q keeps %q", in, got, bad)
				}
			}
			// Nothing lost or invented: the reader sees the input.
			if back := html.UnescapeString(strings.ReplaceAll(got, "<br>", "\n")); back != in {
				t.Errorf("escapeMD(%q) reads back as %q", in, back)
			}
		})
	}
	if got := escapeMD("a\x00b\tc\rd"); got != "a\uFFFDb cd" {
		t.Errorf("control characters: %q", got)
	}
}

func TestCodeFence(t *testing.T) {
	for body, want := range map[string]string{
		"plain":         "```",
		"a ` b":         "```",
		"a ``` b":       "````",
		"```\n`````\nx": "``````",
	} {
		if got := codeFence(body); got != want {
			t.Errorf("codeFence(%q) = %q, want %q", body, got, want)
		}
	}
}

// hostilePlan has hostile text wherever a host or the spec can put some.
func hostilePlan() *plan.Plan {
	return &plan.Plan{
		FormatVersion: plan.FormatVersion,
		Cluster:       "c|</details>",
		SpecDigest:    strings.Repeat("b", 64),
		Warnings:      []string{"host evil|`x` left the spec: " + hostile},
		Previous: &state.Record{
			Cluster: "c", SpecDigest: strings.Repeat("a", 64),
			Git:        &state.Git{Commit: "0123456789abcdef0123456789abcdef01234567</details>", Dirty: true},
			Clusterctl: "v1", Distribution: "kubeadm", KubernetesVersion: "1.37.2",
			AppliedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), AppliedBy: "<img src=x onerror=alert(1)>|ci",
		},
		Steps: []plan.PlannedStep{
			{ID: "evil|`</details>/hostprep/sysctl", Host: "evil|`</details>", Kind: "hostprep/sysctl", Action: step.ActionUpdate,
				Diff: []step.DiffLine{{Key: "net.x", From: "0", To: hostile}}, Note: "note\n+ fake step"},
			{ID: "evil|`</details>/hostprep/swap", Host: "evil|`</details>", Kind: "hostprep/swap", Action: step.ActionNone},
			{ID: "cluster/addons/cni", Host: "evil|`</details>", Kind: "addons/cni", Action: step.ActionCreate,
				Diff: []step.DiffLine{{Key: "cni", To: "````\n</details>\n<script>x</script>"}}},
			{ID: "cluster/addons/health", Host: "evil|`</details>", Kind: "addons/health", Action: step.ActionRead},
		},
		Summary: plan.Summary{Add: 1, Change: 1, Unchanged: 1, Read: 1},
	}
}

// Hostile text cannot end a section, a table row or a code block early,
// nor add HTML: the document keeps the shape PlanMarkdown gave it.
func TestPlanMarkdownHostile(t *testing.T) {
	var b bytes.Buffer
	if err := PlanMarkdown(&b, hostilePlan()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	hosttest.AssertGolden(t, filepath.Join("testdata", "hostile.plan.md"), out)

	var opened, closed, fenced int
	var fence string
	for _, line := range strings.Split(out, "\n") {
		if fence != "" { // inside a code block only its own fence ends it
			if line == fence {
				fence = ""
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "```"):
			fence = strings.TrimSuffix(line, "diff")
			fenced++
		case strings.HasPrefix(line, "<details>"):
			opened++
		case line == "</details>":
			closed++
		case strings.HasPrefix(line, "|"):
			if n := strings.Count(line, "|"); n != 7 {
				t.Errorf("table row has %d cell separators: %q", n, line)
			}
		}
		for _, bad := range []string{"<script", "<img"} {
			if strings.Contains(strings.ToLower(line), bad) && !strings.HasPrefix(line, "<details>") {
				t.Errorf("raw HTML outside a code block: %q", line)
			}
		}
		if strings.Count(line, "</details>") > 0 && line != "</details>" {
			t.Errorf("a line other than a section's end holds </details>: %q", line)
		}
	}
	if fence != "" {
		t.Errorf("a code block is never closed (fence %q)", fence)
	}
	if opened != 2 || closed != 2 || fenced != 2 {
		t.Errorf("%d sections opened, %d closed, %d code blocks; want 2, 2, 2", opened, closed, fenced)
	}
}

// The state record says which commit was applied last and whether the
// spec changed since; an online plan of a cluster without one says so.
func TestPlanMarkdownStateRecord(t *testing.T) {
	p := hostilePlan()
	p.Previous.Git.Commit = "0123456789abcdef0123456789abcdef01234567"
	render := func() string {
		var b bytes.Buffer
		if err := PlanMarkdown(&b, p); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	out := render()
	for _, want := range []string{
		"- Last applied commit: <code>0123456789abcdef0123456789abcdef01234567</code> (with uncommitted changes)\n",
		"- Spec changed since: **yes** (sha256:<code>aaaaaaaaaaaa</code> then).\n",
		"from commit 0123456789ab (with uncommitted changes)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	p.Previous.SpecDigest = p.SpecDigest
	if out := render(); !strings.Contains(out, "- Spec changed since: no.\n") {
		t.Errorf("unchanged spec not said:\n%s", out)
	}
	p.Previous = nil
	if out := render(); !strings.Contains(out, "None: the cluster has no record of an apply by clusterctl.") {
		t.Errorf("missing record not said:\n%s", out)
	}
}

// Warnings come before anything else a reviewer reads.
func TestPlanMarkdownWarningsFirst(t *testing.T) {
	var b bytes.Buffer
	if err := PlanMarkdown(&b, hostilePlan()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	w, s := strings.Index(out, "### Warnings"), strings.Index(out, "### Summary")
	if w < 0 || s < 0 || w > s {
		t.Errorf("warnings (at %d) do not come before the summary (at %d)", w, s)
	}
}
