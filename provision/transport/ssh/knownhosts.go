package ssh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterctl/clusterctl/provision/host"
)

// fileLocks serialises appends to one known_hosts file inside this process;
// flock does the same against other processes.
type fileLocks struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (l *fileLocks) get(path string) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*sync.Mutex{}
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	m, ok := l.m[path]
	if !ok {
		m = &sync.Mutex{}
		l.m[path] = m
	}
	return m
}

// loadKnownHosts reads file; a missing file is an empty database.
func loadKnownHosts(file string) (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return knownhosts.New()
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	return cb, nil
}

// hostKeyChecker verifies host keys against cfg.KnownHostsFile under
// cfg.HostKeyPolicy.
type hostKeyChecker struct {
	cfg   Config
	locks *fileLocks
	db    ssh.HostKeyCallback
	ca    map[int]bool // line numbers of @cert-authority entries
}

func newHostKeyChecker(cfg Config, locks *fileLocks) (*hostKeyChecker, error) {
	db, err := loadKnownHosts(cfg.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.describe(), err)
	}
	return &hostKeyChecker{cfg: cfg, locks: locks, db: db, ca: caLines(cfg.KnownHostsFile)}, nil
}

// caLines finds the @cert-authority lines of file: knownhosts reports them
// among the "wanted" keys like plain entries.
func caLines(file string) map[int]bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	m := map[int]bool{}
	for i, l := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(l), []byte("@cert-authority")) {
			m[i+1] = true
		}
	}
	return m
}

// certAlgos are the host certificate algorithms, asked for first when a
// @cert-authority entry covers the host (as OpenSSH does).
var certAlgos = []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
	ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}

// algorithms returns the host key algorithms of the keys known_hosts has
// for this host, so the server is asked for a key we can verify (a host with
// a recorded ed25519 key that also has an ECDSA key must not look changed).
// nil means no entry: let the server choose.
func (k *hostKeyChecker) algorithms() []string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	probe, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil
	}
	err = k.db(k.cfg.addr(), fakeAddr(k.cfg.addr()), probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos, certs []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		if k.ca[w.Line] {
			certs = certAlgos
			continue
		}
		t := w.Key.Type()
		names := []string{t}
		if t == ssh.KeyAlgoRSA {
			names = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				algos = append(algos, n)
			}
		}
	}
	return append(certs, algos...)
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// check is the ssh.HostKeyCallback.
func (k *hostKeyChecker) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := k.db(hostname, remote, key)
	if err == nil {
		return nil
	}
	if known, ok := k.classify(err, key); !ok {
		return known
	}
	// Unknown host.
	if k.cfg.HostKeyPolicy != HostKeyAcceptNew {
		return fmt.Errorf("%s: host key %s %s is not in %s; record it with `ssh-keyscan -p %d %s >> %s` (after checking the fingerprint) or set hostKeyPolicy: %q: %w",
			k.cfg.describe(), key.Type(), ssh.FingerprintSHA256(key), k.cfg.KnownHostsFile,
			k.cfg.Port, k.cfg.Address, k.cfg.KnownHostsFile, HostKeyAcceptNew, host.ErrHostKeyUnknown)
	}
	return k.acceptNew(hostname, key)
}

// classify turns a knownhosts error into ours; ok=true means the host is
// simply unknown.
func (k *hostKeyChecker) classify(err error, key ssh.PublicKey) (error, bool) {
	var re *knownhosts.RevokedError
	if errors.As(err, &re) {
		return fmt.Errorf("%s: host key %s is marked @revoked at %s:%d: %w",
			k.cfg.describe(), ssh.FingerprintSHA256(key), re.Revoked.Filename, re.Revoked.Line, host.ErrHostKeyMismatch), false
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		// A host certificate that no @cert-authority entry accepts.
		return fmt.Errorf("%s: host certificate %s not accepted by %s (%v): %w",
			k.cfg.describe(), ssh.FingerprintSHA256(key), k.cfg.KnownHostsFile, err, host.ErrHostKeyMismatch), false
	}
	if len(ke.Want) == 0 {
		return nil, true
	}
	var b bytes.Buffer
	for _, w := range ke.Want {
		if k.ca[w.Line] {
			continue
		}
		fmt.Fprintf(&b, "; %s:%d has %s %s", w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key))
	}
	target := knownhosts.Normalize(k.cfg.addr())
	return fmt.Errorf("%s: REMOTE HOST KEY CHANGED: the server offered %s %s%s. If the host was reinstalled, remove the old entry with `ssh-keygen -R '%s' -f %s` and record the new key; otherwise someone may be intercepting the connection: %w",
		k.cfg.describe(), key.Type(), ssh.FingerprintSHA256(key), b.String(), target, k.cfg.KnownHostsFile, host.ErrHostKeyMismatch), false
}

// acceptNew appends key for hostname to the known_hosts file, under a
// process mutex and an flock, after checking again that no concurrent dial
// recorded a (possibly different) key meanwhile.
func (k *hostKeyChecker) acceptNew(hostname string, key ssh.PublicKey) error {
	file := k.cfg.KnownHostsFile
	mu := k.locks.get(file)
	mu.Lock()
	defer mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("%s: record host key: %w", k.cfg.describe(), err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: record host key: %w", k.cfg.describe(), err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("%s: lock %s: %w", k.cfg.describe(), file, err)
	}
	// Closing the file releases the lock too: the unlock is a courtesy.
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()

	db, err := loadKnownHosts(file)
	if err != nil {
		return fmt.Errorf("%s: %w", k.cfg.describe(), err)
	}
	if err := db(hostname, fakeAddr(hostname), key); err == nil {
		return nil // recorded meanwhile
	} else if known, ok := k.classify(err, key); !ok {
		return known
	}
	content, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s: record host key: %w", k.cfg.describe(), err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	if len(content) > 0 && content[len(content)-1] != '\n' {
		line = "\n" + line
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("%s: record host key in %s: %w", k.cfg.describe(), file, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: record host key in %s: %w", k.cfg.describe(), file, err)
	}
	return nil
}
