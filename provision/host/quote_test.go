package host_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

// shPrintf runs /bin/sh -c 'printf %s '"$(Quote s)" in dir and returns what
// printf printed.
func shPrintf(t testing.TB, dir, s string) string {
	t.Helper()
	c := exec.Command("/bin/sh", "-c", "printf %s "+host.Quote(s))
	c.Dir = dir
	out, err := c.Output()
	if err != nil {
		t.Fatalf("sh -c printf %%s %s: %v", host.Quote(s), err)
	}
	return string(out)
}

func TestQuoteRoundTripThroughShell(t *testing.T) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "canary")
	for _, s := range hosttest.HostileStrings {
		s = strings.ReplaceAll(s, "CANARY", canary)
		t.Run(s, func(t *testing.T) {
			if got := shPrintf(t, dir, s); got != s {
				t.Errorf("Quote(%q) = %s; shell gave back %q", s, host.Quote(s), got)
			}
			if _, err := os.Stat(canary); err == nil {
				t.Fatalf("Quote(%q) = %s ran a command", s, host.Quote(s))
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files created in %s: %v", dir, entries)
	}
}

func TestQuoteForms(t *testing.T) {
	for in, want := range map[string]string{
		"":          "''",
		"abc-1.2/x": "abc-1.2/x",
		"user@h:22": "user@h:22",
		"it's":      `'it'\''s'`,
		"a b":       "'a b'",
		"a=b":       "'a=b'",
		"~":         "'~'",
		"$x":        "'$x'",
		"-n":        "-n",
	} {
		if got := host.Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestJoin(t *testing.T) {
	got := host.Join("install", "-m", "0644", "my file", "/etc/x;y")
	if want := `install -m 0644 'my file' '/etc/x;y'`; got != want {
		t.Errorf("Join = %s, want %s", got, want)
	}
	dir := t.TempDir()
	args := []string{"a b", "$(id)", "'", "", "x\ny"}
	c := exec.Command("/bin/sh", "-c", "set -- "+host.Join(args...)+`; for a in "$@"; do printf '<%s>' "$a"; done`)
	c.Dir = dir
	out, err := c.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "<a b><$(id)><'><><x\ny>"; string(out) != want {
		t.Errorf("Join args arrived as %q, want %q", out, want)
	}
}

func TestCheckLineRefusesNUL(t *testing.T) {
	if err := host.CheckLine("echo ok"); err != nil {
		t.Fatal(err)
	}
	err := host.CheckLine("echo " + host.Quote("a\x00b"))
	if !errors.Is(err, host.ErrInvalidCommand) || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("CheckLine with NUL = %v", err)
	}
}

func FuzzQuote(f *testing.F) {
	for _, s := range hosttest.HostileStrings {
		f.Add(s)
	}
	f.Add("'\\''")
	f.Add("$'\\x41'")
	dir := f.TempDir()
	canary := filepath.Join(dir, "canary")
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ReplaceAll(s, "CANARY", canary)
		if strings.IndexByte(s, 0) >= 0 {
			if host.CheckLine("printf %s "+host.Quote(s)) == nil {
				t.Fatalf("CheckLine accepted a NUL")
			}
			return
		}
		if got := shPrintf(t, dir, s); got != s {
			t.Fatalf("Quote(%q) = %s; shell gave back %q", s, host.Quote(s), got)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("Quote(%q) = %s created %v", s, host.Quote(s), entries)
		}
	})
}

// TestPollLine runs the wait through sh: a check that turns true ends it;
// one that never does runs show once and fails after the deadline, and
// the group composes after &&.
func TestPollLine(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "ready")
	ok := host.PollLine("[ -e "+host.Quote(flag)+" ]", "", 5*time.Second, 100*time.Millisecond)
	cmd := exec.Command("sh", "-c", "(sleep 0.3; touch "+host.Quote(flag)+") & true && "+ok+" && echo done")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "done" {
		t.Fatalf("wait that succeeds: %v: %q", err, out)
	}
	never := host.PollLine("false", "echo 'still not ready' >&2", time.Second, 100*time.Millisecond)
	out, err = exec.Command("sh", "-c", "true && "+never+"; echo unreachable").CombinedOutput()
	if err == nil || strings.TrimSpace(string(out)) != "still not ready" {
		t.Fatalf("wait that times out: %v: %q", err, out)
	}
}
