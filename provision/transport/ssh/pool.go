package ssh

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/clusterctl/clusterctl/provision/host"
)

// Pool holds one connection per host, dialled on first use and shared by
// every command, upload and read on that host (bastions included). It is
// safe for concurrent use.
type Pool struct {
	d     *dialer
	mu    sync.Mutex
	conns map[string]*poolEntry
	done  bool
}

type poolEntry struct {
	mu   sync.Mutex // serialises dials of one host
	conn *Conn
}

// NewPool returns an empty Pool.
func NewPool() *Pool {
	p := &Pool{conns: map[string]*poolEntry{}}
	p.d = &dialer{locks: &fileLocks{}, bastion: p.Get}
	return p
}

var errPoolClosed = errors.New("ssh pool closed")

// Get returns the connection for cfg, dialling it if there is none yet or
// if the previous one died.
func (p *Pool) Get(ctx context.Context, cfg Config) (*Conn, error) {
	full, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	key := full.key()
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	e, ok := p.conns[key]
	if !ok {
		e = &poolEntry{}
		p.conns[key] = e
	}
	p.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil && e.conn.deadErr() == nil {
		return e.conn, nil
	}
	if e.conn != nil {
		e.conn.Close()
		e.conn = nil
	}
	c, err := p.d.dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	closed := p.done
	p.mu.Unlock()
	if closed {
		c.Close()
		return nil, errPoolClosed
	}
	e.conn = c
	return c, nil
}

// Host returns a host.Host for cfg that dials through the pool on first use.
func (p *Pool) Host(cfg Config) host.Host {
	name := cfg.Name
	if name == "" {
		name = cfg.Address
	}
	return &poolHost{p: p, cfg: cfg, name: name}
}

// Close closes every connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.done = true
	entries := p.conns
	p.conns = map[string]*poolEntry{}
	p.mu.Unlock()
	var errs []error
	for _, e := range entries {
		e.mu.Lock()
		if e.conn != nil {
			if err := e.conn.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}

// poolHost is a lazily dialled host of a Pool.
type poolHost struct {
	p    *Pool
	cfg  Config
	name string
}

var _ host.Host = (*poolHost)(nil)

func (h *poolHost) Name() string { return h.name }

func (h *poolHost) Run(ctx context.Context, cmd host.Cmd) error {
	if err := host.CheckLine(cmd.Line); err != nil {
		return err
	}
	c, err := h.p.Get(ctx, h.cfg)
	if err != nil {
		return err
	}
	return c.Run(ctx, cmd)
}

func (h *poolHost) Upload(ctx context.Context, r io.Reader, path string, opts host.FileOptions) error {
	c, err := h.p.Get(ctx, h.cfg)
	if err != nil {
		return err
	}
	return c.Upload(ctx, r, path, opts)
}

// UploadVerified is Conn.UploadVerified through the pool.
func (h *poolHost) UploadVerified(ctx context.Context, r io.Reader, path string, opts host.FileOptions, sha256hex string) error {
	c, err := h.p.Get(ctx, h.cfg)
	if err != nil {
		return err
	}
	return c.UploadVerified(ctx, r, path, opts, sha256hex)
}

func (h *poolHost) ReadFile(ctx context.Context, path string) ([]byte, error) {
	c, err := h.p.Get(ctx, h.cfg)
	if err != nil {
		return nil, err
	}
	return c.ReadFile(ctx, path)
}
