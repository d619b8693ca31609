package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// gitTimeout bounds reading the repository: a huge worktree must not hold
// up a plan.
const gitTimeout = 10 * time.Second

// GitOf describes the git repository holding dir: its HEAD commit and
// whether anything in it differs from HEAD. It returns nil, nil when dir is
// in no repository or the repository has no commit yet. It returns nil and
// a warning when the repository is refused or unreadable: the apply goes on
// and the record has no git part.
//
// The repository's own config is not trusted. It is read with go-git,
// which runs no program: no core.fsmonitor, no hook, no filter driver.
// And, as git's safe.directory check does, only a repository of the user
// running clusterctl (or, under sudo, of the invoking user) is read.
func GitOf(ctx context.Context, dir string) (*Git, error) {
	root, err := findRepository(dir)
	if err != nil || root == "" {
		return nil, err
	}
	if err := checkRepositoryOwner(root); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	type result struct {
		g   *Git
		err error
	}
	ch := make(chan result, 1)
	go func() {
		g, err := readRepository(root)
		ch <- result{g, err}
	}()
	select {
	case r := <-ch:
		return r.g, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("read git repository %s: %w", root, ctx.Err())
	}
}

// findRepository returns the nearest directory from dir upwards that holds
// .git, or "" when there is none.
func findRepository(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find git repository of %s: %w", dir, err)
	}
	for {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", nil
		}
		d = parent
	}
}

// checkRepositoryOwner refuses a repository whose worktree, .git or linked
// git directory belongs to anyone but the trusted users.
func checkRepositoryOwner(root string) error {
	trusted := trustedUIDs()
	paths := []string{root, filepath.Join(root, ".git")}
	if gitdir := linkedGitDir(root); gitdir != "" {
		paths = append(paths, gitdir)
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("check owner of git repository %s: %w", root, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("check owner of git repository %s: no owner information for %s", root, p)
		}
		if !slices.Contains(trusted, int(st.Uid)) {
			return fmt.Errorf("git repository %s is not read (its config could run programs): %s is owned by uid %d, trusted: uid %s",
				root, p, st.Uid, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(trusted)), ", "), "[]"))
		}
	}
	return nil
}

// trustedUIDs is the current user and, when root runs under sudo, the user
// who invoked sudo (sudo make demo in the operator's own checkout).
func trustedUIDs() []int {
	uids := []int{os.Geteuid()}
	if os.Geteuid() == 0 {
		if n, err := strconv.Atoi(os.Getenv("SUDO_UID")); err == nil && n > 0 {
			uids = append(uids, n)
		}
	}
	return uids
}

// linkedGitDir is the git directory a .git file points to (a linked
// worktree), or "".
func linkedGitDir(root string) string {
	b, err := os.ReadFile(filepath.Join(root, ".git"))
	if err != nil {
		return ""
	}
	d, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
	if !ok {
		return ""
	}
	d = strings.TrimSpace(d)
	if !filepath.IsAbs(d) {
		d = filepath.Join(root, d)
	}
	return d
}

// commonGitDir is the git directory that holds info/exclude: .git itself,
// or for a linked worktree the main repository's.
func commonGitDir(root string) string {
	gitdir := linkedGitDir(root)
	if gitdir == "" {
		return filepath.Join(root, ".git")
	}
	b, err := os.ReadFile(filepath.Join(gitdir, "commondir"))
	if err != nil {
		return gitdir
	}
	common := strings.TrimSpace(string(b))
	if !filepath.IsAbs(common) {
		common = filepath.Join(gitdir, common)
	}
	return common
}

func readRepository(root string) (*Git, error) {
	repo, err := git.PlainOpenWithOptions(root, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("open git repository %s: %w", root, err)
	}
	head, err := repo.Head()
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return nil, nil // no commit yet
	}
	if err != nil {
		return nil, fmt.Errorf("read HEAD of git repository %s: %w", root, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("open worktree of git repository %s: %w", root, err)
	}
	// go-git reads the .gitignore files itself; add info/exclude and the
	// user's and the system's excludes, as git status does.
	wt.Excludes = append(wt.Excludes, userExcludes()...)
	wt.Excludes = append(wt.Excludes, readIgnoreFile(filepath.Join(commonGitDir(root), "info", "exclude"))...)
	status, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("read status of git repository %s: %w", root, err)
	}
	return &Git{Commit: head.Hash().String(), Dirty: !status.IsClean()}, nil
}

// userExcludes are the ignore patterns of core.excludesFile in the user's
// and the system's gitconfig, or else of git's default ~/.config/git/ignore.
func userExcludes() []gitignore.Pattern {
	rootFS := osfs.New("/")
	var ps []gitignore.Pattern
	global, _ := gitignore.LoadGlobalPatterns(rootFS)
	system, _ := gitignore.LoadSystemPatterns(rootFS)
	ps = append(append(ps, system...), global...)
	if len(global) == 0 {
		ps = append(ps, readIgnoreFile(defaultExcludesFile())...)
	}
	return ps
}

func defaultExcludesFile() string {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "git", "ignore")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".config", "git", "ignore")
}

func readIgnoreFile(p string) []gitignore.Pattern {
	if p == "" {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	var ps []gitignore.Pattern
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "#") {
			ps = append(ps, gitignore.ParsePattern(l, nil))
		}
	}
	return ps
}
