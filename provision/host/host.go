// Package host is the contract every step uses to act on a machine: run a
// command, upload a file atomically, read a file. Transports implement it;
// steps never see SSH.
package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Output runs line on h and returns its stdout.
func Output(ctx context.Context, h Host, line string) (string, error) {
	var out strings.Builder
	err := h.Run(ctx, Cmd{Line: line, Stdout: &out})
	return out.String(), err
}

// Host is one machine reached by clusterctl.
type Host interface {
	// Name is the host's key in the spec (hosts.NAME).
	Name() string
	// Run runs cmd.Line with /bin/sh on the host. A non-zero exit is an
	// *ExitError; transport failures wrap ErrUnreachable or ErrDisconnected.
	Run(ctx context.Context, cmd Cmd) error
	// Upload writes r to path atomically (temporary name, fsync, chmod/chown,
	// rename) so a reader never sees a half-written file.
	Upload(ctx context.Context, r io.Reader, path string, opts FileOptions) error
	// ReadFile returns the contents of path; a missing file wraps fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
}

// Cmd is one shell command. Line is passed to /bin/sh -c; every value
// interpolated into it must go through Quote.
type Cmd struct {
	Line   string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// FileOptions says how an uploaded file must end up on the host.
type FileOptions struct {
	Mode  fs.FileMode // 0 means 0644
	Owner string      // user name or uid; empty keeps the connecting user
	Group string      // group name or gid; empty keeps the default group
}

// Failure classes, checked with errors.Is.
var (
	ErrUnreachable      = errors.New("host unreachable")
	ErrAuthFailed       = errors.New("authentication failed")
	ErrHostKeyMismatch  = errors.New("host key mismatch")
	ErrHostKeyUnknown   = errors.New("host key unknown")
	ErrDisconnected     = errors.New("connection lost")
	ErrSudoPasswordNeed = errors.New("sudo requires a password")
)

// ExitError is a command that ran and exited non-zero. Command is already
// redacted; Stderr keeps only the tail so errors stay readable.
type ExitError struct {
	Host    string
	Command string
	Code    int
	Stderr  string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: command exited %d: %s", e.Host, e.Code, e.Command)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// StderrTailBytes bounds how much stderr an ExitError keeps.
const StderrTailBytes = 2048

// Tail returns the last n bytes of s, starting at a line boundary when it can.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return "…" + s
}
