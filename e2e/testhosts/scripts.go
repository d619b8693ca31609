package testhosts

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed *.sh
var scriptFS embed.FS

// writeScripts writes the embedded scripts to cacheDir/bin/<content hash> (once) and returns that directory.
// Not a temp dir: a host's launcher keeps running the scripts after this process exits (the CLI's "up"),
// and content addressing lets concurrent runs of different versions share the cache.
func writeScripts(cacheDir string) (string, error) {
	names, err := fs.Glob(scriptFS, "*.sh")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	files := map[string][]byte{}
	for _, n := range names {
		b, err := scriptFS.ReadFile(n)
		if err != nil {
			return "", err
		}
		files[n] = b
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	dir := filepath.Join(cacheDir, "bin", hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("create script dir: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return "", fmt.Errorf("create script dir: %w", err)
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, n), b, 0o755); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("write script %s: %w", n, err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("write script dir: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		// Another process won the race: its copy is identical.
		if _, statErr := os.Stat(filepath.Join(dir, ".complete")); statErr != nil {
			return "", fmt.Errorf("install script dir: %w", err)
		}
	}
	return dir, nil
}

// runner runs the scripts of one cluster with its configuration in the environment.
type runner struct {
	dir  string
	env  []string
	logf func(format string, args ...any)
}

// ScriptError is a script that failed: its name, arguments, exit error and the tail of its output.
type ScriptError struct {
	Script string
	Args   []string
	Err    error
	Output string
}

func (e *ScriptError) Error() string {
	out := strings.TrimSpace(e.Output)
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return fmt.Sprintf("%s %s: %v\n%s", e.Script, strings.Join(e.Args, " "), e.Err, out)
}

func (e *ScriptError) Unwrap() error { return e.Err }

// run runs a script and returns its combined output. With progress, every output line also goes to logf.
// Cancelling ctx kills the script's whole process group (the hosts it launched are in their own sessions).
func (r *runner) run(ctx context.Context, progress bool, script string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(r.dir, script)}, args...)...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var buf syncBuffer
	var w io.Writer = &buf
	var pw *io.PipeWriter
	var wg sync.WaitGroup
	if progress && r.logf != nil {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		w = io.MultiWriter(&buf, pw)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				r.logf("%s", sc.Text())
			}
			_, _ = io.Copy(io.Discard, pr) // drain what a too-long line left, so the writer never blocks
		}()
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if pw != nil {
		pw.Close()
		wg.Wait()
	}
	out := buf.String()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return out, &ScriptError{Script: script, Args: args, Err: err, Output: out}
	}
	return out, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
