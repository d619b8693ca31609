package state

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"time"
)

// GitOf describes the git repository holding dir: its HEAD commit and
// whether anything in it differs from HEAD. nil when dir is not in a
// repository (or git is not installed): the record then has no git part.
func GitOf(ctx context.Context, dir string) *Git {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	commit, err := git(ctx, dir, "rev-parse", "--verify", "HEAD")
	if err != nil || commit == "" {
		return nil
	}
	status, err := git(ctx, dir, "status", "--porcelain", "--untracked-files=normal")
	if err != nil {
		return nil
	}
	return &Git{Commit: commit, Dirty: status != ""}
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	// A spec directory owned by another user (sudo make demo) is still
	// the operator's repository.
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*")
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return strings.TrimSpace(out.String()), nil
}
