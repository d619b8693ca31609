//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
)

// BuildArtifacts runs e2e/artifacts/build.sh (cached per version: well under
// a second once built) and returns its staging directory.
func BuildArtifacts(t *testing.T) string {
	t.Helper()
	return BuildArtifactsVersion(t, "")
}

// BuildArtifactsVersion is BuildArtifacts for Kubernetes version (e.g.
// "v1.33.13"; "" is build.sh's default).
func BuildArtifactsVersion(t *testing.T, version string) string {
	t.Helper()
	cmd := exec.Command("bash", "artifacts/build.sh")
	if version != "" {
		cmd.Env = append(os.Environ(), "K8S_VERSION="+version)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("e2e/artifacts/build.sh: %v\n%s", err, lastLines(errb.String(), 30))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	for _, p := range []string{"ready: ", "cached: "} {
		if dir, ok := strings.CutPrefix(last, p); ok {
			return dir
		}
	}
	t.Fatalf("e2e/artifacts/build.sh ended with %q, want ready: DIR or cached: DIR", last)
	return ""
}

// ApplyEvent is one line of `clusterctl apply -o json`.
type ApplyEvent struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	Step       string    `json:"step"`
	Status     string    `json:"status"`
	Error      string    `json:"error"`
	DurationMS float64   `json:"durationMs"`
}

// ApplyEvents reads the JSON event lines of an apply's output.
func ApplyEvents(out string) []ApplyEvent {
	var evs []ApplyEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e ApplyEvent
		if l := sc.Text(); strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &e) == nil && e.Type != "" {
			evs = append(evs, e)
		}
	}
	return evs
}

// Phase names a step by what it does: its kind without host or manifest
// name ("h2/kube/join-worker" -> "kube/join-worker").
func Phase(stepID string) string {
	parts := strings.Split(stepID, "/")
	if len(parts) >= 3 {
		return parts[1] + "/" + parts[2]
	}
	return stepID
}

// PhaseTable is the per-phase timing of an apply: from the first step of
// the phase starting to the last finishing (wall, across hosts), the
// longest single step, and how many steps changed something.
func PhaseTable(evs []ApplyEvent) string {
	type span struct {
		first, last time.Time
		longest     float64
		steps       int
		changed     int
	}
	spans := map[string]*span{}
	var start, end time.Time
	for _, e := range evs {
		if start.IsZero() || e.Time.Before(start) {
			start = e.Time
		}
		if e.Time.After(end) {
			end = e.Time
		}
		p := Phase(e.Step)
		s := spans[p]
		if s == nil {
			s = &span{}
			spans[p] = s
		}
		switch e.Type {
		case "start":
			if s.first.IsZero() || e.Time.Before(s.first) {
				s.first = e.Time
			}
		case "done", "failed":
			s.steps++
			if e.Time.After(s.last) {
				s.last = e.Time
			}
			s.longest = max(s.longest, e.DurationMS/1000)
			if e.Status == "changed" {
				s.changed++
			}
		}
	}
	names := make([]string, 0, len(spans))
	for n := range spans {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return spans[names[i]].first.Before(spans[names[j]].first) })
	var b strings.Builder
	fmt.Fprintf(&b, "%-22s %8s %8s %8s %6s %7s\n", "phase", "from", "to", "wall", "steps", "changed")
	for _, n := range names {
		s := spans[n]
		fmt.Fprintf(&b, "%-22s %7.1fs %7.1fs %7.1fs %6d %7d   (longest step %.1fs)\n", n,
			s.first.Sub(start).Seconds(), s.last.Sub(start).Seconds(), s.last.Sub(s.first).Seconds(), s.steps, s.changed, s.longest)
	}
	fmt.Fprintf(&b, "%-22s %7.1fs %7.1fs %7.1fs\n", "apply (all steps)", 0.0, end.Sub(start).Seconds(), end.Sub(start).Seconds())
	return b.String()
}

// Kubectl runs the machine's kubectl (the bundle's own) with args and
// returns its stdout.
func Kubectl(t *testing.T, kubectl, kubeconfig, context string, args ...string) string {
	t.Helper()
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "--context", context, "--request-timeout=20s"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// Eventually retries check every second until it returns nil or timeout
// passes; the last error fails the test.
func Eventually(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

// Curl GETs url from this machine with curl and returns the body.
func Curl(ctx context.Context, url string) (string, error) {
	out, err := exec.CommandContext(ctx, "curl", "-sS", "-f", "-m", "5", url).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("curl %s: %v: %s", url, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// CopyFile copies src to dst (mode 0644), making dst's directory.
func CopyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testhostsInventory is newEnv's inventory (cluster "e2e") with n control
// planes.
func testhostsInventory(user string, n int) testhosts.InventoryOptions {
	return testhosts.InventoryOptions{Name: "e2e", User: user, ControlPlanes: n}
}
