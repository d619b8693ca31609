package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/clusterctl/clusterctl/provision/host"
)

// dialer carries what dials share: the known_hosts locks and, in a Pool,
// the shared bastion connections.
type dialer struct {
	locks   *fileLocks
	bastion func(ctx context.Context, cfg Config) (*Conn, error) // nil: dial a private one
}

// Dial connects to the host cfg describes, retrying transient failures.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	return (&dialer{locks: &fileLocks{}}).dial(ctx, cfg)
}

func (d *dialer) dial(ctx context.Context, cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	auth, err := authMethods(cfg)
	if err != nil {
		return nil, err
	}
	var bastion *Conn
	ownBastion := false
	if cfg.Bastion != nil {
		if d.bastion != nil {
			bastion, err = d.bastion(ctx, *cfg.Bastion)
		} else {
			bastion, err = d.dial(ctx, *cfg.Bastion)
			ownBastion = true
		}
		if err != nil {
			return nil, fmt.Errorf("dial %s: via bastion: %w", cfg.describe(), err)
		}
	}
	for attempt := 0; ; attempt++ {
		var client *ssh.Client
		client, err = d.dialOnce(ctx, cfg, auth, bastion)
		if err == nil {
			c := newConn(cfg, client)
			if ownBastion {
				c.bastion = bastion
			}
			return c, nil
		}
		if attempt >= cfg.Retries || !transient(err) || ctx.Err() != nil {
			break
		}
		delay := time.Duration(float64(500*time.Millisecond<<attempt) * (0.75 + rand.Float64()/2))
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	if ownBastion {
		bastion.Close()
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = errors.Join(err, ctx.Err())
	}
	return nil, err
}

// dialErr marks a dial error as worth retrying.
type dialErr struct {
	err       error
	transient bool
}

func (e *dialErr) Error() string { return e.err.Error() }
func (e *dialErr) Unwrap() error { return e.err }

func transient(err error) bool {
	var de *dialErr
	return errors.As(err, &de) && de.transient
}

// dialOnce is one attempt: TCP (or a channel through the bastion) plus the
// SSH handshake, both within cfg.DialTimeout.
func (d *dialer) dialOnce(ctx context.Context, cfg Config, auth *authSet, bastion *Conn) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	fail := func(class error, transient bool, format string, args ...any) error {
		return &dialErr{err: fmt.Errorf("dial %s: %s: %w", cfg.describe(), fmt.Sprintf(format, args...), class), transient: transient}
	}

	var conn net.Conn
	var err error
	if bastion != nil {
		conn, err = bastion.client.DialContext(ctx, "tcp", cfg.addr())
		if err != nil {
			if bastion.deadErr() != nil {
				return nil, fail(host.ErrUnreachable, false, "bastion %s: %v", bastion.cfg.describe(), bastion.deadErr())
			}
			if errors.Is(err, context.DeadlineExceeded) {
				// The bastion's sshd is still trying: the target drops its packets.
				return nil, fail(host.ErrUnreachable, false, "through bastion %s: no connection within %v", bastion.cfg.describe(), cfg.DialTimeout)
			}
			return nil, fail(host.ErrUnreachable, strings.Contains(err.Error(), "refused"), "through bastion %s: %v", bastion.cfg.describe(), err)
		}
	} else {
		var nd net.Dialer
		conn, err = nd.DialContext(ctx, "tcp", cfg.addr())
		if err != nil {
			return nil, fail(host.ErrUnreachable, errors.Is(err, syscall.ECONNREFUSED), "%v", err)
		}
	}

	checker, err := newHostKeyChecker(cfg, d.locks)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var hostKeyErr error
	methods, closeAgent := auth.methods()
	defer closeAgent()
	clientCfg := &ssh.ClientConfig{
		User: cfg.User,
		Auth: methods,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			hostKeyErr = checker.check(hostname, remote, key)
			return hostKeyErr
		},
		HostKeyAlgorithms: checker.algorithms(),
		Timeout:           cfg.DialTimeout,
	}
	// The deadline covers a host that accepts TCP but never answers; the
	// AfterFunc covers bastion channels (no deadlines) and cancellation.
	_ = conn.SetDeadline(time.Now().Add(cfg.DialTimeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, cfg.addr(), clientCfg)
	if !stop() || err != nil {
		conn.Close()
		switch {
		case hostKeyErr != nil:
			return nil, &dialErr{err: hostKeyErr} // never retried
		case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
			return nil, fail(host.ErrUnreachable, false, "no SSH handshake within %v (host frozen or not an SSH server?)", cfg.DialTimeout)
		case ctx.Err() != nil:
			return nil, fail(ctx.Err(), false, "handshake interrupted")
		case err != nil && strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fail(host.ErrAuthFailed, true, "user %s: %v (keys tried: agent%s)", cfg.User, err, keyList(cfg))
		case err != nil && isTimeout(err):
			return nil, fail(host.ErrUnreachable, false, "no SSH handshake within %v (host frozen?): %v", cfg.DialTimeout, err)
		case err != nil:
			// EOF or reset during the handshake: sshd starting or
			// refusing for a moment (MaxStartups).
			return nil, fail(host.ErrUnreachable, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "EOF"), "ssh handshake: %v", err)
		default:
			return nil, fail(host.ErrUnreachable, false, "handshake interrupted")
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func keyList(cfg Config) string {
	files := cfg.IdentityFiles
	if len(files) == 0 {
		files = defaultIdentityFiles()
	}
	if len(files) == 0 {
		return ""
	}
	return ", " + strings.Join(files, ", ")
}

func defaultIdentityFiles() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	var files []string
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		p := filepath.Join(home, ".ssh", n)
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	return files
}

// authMethods builds one publickey method from the agent's keys and the
// identity files (x/crypto tries each method name only once, so all keys
// must be in one method).
func authMethods(cfg Config) (*authSet, error) {
	explicit := len(cfg.IdentityFiles) > 0
	files := cfg.IdentityFiles
	if !explicit {
		files = defaultIdentityFiles()
	}
	var signers []ssh.Signer
	for _, f := range files {
		s, err := loadKey(f, cfg.PassphraseEnv)
		if err != nil {
			if explicit {
				return nil, fmt.Errorf("%s: %w", cfg.describe(), err)
			}
			continue // a default key we cannot use; the agent may have it
		}
		signers = append(signers, s)
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" && len(signers) == 0 {
		return nil, fmt.Errorf("%s: no SSH key: no identity file given, none usable in ~/.ssh, and no ssh-agent (SSH_AUTH_SOCK): %w", cfg.describe(), host.ErrAuthFailed)
	}
	return &authSet{signers: signers, sock: sock}, nil
}

// authSet is the keys of one host config: files loaded once, the agent asked
// at each handshake.
type authSet struct {
	signers []ssh.Signer
	sock    string
}

// methods returns the auth methods for one handshake and a func closing the
// agent connection they use.
func (a *authSet) methods() ([]ssh.AuthMethod, func()) {
	var agentConn net.Conn
	cb := func() ([]ssh.Signer, error) {
		all := append([]ssh.Signer(nil), a.signers...)
		if a.sock != "" && agentConn == nil {
			if c, err := net.DialTimeout("unix", a.sock, 2*time.Second); err == nil {
				agentConn = c
				if as, err := agent.NewClient(c).Signers(); err == nil {
					all = append(as, all...)
				}
			}
		}
		return all, nil
	}
	return []ssh.AuthMethod{ssh.PublicKeysCallback(cb)}, func() {
		if agentConn != nil {
			agentConn.Close()
		}
	}
}

// loadKey reads a private key; an encrypted one takes its passphrase from
// the environment variable passEnv (named in errors, never the value).
func loadKey(path, passEnv string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passEnv == "" {
			return nil, fmt.Errorf("identity file %s is encrypted and no passphraseEnv is configured: %w", path, host.ErrAuthFailed)
		}
		pass, ok := os.LookupEnv(passEnv)
		if !ok {
			return nil, fmt.Errorf("identity file %s is encrypted: environment variable %s is not set: %w", path, passEnv, host.ErrAuthFailed)
		}
		s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(pass))
		if err != nil {
			return nil, fmt.Errorf("identity file %s: passphrase from %s: %v: %w", path, passEnv, err, host.ErrAuthFailed)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return s, nil
}
