// Package ssh is the host.Host transport over SSH: dial (with retries, a
// bastion or a chain of jump hosts, agent and key-file auth, known_hosts
// verification, an optional ssh_config file), keepalive, and
// one connection per host shared by many sessions and one SFTP client.
package ssh

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
)

// Host key policies.
const (
	// HostKeyStrict refuses hosts that are not in known_hosts (the default).
	HostKeyStrict = "strict"
	// HostKeyAcceptNew records the key of an unknown host; a changed key is
	// still refused.
	HostKeyAcceptNew = "accept-new"
)

// Defaults.
const (
	DefaultPort        = 22
	DefaultDialTimeout = 10 * time.Second
	DefaultKeepAlive   = 15 * time.Second
	DefaultRetries     = 3
	DefaultMaxSessions = 10
	// keepAliveMisses unanswered keepalives declare a connection dead.
	keepAliveMisses = 3
)

// Config says how to reach one host.
type Config struct {
	// Name is the host's key in the spec; errors and ExitErrors use it.
	Name    string
	Address string // host name or IP
	Port    int    // 0 means 22
	User    string // "" means the current user
	// IdentityFiles are private keys; none means ~/.ssh/id_ed25519,
	// id_ecdsa and id_rsa, those that exist. The ssh-agent at
	// SSH_AUTH_SOCK is always tried first.
	IdentityFiles []string
	// PassphraseEnv names the environment variable holding the passphrase
	// of encrypted identity files.
	PassphraseEnv string
	// KnownHostsFile is an OpenSSH known_hosts file; "" means
	// ~/.ssh/known_hosts.
	KnownHostsFile string
	// HostKeyPolicy is HostKeyStrict ("" too) or HostKeyAcceptNew.
	HostKeyPolicy string
	// Bastion, when set, is the jump host the connection goes through; its
	// own Bastion makes a chain (ProxyJump a,b), each hop host-key checked.
	Bastion *Config
	// DialTimeout bounds TCP connect plus SSH handshake of one attempt
	// (default 10s).
	DialTimeout time.Duration
	// CommandTimeout, when > 0, bounds each Run.
	CommandTimeout time.Duration
	// KeepAlive is the keepalive interval (default 15s; < 0 disables); the
	// connection is declared dead after 3 unanswered keepalives.
	KeepAlive time.Duration
	// Retries is how many times a transient dial failure (refused,
	// handshake EOF, auth failure while a host boots) is retried, with
	// backoff 0.5s, 1s, 2s... jittered. 0 means 3; < 0 means none.
	Retries int
	// MaxSessions is the server's per-connection session limit (OpenSSH
	// MaxSessions, default 10). Commands beyond it wait for a free session
	// instead of failing with "administratively prohibited"; one is kept
	// for SFTP.
	MaxSessions int
	// Redactor redacts commands and stderr in errors.
	Redactor *host.Redactor
}

// withDefaults fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Address == "" {
		return c, fmt.Errorf("ssh config %q: no address", c.Name)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Name == "" {
		c.Name = c.Address
	}
	if c.User == "" {
		u, err := user.Current()
		if err != nil {
			return c, fmt.Errorf("ssh config %q: no user and no current user: %w", c.Name, err)
		}
		c.User = u.Username
	}
	home, _ := os.UserHomeDir()
	if c.KnownHostsFile == "" {
		c.KnownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
	}
	switch c.HostKeyPolicy {
	case "":
		c.HostKeyPolicy = HostKeyStrict
	case HostKeyStrict, HostKeyAcceptNew:
	default:
		return c, fmt.Errorf("ssh config %q: hostKeyPolicy %q: want %q or %q", c.Name, c.HostKeyPolicy, HostKeyStrict, HostKeyAcceptNew)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	} else if c.Retries < 0 {
		c.Retries = 0
	}
	if c.Bastion != nil {
		b := *c.Bastion
		if b.Redactor == nil {
			b.Redactor = c.Redactor
		}
		c.Bastion = &b
	}
	return c, nil
}

// addr is host:port.
func (c Config) addr() string {
	return net.JoinHostPort(c.Address, strconv.Itoa(c.Port))
}

// key identifies a connection in a Pool.
func (c Config) key() string {
	k := c.User + "@" + c.addr()
	if c.Bastion != nil {
		k += " via " + c.Bastion.key()
	}
	return k
}

// describe names the host in errors: "h1 (root@10.0.0.1:22)".
func (c Config) describe() string {
	return fmt.Sprintf("%s (%s@%s)", c.Name, c.User, c.addr())
}
