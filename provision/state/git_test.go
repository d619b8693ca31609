package state

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func gitOf(dir string) (*Git, error) {
	return GitOf(context.Background(), dir)
}

// newRepo makes a repository with one commit in a fresh directory and
// returns it with the commit's hash.
func newRepo(t *testing.T) (dir, commit string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: the test builds its repositories with it")
	}
	dir = t.TempDir()
	gitRun(t, dir, "init", "-q")
	writeFile(t, filepath.Join(dir, "cluster.cue"), "package clusterctl\n")
	writeFile(t, filepath.Join(dir, "hosts", "a.cue"), "package clusterctl\n")
	writeFile(t, filepath.Join(dir, ".gitignore"), "*.log\nbuild/\n")
	gitRun(t, dir, "add", ".")
	gitRun(t, dir, "commit", "-q", "-m", "spec")
	return dir, gitRun(t, dir, "rev-parse", "HEAD")
}

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGitOf(t *testing.T) {
	if g, err := gitOf(t.TempDir()); g != nil || err != nil {
		t.Fatalf("a plain directory: %+v, %v; want no git part and no warning", g, err)
	}
	dir, commit := newRepo(t)
	steps := []struct {
		name  string
		edit  func()
		dirty bool
	}{
		{"clean", func() {}, false},
		{"ignored files", func() {
			writeFile(t, filepath.Join(dir, "apply.log"), "x")
			writeFile(t, filepath.Join(dir, "build", "out"), "x")
		}, false},
		{"untracked file", func() { writeFile(t, filepath.Join(dir, "new.cue"), "x") }, true},
		{"untracked removed", func() { os.Remove(filepath.Join(dir, "new.cue")) }, false},
		{"edited", func() { writeFile(t, filepath.Join(dir, "cluster.cue"), "package clusterctl\n// edit\n") }, true},
	}
	for _, s := range steps {
		s.edit()
		for _, d := range []string{dir, filepath.Join(dir, "hosts")} {
			g, err := gitOf(d)
			if err != nil || g == nil || g.Commit != commit || g.Dirty != s.dirty {
				t.Errorf("%s, from %s: %+v, %v; want commit %s dirty %v", s.name, d, g, err, commit, s.dirty)
			}
		}
	}
}

// A repository's config is not trusted: its fsmonitor, hooks and filter
// drivers must never run, even for a repository the operator owns.
func TestGitOfHostileRepository(t *testing.T) {
	dir, commit := newRepo(t)
	marker := filepath.Join(t.TempDir(), "ran")
	script := filepath.Join(t.TempDir(), "evil")
	writeFile(t, script, "#!/bin/sh\necho \"$0 $*\" >> "+marker+"\ncat\n")
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	hooks := filepath.Join(dir, ".git", "hooks")
	for _, h := range []string{"fsmonitor-watchman", "post-index-change", "post-checkout", "pre-commit", "reference-transaction"} {
		writeFile(t, filepath.Join(hooks, h), "#!/bin/sh\n"+script+" hook "+h+"\n")
		if err := os.Chmod(filepath.Join(hooks, h), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, ".gitattributes"), "* filter=evil\n")
	cfg := filepath.Join(dir, ".git", "config")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("[core]\n\tfsmonitor = " + script + "\n\thooksPath = " + hooks + "\n\tuntrackedCache = true\n" +
		"[filter \"evil\"]\n\tclean = " + script + " clean\n\tsmudge = " + script + " smudge\n\tprocess = " + script + " process\n\trequired = true\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Stat-dirty but unchanged: git would hash it through the clean filter.
	later := filepath.Join(dir, "cluster.cue")
	if err := os.Chtimes(later, time.Now().Add(5*time.Second), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}

	g, err := gitOf(dir)
	if err != nil || g == nil || g.Commit != commit || !g.Dirty {
		t.Errorf("hostile repository: %+v, %v; want commit %s, dirty (.gitattributes is new)", g, err, commit)
	}
	os.Remove(filepath.Join(dir, ".gitattributes"))
	g, err = gitOf(dir)
	if err != nil || g == nil || g.Commit != commit || g.Dirty {
		t.Errorf("hostile repository, clean: %+v, %v; want commit %s, clean", g, err, commit)
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Errorf("the repository's config ran a program:\n%s", b)
	}
}

// Only the operator's own repository (or, under sudo, the invoking user's)
// is read; any other gets no git part and a warning naming the owner.
func TestGitOfOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test chowns a repository to another user (uid 65534)")
	}
	dir, commit := newRepo(t)
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sudoUID string
		ok      bool
	}{{"", false}, {"1234", false}, {"65534", true}} {
		t.Run("SUDO_UID="+tc.sudoUID, func(t *testing.T) {
			t.Setenv("SUDO_UID", tc.sudoUID)
			g, err := gitOf(dir)
			switch {
			case tc.ok && (err != nil || g == nil || g.Commit != commit):
				t.Errorf("repository of the sudo user: %+v, %v; want commit %s", g, err, commit)
			case !tc.ok && g != nil:
				t.Errorf("repository of uid 65534 read: %+v", g)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), strconv.Itoa(65534))):
				t.Errorf("warning %v does not name the owner", err)
			}
		})
	}
}
