// Package hosttest holds test doubles for host.Host: a strict Fake that
// records the exact transcript a step sends, a Local host that runs commands
// with /bin/sh on this machine, and RunConformance, the contract every Host
// implementation (fake, local, SSH, sudo) must pass.
package hosttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
)

// Local is a Host that runs commands with /bin/sh on this machine, in a
// working directory of its own. Paths are real paths of this machine.
type Local struct {
	name     string
	dir      string
	redactor *host.Redactor
}

var _ host.Host = (*Local)(nil)

// NewLocal returns a Local host named name whose commands start in dir.
func NewLocal(name, dir string, r *host.Redactor) *Local {
	return &Local{name: name, dir: dir, redactor: r}
}

func (l *Local) Name() string { return l.name }

func (l *Local) Run(ctx context.Context, cmd host.Cmd) error {
	if err := host.CheckLine(cmd.Line); err != nil {
		return fmt.Errorf("%s: %w", l.name, err)
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd.Line)
	c.Dir = l.dir
	c.Stdin = cmd.Stdin
	c.Stdout = cmd.Stdout
	var tail host.StderrTail
	if cmd.Stderr != nil {
		c.Stderr = io.MultiWriter(&tail, cmd.Stderr)
	} else {
		c.Stderr = &tail
	}
	// Kill the whole process group: sh -c 'sleep 30' may fork sleep, which
	// would keep the output pipes open.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
	err := c.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: run %q: %w", l.name, l.redactor.Redact(cmd.Line), ctx.Err())
	}
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		code := xe.ExitCode()
		if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return &host.ExitError{Host: l.name, Command: l.redactor.Redact(cmd.Line), Code: code, Stderr: tail.Tail(l.redactor)}
	}
	if err != nil {
		return fmt.Errorf("%s: run %q: %w", l.name, l.redactor.Redact(cmd.Line), err)
	}
	return nil
}

func (l *Local) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

func (l *Local) Upload(ctx context.Context, r io.Reader, path string, opts host.FileOptions) (err error) {
	path = l.abs(path)
	// As the SSH host does: the content is written in a directory only
	// this user can enter, then renamed into place.
	stage, err := os.MkdirTemp(filepath.Dir(path), "."+filepath.Base(path)+".clusterctl-")
	if err != nil {
		return fmt.Errorf("%s: upload %s: %w", l.name, path, err)
	}
	defer os.RemoveAll(stage)
	f, err := os.OpenFile(filepath.Join(stage, filepath.Base(path)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: upload %s: %w", l.name, path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			err = fmt.Errorf("%s: upload %s: %w", l.name, path, err)
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx, r}); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if opts.Owner != "" || opts.Group != "" {
		uid, gid := -1, -1
		if opts.Owner != "" {
			if uid, err = lookupID(opts.Owner, false); err != nil {
				return err
			}
		}
		if opts.Group != "" {
			if gid, err = lookupID(opts.Group, true); err != nil {
				return err
			}
		}
		if err = f.Chown(uid, gid); err != nil {
			return err
		}
	}
	// chmod after chown: chown clears setuid/setgid.
	if err = f.Chmod(goMode(opts.Mode)); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// goMode maps a FileOptions mode (0 = 0644) to what os.Chmod expects.
func goMode(m fs.FileMode) fs.FileMode {
	if m == 0 {
		return 0o644
	}
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

func lookupID(name string, group bool) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	var id string
	if group {
		g, err := user.LookupGroup(name)
		if err != nil {
			return 0, err
		}
		id = g.Gid
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, err
		}
		id = u.Uid
	}
	return strconv.Atoi(id)
}

func (l *Local) ReadFile(ctx context.Context, path string) ([]byte, error) {
	b, err := os.ReadFile(l.abs(path))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", l.name, path, err)
	}
	return b, nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
