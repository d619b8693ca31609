package ssh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/pkg/sftp"

	"github.com/clusterctl/clusterctl/provision/host"
)

// sftpClient returns the connection's one SFTP client, starting it on first
// use.
func (c *Conn) sftpClient(ctx context.Context) (*sftp.Client, error) {
	if err := c.deadErr(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
	}
	type result struct {
		c   *sftp.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		sc, err := sftp.NewClient(c.client, sftp.UseConcurrentWrites(true), sftp.UseFstat(true))
		ch <- result{sc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("%s: start sftp: %w", c.cfg.describe(), errors.Join(r.err, host.ErrDisconnected))
		}
		c.sftp = r.c
		go func() {
			// An SFTP client whose session died is replaced on next use.
			_ = r.c.Wait() // why it ended does not matter: the next use starts another
			c.mu.Lock()
			if c.sftp == r.c {
				c.sftp = nil
			}
			c.mu.Unlock()
		}()
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("%s: start sftp: %w", c.cfg.describe(), ctx.Err())
	}
}

// Upload writes r to p atomically: a temporary file beside it, fsync,
// chown, chmod, then posix-rename over p.
func (c *Conn) Upload(ctx context.Context, r io.Reader, p string, opts host.FileOptions) error {
	return c.upload(ctx, r, p, opts, "")
}

// UploadVerified is Upload that also checks, on the host with sha256sum,
// that the temporary file's digest is sha256hex before renaming it into
// place; on a mismatch nothing is left behind.
func (c *Conn) UploadVerified(ctx context.Context, r io.Reader, p string, opts host.FileOptions, sha256hex string) error {
	want := strings.ToLower(strings.TrimSpace(sha256hex))
	if b, err := hex.DecodeString(want); err != nil || len(b) != 32 {
		return fmt.Errorf("%s: upload %s: %q is not a sha256 hex digest", c.cfg.Name, p, sha256hex)
	}
	return c.upload(ctx, r, p, opts, want)
}

func (c *Conn) upload(ctx context.Context, r io.Reader, p string, opts host.FileOptions, sha string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s: upload %s: %w", c.cfg.Name, p, err)
		}
	}()
	sc, err := c.sftpClient(ctx)
	if err != nil {
		return err
	}
	tmp, cleanup, err := privateTempFile(sc, p)
	if err != nil {
		return err
	}
	keep := false
	defer func() { cleanup(keep) }()
	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	_, err = f.ReadFromWithConcurrency(ctxReader{ctx, r}, 0)
	stop()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, ok := sc.HasExtension("fsync@openssh.com"); ok {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if sha != "" {
		out, err := c.output(ctx, "sha256sum -- "+host.Quote(tmp))
		if err != nil {
			return fmt.Errorf("check sha256: %w", err)
		}
		if got, _, _ := strings.Cut(out, " "); got != sha {
			return fmt.Errorf("sha256 mismatch: host computed %s, want %s (upload discarded)", got, sha)
		}
	}
	if opts.Owner != "" || opts.Group != "" {
		if err := c.chown(ctx, sc, tmp, opts); err != nil {
			return err
		}
	}
	// After chown, which clears setuid/setgid.
	if err := sc.Chmod(tmp, fs.FileMode(host.UnixMode(opts.Mode))&0o777|modeBits(opts.Mode)); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, ok := sc.HasExtension("posix-rename@openssh.com"); ok {
		err = sc.PosixRename(tmp, p)
	} else {
		// Plain SFTP rename refuses an existing target; mv replaces it
		// atomically with rename(2).
		err = c.Run(ctx, host.Cmd{Line: host.Join("mv", "-f", "--", tmp, p)})
	}
	if err != nil {
		return fmt.Errorf("rename %s over %s: %w", tmp, p, err)
	}
	keep = true
	return nil
}

// privateTempFile returns a temporary path for p's content inside a fresh
// directory beside p that only the connecting user can enter, and the
// function that removes what is left (the file too, unless it was renamed
// into place). SFTP opens and mkdirs with the server's umask (0644 files):
// a file opened by another user while it was readable would stay readable
// after a chmod, so the directory is made private before any file exists.
func privateTempFile(sc *sftp.Client, p string) (string, func(renamed bool), error) {
	var rnd [6]byte
	rand.Read(rnd[:])
	stage := path.Join(path.Dir(p), "."+path.Base(p)+".clusterctl-"+hex.EncodeToString(rnd[:]))
	// mkdir fails on an existing name, so the directory is ours alone.
	if err := sc.Mkdir(stage); err != nil {
		return "", nil, fmt.Errorf("create %s: %w", stage, err)
	}
	tmp := path.Join(stage, path.Base(p))
	// Best effort after the error that matters; the directory is 0700 and
	// named as clusterctl's, so a leftover is visible and harmless.
	cleanup := func(renamed bool) {
		if !renamed {
			_ = sc.Remove(tmp)
		}
		_ = sc.RemoveDirectory(stage)
	}
	if err := sc.Chmod(stage, 0o700); err != nil {
		cleanup(false)
		return "", nil, fmt.Errorf("chmod %s: %w", stage, err)
	}
	return tmp, cleanup, nil
}

// modeBits keeps setuid/setgid/sticky for sftp's Chmod, which takes Go modes.
func modeBits(m fs.FileMode) fs.FileMode {
	return m & (fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// chown sets owner and group; SFTP needs both numeric, so names are resolved
// on the host and an empty one keeps the file's current id.
func (c *Conn) chown(ctx context.Context, sc *sftp.Client, p string, opts host.FileOptions) error {
	st, err := sc.Stat(p)
	if err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	fst, ok := st.Sys().(*sftp.FileStat)
	if !ok {
		return fmt.Errorf("stat %s: no owner information", p)
	}
	uid, gid := int(fst.UID), int(fst.GID)
	if opts.Owner != "" {
		if uid, err = c.resolveID(ctx, opts.Owner, false); err != nil {
			return err
		}
	}
	if opts.Group != "" {
		if gid, err = c.resolveID(ctx, opts.Group, true); err != nil {
			return err
		}
	}
	if err := sc.Chown(p, uid, gid); err != nil {
		return fmt.Errorf("chown %s to %d:%d: %w", p, uid, gid, err)
	}
	return nil
}

// resolveID maps a user or group name to its id on the host (cached).
func (c *Conn) resolveID(ctx context.Context, name string, group bool) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	key := "u:" + name
	line := "id -u -- " + host.Quote(name)
	if group {
		key = "g:" + name
		line = "getent group -- " + host.Quote(name) + " | cut -d: -f3"
	}
	c.mu.Lock()
	id, ok := c.ids[key]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	out, err := c.output(ctx, line)
	kind := map[bool]string{false: "user", true: "group"}[group]
	if err != nil {
		return 0, fmt.Errorf("resolve %s %q: %w", kind, name, err)
	}
	id, err = strconv.Atoi(out)
	if err != nil {
		return 0, fmt.Errorf("resolve %s %q: no such %s on the host", kind, name, kind)
	}
	c.mu.Lock()
	c.ids[key] = id
	c.mu.Unlock()
	return id, nil
}

// ReadFile returns the contents of p; a missing file wraps fs.ErrNotExist.
func (c *Conn) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var b strings.Builder
	if err := c.Download(ctx, p, &b); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// Download copies the remote file p to w.
func (c *Conn) Download(ctx context.Context, p string, w io.Writer) error {
	sc, err := c.sftpClient(ctx)
	if err != nil {
		return fmt.Errorf("%s: read %s: %w", c.cfg.Name, p, err)
	}
	f, err := sc.Open(p)
	if err != nil {
		return fmt.Errorf("%s: read %s: %w", c.cfg.Name, p, err)
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	if _, err := f.WriteTo(w); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("%s: read %s: %w", c.cfg.Name, p, err)
	}
	return nil
}

// ctxReader stops a copy when ctx ends.
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
