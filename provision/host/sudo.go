package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
)

// SudoOptions says how WithSudo elevates.
type SudoOptions struct {
	// Password is the sudo password, already read from the environment
	// variable the spec names; "" means passwordless sudo (sudo -n).
	Password string
	// User is the target user; "" means root.
	User string
	// TempDir is where uploads are staged, as the connecting user, before
	// sudo installs them; "" means the connecting user's $HOME.
	TempDir string
	// Redactor receives Password so it never shows up in errors or logs.
	Redactor *Redactor
}

// sudoMarker ends the password preamble on stdin. sudo does not read a
// password when it does not need one (NOPASSWD rule), so the command itself
// skips every line up to and including the marker: the password can never
// leak into the command's own stdin.
const sudoMarker = "clusterctl-sudo-stdin-begins"

// sudoExitNotExist is the exit code ReadFile's script uses for a missing file.
const sudoExitNotExist = 66

// WithSudo returns a Host that runs every command, upload and read as
// opt.User (root by default) through sudo on h. The password, when given,
// travels on stdin only, never on a command line.
func WithSudo(h Host, opt SudoOptions) Host {
	opt.Redactor.Add(opt.Password)
	return &sudoHost{inner: h, opt: opt}
}

type sudoHost struct {
	inner Host
	opt   SudoOptions
}

var _ Host = (*sudoHost)(nil)

func (s *sudoHost) Name() string { return s.inner.Name() }

// Unwrap returns the host sudo runs on.
func (s *sudoHost) Unwrap() Host { return s.inner }

// sudoLine wraps line in sudo ... sh -c.
func (s *sudoHost) sudoLine(line string) string {
	args := []string{"sudo"}
	if s.opt.Password == "" {
		args = append(args, "-n")
	} else {
		// -k: ignore cached credentials so sudo always reads the password
		// line we send (a cached timestamp would otherwise leave it unread).
		args = append(args, "-k", "-S", "-p", "")
	}
	if s.opt.User != "" && s.opt.User != "root" {
		args = append(args, "-u", s.opt.User)
	}
	args = append(args, "--", "sh", "-c")
	if s.opt.Password != "" {
		line = "while IFS= read -r l; do [ \"$l\" = " + sudoMarker + " ] && break; done; " + line
	}
	return Join(args...) + " " + Quote(line)
}

func (s *sudoHost) Run(ctx context.Context, cmd Cmd) error {
	if err := CheckLine(cmd.Line); err != nil {
		return err
	}
	wrapped := cmd
	wrapped.Line = s.sudoLine(cmd.Line)
	var stderr tailBuffer
	if cmd.Stderr != nil {
		wrapped.Stderr = io.MultiWriter(&stderr, cmd.Stderr)
	} else {
		wrapped.Stderr = &stderr
	}
	if s.opt.Password != "" {
		pre := strings.NewReader(s.opt.Password + "\n" + sudoMarker + "\n")
		if cmd.Stdin != nil {
			wrapped.Stdin = io.MultiReader(pre, cmd.Stdin)
		} else {
			wrapped.Stdin = pre
		}
	}
	err := s.inner.Run(ctx, wrapped)
	return s.mapErr(cmd.Line, stderr.String(), err)
}

// mapErr turns sudo's own failures into sentinels and shows the caller's
// line, not the sudo wrapper, in ExitError.
func (s *sudoHost) mapErr(line, stderr string, err error) error {
	var ee *ExitError
	if !errors.As(err, &ee) {
		return err
	}
	out := *ee
	out.Command = "sudo: " + s.opt.Redactor.Redact(line)
	out.Stderr = s.opt.Redactor.Redact(out.Stderr)
	switch {
	case strings.Contains(stderr, "a password is required"), strings.Contains(stderr, "a terminal is required"):
		return fmt.Errorf("%s: sudo needs a password for %s (set the sudo password environment variable in the spec, or allow NOPASSWD for this user): %w",
			s.Name(), s.targetUser(), errors.Join(ErrSudoPasswordNeed, &out))
	case strings.Contains(stderr, "incorrect password"), strings.Contains(stderr, "Sorry, try again"):
		return fmt.Errorf("%s: sudo rejected the password: %w", s.Name(), errors.Join(ErrAuthFailed, &out))
	case strings.Contains(stderr, "is not in the sudoers file"), strings.Contains(stderr, "is not allowed to"):
		return fmt.Errorf("%s: user may not sudo to %s: %w", s.Name(), s.targetUser(), errors.Join(ErrAuthFailed, &out))
	}
	return &out
}

func (s *sudoHost) targetUser() string {
	if s.opt.User == "" {
		return "root"
	}
	return s.opt.User
}

func (s *sudoHost) Upload(ctx context.Context, r io.Reader, path string, opts FileOptions) error {
	// 1. A fresh directory only the connecting user can enter (mktemp -d
	// creates it 0700, failing on an existing name), whatever the mode of
	// $HOME: the content may be a secret.
	dir := `"$HOME"`
	if s.opt.TempDir != "" {
		dir = Quote(s.opt.TempDir)
	}
	var out bytes.Buffer
	if err := s.inner.Run(ctx, Cmd{Line: "umask 077 && mktemp -d " + dir + "/.clusterctl-upload.XXXXXXXX", Stdout: &out}); err != nil {
		return fmt.Errorf("sudo upload %s: create staging directory: %w", path, err)
	}
	stage := strings.TrimSpace(out.String())
	if !strings.HasPrefix(stage, "/") || strings.ContainsAny(stage, "\n\x00") {
		return fmt.Errorf("sudo upload %s: mktemp -d printed %q", path, stage)
	}
	// Removed as the connecting user, who owns it, whatever happens.
	// Best effort: the directory is 0700 and the file in it already renamed
	// away on success; a failed removal must not hide the upload's own error.
	defer func() { _ = s.inner.Run(context.WithoutCancel(ctx), Cmd{Line: "rm -rf -- " + Quote(stage)}) }()
	tmp := stage + "/upload"
	if err := s.inner.Upload(ctx, r, tmp, FileOptions{Mode: 0o600}); err != nil {
		return fmt.Errorf("sudo upload %s: stage: %w", path, err)
	}
	// 2. One sudo command: install beside the target, fsync, rename over it.
	if err := s.Run(ctx, Cmd{Line: installScript(tmp, path, opts)}); err != nil {
		return fmt.Errorf("sudo upload %s: %w", path, err)
	}
	return nil
}

// installScript installs tmp at dst with mode and owner through a temporary
// name in dst's directory, so the final rename is atomic. install creates
// that name 0600 before it writes and sets the mode last.
func installScript(tmp, dst string, opts FileOptions) string {
	mode := opts.Mode.Perm() | (opts.Mode & (fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky))
	if opts.Mode == 0 {
		mode = 0o644
	}
	args := []string{"install", "-m", fmt.Sprintf("%04o", unixMode(mode))}
	if opts.Owner != "" {
		args = append(args, "-o", opts.Owner)
	}
	if opts.Group != "" {
		args = append(args, "-g", opts.Group)
	}
	t, d, n := Quote(tmp), Quote(dst), Quote(dst+".clusterctl-tmp")
	return Join(args...) + " -- " + t + " " + n +
		" && { sync -- " + n + " 2>/dev/null || :; } && mv -f -- " + n + " " + d +
		"; rc=$?; [ $rc -eq 0 ] || rm -f -- " + n + "; exit $rc"
}

// unixMode converts a Go file mode to the octal permission bits chmod takes.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// UnixMode is the octal permission value (with setuid/setgid/sticky) for m;
// 0 maps to the default 0644.
func UnixMode(m fs.FileMode) uint32 {
	if m == 0 {
		return 0o644
	}
	return unixMode(m)
}

func (s *sudoHost) ReadFile(ctx context.Context, path string) ([]byte, error) {
	var out bytes.Buffer
	q := Quote(path)
	line := fmt.Sprintf("if [ -e %s ] || [ -L %s ]; then exec cat -- %s; else echo %s: no such file >&2; exit %d; fi", q, q, q, q, sudoExitNotExist)
	err := s.Run(ctx, Cmd{Line: line, Stdout: &out})
	var ee *ExitError
	if errors.As(err, &ee) && ee.Code == sudoExitNotExist {
		return nil, fmt.Errorf("sudo read %s on %s: %w", path, s.Name(), fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("sudo read %s: %w", path, err)
	}
	return out.Bytes(), nil
}

// tailBuffer keeps the last tailKeep bytes written to it.
type tailBuffer struct {
	b []byte
}

// tailKeep is larger than StderrTailBytes so that redaction runs on whole
// secrets before the tail is cut (secrets up to 8 KiB).
const tailKeep = StderrTailBytes + 8<<10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*tailKeep {
		t.b = append(t.b[:0], t.b[len(t.b)-tailKeep:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if len(t.b) > tailKeep {
		return string(t.b[len(t.b)-tailKeep:])
	}
	return string(t.b)
}

// StderrTail collects a command's stderr for an ExitError: it keeps enough to
// redact whole secrets, then returns the redacted tail. Safe for concurrent
// Write calls.
type StderrTail struct {
	mu sync.Mutex
	t  tailBuffer
}

func (s *StderrTail) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.Write(p)
}

// Tail returns the last StderrTailBytes of what was written, redacted by r.
func (s *StderrTail) Tail(r *Redactor) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Tail(r.Redact(s.t.String()), StderrTailBytes)
}
