package render

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/step"
)

// PlanMarkdown writes the plan for a pull-request comment (GitHub and
// GitLab flavoured markdown): warnings first, a summary table, the state
// record, then one collapsed section per host and one for cluster steps.
// Everything that comes from the spec or the hosts goes through escapeMD,
// or into a code block fenced longer than any backtick run it holds.
func PlanMarkdown(w io.Writer, p *plan.Plan) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "## clusterctl plan: cluster <code>%s</code>\n\n", escapeMD(p.Cluster))
	fmt.Fprintf(bw, "Spec sha256:<code>%s</code>\n", escapeMD(shortDigest(p.SpecDigest)))
	writeWarnings(bw, p)
	scopes := groupByScope(p.Steps)
	writeSummaryTable(bw, p, scopes)
	writeStateRecord(bw, p)
	fmt.Fprintln(bw, "\n### Steps")
	for _, sc := range scopes {
		writeScope(bw, sc)
	}
	return bw.Flush()
}

func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// Warnings lists what a reviewer should read before the steps, in the
// order the text plan and the CLI show them.
func Warnings(p *plan.Plan) []string {
	var out []string
	if p.Offline {
		out = append(out, "Offline plan: facts were not gathered, so every host is treated as blank.")
	}
	out = append(out, p.Warnings...)
	return out
}

func writeWarnings(w io.Writer, p *plan.Plan) {
	ws := Warnings(p)
	if len(ws) == 0 {
		return
	}
	fmt.Fprintln(w, "\n### Warnings")
	fmt.Fprintln(w)
	for _, m := range ws {
		fmt.Fprintf(w, "- %s\n", escapeMD(m))
	}
}

// scope is a host's steps, or the cluster-wide ones ("cluster/...").
type scope struct {
	name    string
	steps   []plan.PlannedStep
	summary plan.Summary
}

// groupByScope splits steps by the host their ID starts with, else by the
// ID's first segment ("cluster"), in the
// order scopes first appear (the plan's topological order), with the
// cluster-wide steps last.
func groupByScope(steps []plan.PlannedStep) []*scope {
	var out []*scope
	var cluster *scope
	byName := map[string]*scope{}
	for _, s := range steps {
		name := s.Host
		if name == "" || stepHost(s) != "" {
			name, _, _ = strings.Cut(s.ID, "/") // "cluster"
		}
		sc := byName[name]
		if sc == nil {
			sc = &scope{name: name}
			byName[name] = sc
			if name == "cluster" {
				cluster = sc
			} else {
				out = append(out, sc)
			}
		}
		sc.steps = append(sc.steps, s)
		sc.summary.Count(s.Action)
	}
	if cluster != nil {
		out = append(out, cluster)
	}
	return out
}

func writeSummaryTable(w io.Writer, p *plan.Plan, scopes []*scope) {
	fmt.Fprintln(w, "\n### Summary")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Scope | Add | Change | Remove | Unchanged | Read |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: |")
	row := func(name string, s plan.Summary) {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d |\n", name, s.Add, s.Change, s.Remove, s.Unchanged, s.Read)
	}
	for _, sc := range scopes {
		row(escapeMD(sc.name), sc.summary)
	}
	row("**Total**", p.Summary)
	fmt.Fprintf(w, "\n**%s**\n", SummaryLine(p.Summary))
	// Steps record no upload sizes yet: say so rather than guess.
	fmt.Fprintln(w, "\nBytes to send: unknown (this plan records no upload sizes).")
}

func writeStateRecord(w io.Writer, p *plan.Plan) {
	fmt.Fprintln(w, "\n### State record")
	fmt.Fprintln(w)
	r := p.Previous
	switch {
	case r == nil && p.Offline:
		fmt.Fprintln(w, "Not read: an offline plan does not ask the cluster for its record of the last apply.")
		return
	case r == nil:
		fmt.Fprintln(w, "None: the cluster has no record of an apply by clusterctl.")
		return
	}
	fmt.Fprintf(w, "- Last %s.\n", escapeMD(r.Summary()))
	commit := "none recorded"
	if r.Git != nil && r.Git.Commit != "" {
		commit = "<code>" + escapeMD(r.Git.Commit) + "</code>"
		if r.Git.Dirty {
			commit += " (with uncommitted changes)"
		}
	}
	fmt.Fprintf(w, "- Last applied commit: %s\n", commit)
	if r.SpecDigest == p.SpecDigest {
		fmt.Fprintln(w, "- Spec changed since: no.")
	} else {
		fmt.Fprintf(w, "- Spec changed since: **yes** (sha256:<code>%s</code> then).\n", escapeMD(shortDigest(r.SpecDigest)))
	}
}

// writeScope is one collapsed section: its counts in the summary line, the
// steps that would do something in a diff block (unchanged steps are
// counted, not listed, as in the text plan).
func writeScope(w io.Writer, sc *scope) {
	title := "Cluster-wide steps"
	if sc.name != "cluster" {
		title = "Host <code>" + escapeMD(sc.name) + "</code>"
	}
	fmt.Fprintf(w, "\n<details><summary>%s: %s</summary>\n\n", title, scopeLine(sc.summary))
	var body strings.Builder
	for _, s := range sc.steps {
		if s.Action == step.ActionNone {
			continue
		}
		fmt.Fprintf(&body, "%-2s %s", s.Action.Symbol(), s.ID)
		if where := stepHost(s); where != "" {
			fmt.Fprintf(&body, "  (on %s)", where)
		}
		body.WriteString("\n")
		for _, d := range s.Diff {
			fmt.Fprintf(&body, "     %s\n", oneLine(diffLine(s.Action, d)))
		}
		if s.Note != "" {
			fmt.Fprintf(&body, "     # %s\n", oneLine(s.Note))
		}
	}
	if body.Len() == 0 {
		fmt.Fprintln(w, "Nothing to do.")
	} else {
		fence := codeFence(body.String())
		fmt.Fprintf(w, "%sdiff\n%s%s\n", fence, body.String(), fence)
	}
	fmt.Fprintln(w, "\n</details>")
}

// scopeLine is a section's counts, for its one-line <summary>.
func scopeLine(s plan.Summary) string {
	line := fmt.Sprintf("%d to add, %d to change, %d to remove, %d unchanged", s.Add, s.Change, s.Remove, s.Unchanged)
	if s.Changes() == 0 {
		line = fmt.Sprintf("no changes, %d unchanged", s.Unchanged)
	}
	if s.Read > 0 {
		line += fmt.Sprintf(", %d to read", s.Read)
	}
	return line
}

// oneLine keeps a value on its line, so a newline in a host's value cannot
// start a line that reads as another diff line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

// codeFence is a backtick fence longer than any backtick run in body, so
// nothing in body can close the code block (CommonMark's rule).
func codeFence(body string) string {
	longest, run := 0, 0
	for _, r := range body {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// mdSpecial: HTML's characters, a table's cell separator, and markdown's
// inline syntax (code, escapes, emphasis, links and images, strikethrough,
// math). Block syntax (lists, headings) only counts at the start of a
// line, where escapeMD's output never goes.
const mdSpecial = "&<>\"'|`\\*_[]~#!$"

// escapeMD makes text from the spec or the hosts inert in a markdown table
// cell, list item or HTML element such as <summary>: HTML and markdown
// punctuation become numeric character references (markdown does not parse
// them as syntax, HTML shows them as the characters), and line breaks
// become <br> so the text cannot end a table row or an HTML block.
func escapeMD(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r':
		case r == '\n':
			b.WriteString("<br>")
		case r == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(r):
			b.WriteRune('\uFFFD')
		case strings.ContainsRune(mdSpecial, r):
			fmt.Fprintf(&b, "&#%d;", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
