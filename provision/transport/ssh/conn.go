package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/clusterctl/clusterctl/provision/host"
)

// Conn is one SSH connection to a host; many commands run on it at once,
// each in its own session.
type Conn struct {
	cfg     Config
	client  *ssh.Client
	bastion *Conn // owned private bastion, closed with the Conn

	mu      sync.Mutex
	dead    error // set once: why the connection is gone
	sftp    *sftp.Client
	ids     map[string]int // resolved owner/group names
	closeCh chan struct{}
	once    sync.Once
	slots   chan struct{} // command sessions in use
}

var _ host.Host = (*Conn)(nil)

func newConn(cfg Config, client *ssh.Client) *Conn {
	c := &Conn{cfg: cfg, client: client, closeCh: make(chan struct{}), ids: map[string]int{},
		slots: make(chan struct{}, max(cfg.MaxSessions-1, 1))}
	go func() {
		err := client.Wait()
		c.markDead(fmt.Errorf("%s: connection closed (%v): %w", cfg.describe(), err, host.ErrDisconnected))
	}()
	if cfg.KeepAlive > 0 {
		go c.keepAlive()
	}
	return c
}

// Name is the host's name from the config.
func (c *Conn) Name() string { return c.cfg.Name }

// Config returns the config the connection was dialled with (defaults filled).
func (c *Conn) Config() Config { return c.cfg }

func (c *Conn) markDead(err error) {
	c.mu.Lock()
	if c.dead == nil {
		c.dead = err
	}
	c.mu.Unlock()
}

// deadErr is nil while the connection is usable.
func (c *Conn) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// keepAlive sends keepalive@openssh.com every interval; after
// keepAliveMisses unanswered ones the connection is declared dead and closed,
// which fails every session blocked on it.
func (c *Conn) keepAlive() {
	t := time.NewTicker(c.cfg.KeepAlive)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-c.closeCh:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			// OpenSSH answers "failure" to this unknown request: any
			// answer proves the peer is alive.
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-c.closeCh:
			return
		case err := <-reply:
			if err != nil {
				c.markDead(fmt.Errorf("%s: keepalive failed: %v: %w", c.cfg.describe(), err, host.ErrDisconnected))
				c.client.Close()
				return
			}
			misses = 0
		case <-time.After(c.cfg.KeepAlive):
			misses++
			if misses >= keepAliveMisses {
				c.markDead(fmt.Errorf("%s: no answer to %d keepalives in %v: %w", c.cfg.describe(), misses, time.Duration(misses+1)*c.cfg.KeepAlive, host.ErrDisconnected))
				c.client.Close()
				return
			}
		}
	}
}

// Close closes the connection (and a private bastion).
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closeCh)
		c.markDead(fmt.Errorf("%s: connection closed by clusterctl: %w", c.cfg.describe(), host.ErrDisconnected))
		c.mu.Lock()
		if c.sftp != nil {
			c.sftp.Close()
		}
		c.mu.Unlock()
		err = c.client.Close()
		if c.bastion != nil {
			c.bastion.Close()
		}
	})
	return err
}

// newSession opens a session, giving up when ctx ends (a frozen peer never
// answers the channel open). sshd frees a session slot only after it has
// reaped the command, a little after the client closed the channel, so a
// refused open ("no more sessions") is retried. The bound is time, not a
// count of tries: on a loaded machine sshd can take seconds to reap.
func (c *Conn) newSession(ctx context.Context) (*ssh.Session, error) {
	giveUp := time.Now().Add(sessionRetryFor)
	for attempt := 0; ; attempt++ {
		s, err := c.openSession(ctx)
		var oe *ssh.OpenChannelError
		if err == nil || !errors.As(err, &oe) || time.Now().After(giveUp) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: open session: %w", c.cfg.describe(), ctx.Err())
		case <-time.After(time.Duration(min(attempt+1, 10)) * 5 * time.Millisecond):
		}
	}
}

// sessionRetryFor bounds the retries of a refused session open.
const sessionRetryFor = 30 * time.Second

func (c *Conn) openSession(ctx context.Context) (*ssh.Session, error) {
	if err := c.deadErr(); err != nil {
		return nil, err
	}
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := c.client.NewSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		var oe *ssh.OpenChannelError
		if errors.As(r.err, &oe) {
			return nil, fmt.Errorf("%s: open session: %w", c.cfg.describe(), r.err)
		}
		if r.err != nil {
			if d := c.deadErr(); d != nil {
				return nil, d
			}
			return nil, fmt.Errorf("%s: open session: %v: %w", c.cfg.describe(), r.err, host.ErrDisconnected)
		}
		return r.s, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, fmt.Errorf("%s: open session: %w", c.cfg.describe(), ctx.Err())
	}
}

// Run runs cmd.Line in a new session (sshd runs it with the user's shell,
// sh -c). Cancelling ctx sends KILL to the session and closes it.
func (c *Conn) Run(ctx context.Context, cmd host.Cmd) error {
	if err := host.CheckLine(cmd.Line); err != nil {
		return fmt.Errorf("%s: %w", c.cfg.Name, err)
	}
	if c.cfg.CommandTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.CommandTimeout)
		defer cancel()
	}
	redacted := c.cfg.Redactor.Redact(cmd.Line)
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return fmt.Errorf("%s: run %q: waiting for a free session: %w", c.cfg.Name, redacted, ctx.Err())
	case <-c.closeCh:
		return fmt.Errorf("run %q: %w", redacted, c.deadErr())
	}
	s, err := c.newSession(ctx)
	if err != nil {
		return fmt.Errorf("run %q: %w", redacted, err)
	}
	defer s.Close()

	if cmd.Stdout != nil {
		s.Stdout = cmd.Stdout
	}
	var tail host.StderrTail
	if cmd.Stderr != nil {
		s.Stderr = io.MultiWriter(&tail, cmd.Stderr)
	} else {
		s.Stderr = &tail
	}
	if cmd.Stdin != nil {
		// Copy stdin ourselves: Session.Wait would otherwise wait for a
		// stdin reader that may never end.
		w, err := s.StdinPipe()
		if err != nil {
			return fmt.Errorf("%s: run %q: stdin: %w", c.cfg.Name, redacted, err)
		}
		go func() {
			// A copy cut short shows as the remote command's own failure.
			_, _ = io.Copy(w, cmd.Stdin)
			w.Close()
		}()
	}
	if err := s.Start(cmd.Line); err != nil {
		if d := c.deadErr(); d != nil {
			return fmt.Errorf("run %q: %w", redacted, d)
		}
		return fmt.Errorf("%s: run %q: start: %v: %w", c.cfg.Name, redacted, err, host.ErrDisconnected)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
		return fmt.Errorf("%s: run %q: %w", c.cfg.Name, redacted, ctx.Err())
	}
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return &host.ExitError{Host: c.cfg.Name, Command: redacted, Code: ee.ExitStatus(), Stderr: tail.Tail(c.cfg.Redactor)}
	case errors.As(err, &missing):
		if d := c.deadErr(); d != nil {
			return fmt.Errorf("run %q: %w", redacted, d)
		}
		return fmt.Errorf("%s: run %q: no exit status (connection dropped?): %w", c.cfg.Name, redacted, host.ErrDisconnected)
	default:
		if d := c.deadErr(); d != nil {
			return fmt.Errorf("run %q: %w", redacted, d)
		}
		return fmt.Errorf("%s: run %q: %v: %w", c.cfg.Name, redacted, err, host.ErrDisconnected)
	}
}

// output runs line and returns its stdout.
func (c *Conn) output(ctx context.Context, line string) (string, error) {
	var out bytes.Buffer
	err := c.Run(ctx, host.Cmd{Line: line, Stdout: &out})
	return strings.TrimSpace(out.String()), err
}
