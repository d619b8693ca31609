package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterctl/clusterctl/provision/host"
)

// testServer is an in-process SSH server for fast tests of dialling logic
// only (host keys, retries, timeouts, keepalive). Real behaviour is proven
// against OpenSSH in the integration tests.
type testServer struct {
	addr     string
	port     int
	hostKey  ssh.Signer
	conns    atomic.Int32 // TCP connections accepted
	dropN    int32        // close the first dropN connections at once
	silent   bool         // accept TCP, never speak
	frozen   atomic.Bool  // stop reading from every connection
	sessions atomic.Int32
}

func newSigner(t testing.TB) (ssh.Signer, []byte) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, pem.EncodeToMemory(block)
}

// clientKey writes a client key file and returns its path and signer.
func clientKey(t testing.TB) (string, ssh.Signer) {
	s, pemBytes := newSigner(t)
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, s
}

type freezeConn struct {
	net.Conn
	s *testServer
}

func (c freezeConn) Read(p []byte) (int, error) {
	for c.s.frozen.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	return c.Conn.Read(p)
}

func startTestServer(t testing.TB, client ssh.PublicKey, mod func(*testServer)) *testServer {
	hk, _ := newSigner(t)
	s := &testServer{hostKey: hk}
	if mod != nil {
		mod(s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s.addr = "127.0.0.1"
	s.port = l.Addr().(*net.TCPAddr).Port
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(client.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(s.hostKey)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := s.conns.Add(1)
			if n <= s.dropN {
				c.Close()
				continue
			}
			if s.silent {
				t.Cleanup(func() { c.Close() })
				continue
			}
			go s.serve(freezeConn{c, s}, cfg)
		}
	}()
	return s
}

func (s *testServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs) // keepalive: replies false, as OpenSSH
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.sessions.Add(1)
		go func() {
			defer ch.Close()
			for r := range creqs {
				if r.Type != "exec" {
					r.Reply(false, nil)
					continue
				}
				r.Reply(true, nil)
				line := string(r.Payload[4:])
				code := 0
				if strings.HasPrefix(line, "sleep") {
					time.Sleep(30 * time.Second)
				}
				fmt.Sscanf(line, "exit %d", &code)
				ch.Write([]byte("ran: " + line + "\n"))
				var b [4]byte
				binary.BigEndian.PutUint32(b[:], uint32(code))
				ch.SendRequest("exit-status", false, b[:])
				return
			}
		}()
	}
}

func (s *testServer) config(keyFile, knownHosts string) Config {
	return Config{Name: "t1", Address: s.addr, Port: s.port, User: "u", IdentityFiles: []string{keyFile},
		KnownHostsFile: knownHosts, DialTimeout: 2 * time.Second, KeepAlive: -1}
}

func (s *testServer) knownLine(hashed bool) string {
	a := knownhosts.Normalize(net.JoinHostPort(s.addr, fmt.Sprint(s.port)))
	if hashed {
		a = knownhosts.HashHostname(a)
	}
	return knownhosts.Line([]string{a}, s.hostKey.PublicKey()) + "\n"
}

func writeFile(t testing.TB, content string) string {
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDialKnownHostsForms(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), nil)
	ca, _ := newSigner(t)
	other, _ := newSigner(t)
	for name, content := range map[string]string{
		"[host]:port": s.knownLine(false),
		"hashed":      s.knownLine(true),
		"among-others": "# c\n" + knownhosts.Line([]string{"10.0.0.1"}, other.PublicKey()) + "\n" +
			"@cert-authority *.example " + string(ssh.MarshalAuthorizedKey(ca.PublicKey())) + s.knownLine(false),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Dial(context.Background(), s.config(key, writeFile(t, content)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var out strings.Builder
			if err := c.Run(context.Background(), host.Cmd{Line: "echo hi", Stdout: &out}); err != nil || out.String() != "ran: echo hi\n" {
				t.Fatalf("%v %q", err, out.String())
			}
		})
	}
}

func TestDialCertAuthority(t *testing.T) {
	key, signer := clientKey(t)
	ca, _ := newSigner(t)
	s := startTestServer(t, signer.PublicKey(), func(s *testServer) {
		cert := &ssh.Certificate{Key: s.hostKey.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{"127.0.0.1"},
			ValidBefore: ssh.CertTimeInfinity, Serial: 1}
		if err := cert.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		cs, err := ssh.NewCertSigner(cert, s.hostKey)
		if err != nil {
			t.Fatal(err)
		}
		s.hostKey = cs
	})
	kh := writeFile(t, fmt.Sprintf("@cert-authority [127.0.0.1]:%d ", s.port)+string(ssh.MarshalAuthorizedKey(ca.PublicKey())))
	c, err := Dial(context.Background(), s.config(key, kh))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestDialHostKeyErrors(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), nil)
	other, _ := newSigner(t)
	wrong := "# first\n" + knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("127.0.0.1:%d", s.port))}, other.PublicKey()) + "\n"
	kh := writeFile(t, wrong)
	cfg := s.config(key, kh)
	t0 := time.Now()
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, host.ErrHostKeyMismatch) || !strings.Contains(err.Error(), kh+":2") ||
		!strings.Contains(err.Error(), ssh.FingerprintSHA256(s.hostKey.PublicKey())) {
		t.Fatalf("mismatch: %v", err)
	}
	if s.conns.Load() != 1 || time.Since(t0) > time.Second {
		t.Errorf("host key error retried: %d connections", s.conns.Load())
	}
	cfg.HostKeyPolicy = HostKeyAcceptNew
	if _, err := Dial(context.Background(), cfg); !errors.Is(err, host.ErrHostKeyMismatch) {
		t.Fatalf("accept-new over a changed key: %v", err)
	}
	if b, _ := os.ReadFile(kh); string(b) != wrong {
		t.Errorf("known_hosts changed: %q", b)
	}
	cfg = s.config(key, filepath.Join(t.TempDir(), "missing"))
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, host.ErrHostKeyUnknown) || !strings.Contains(err.Error(), fmt.Sprintf("ssh-keyscan -p %d 127.0.0.1 >> ", s.port)) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestAcceptNewConcurrent(t *testing.T) {
	key, signer := clientKey(t)
	var servers []*testServer
	for range 4 {
		servers = append(servers, startTestServer(t, signer.PublicKey(), nil))
	}
	kh := filepath.Join(t.TempDir(), "dir", "known_hosts")
	p := NewPool()
	defer p.Close()
	var wg sync.WaitGroup
	for _, s := range servers {
		for _, user := range []string{"a", "b", "c"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := s.config(key, kh)
				cfg.User, cfg.HostKeyPolicy = user, HostKeyAcceptNew
				if _, err := p.Get(context.Background(), cfg); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	b, _ := os.ReadFile(kh)
	if n := strings.Count(string(b), "\n"); n != 4 {
		t.Fatalf("%d entries recorded, want 4:\n%s", n, b)
	}
	st, _ := os.Stat(kh)
	dst, _ := os.Stat(filepath.Dir(kh))
	if st.Mode().Perm() != 0o600 || dst.Mode().Perm() != 0o700 {
		t.Errorf("modes %v %v", st.Mode(), dst.Mode())
	}
	for _, s := range servers {
		c, err := Dial(context.Background(), s.config(key, kh)) // strict now
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func TestDialRetriesTransient(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), func(s *testServer) { s.dropN = 2 })
	t0 := time.Now()
	c, err := Dial(context.Background(), s.config(key, writeFile(t, s.knownLine(false))))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := s.conns.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if d := time.Since(t0); d < 900*time.Millisecond || d > 4*time.Second {
		t.Errorf("backoff took %v, want ~0.5s+1s jittered", d)
	}
	// Retries exhausted: the error names the host and wraps ErrUnreachable.
	s2 := startTestServer(t, signer.PublicKey(), func(s *testServer) { s.dropN = 100 })
	cfg := s2.config(key, writeFile(t, s2.knownLine(false)))
	cfg.Retries = 1
	_, err = Dial(context.Background(), cfg)
	if !errors.Is(err, host.ErrUnreachable) || !strings.Contains(err.Error(), "t1 (u@127.0.0.1:") || s2.conns.Load() != 2 {
		t.Fatalf("after retries: %v (%d attempts)", err, s2.conns.Load())
	}
	// Refused: retried, then ErrUnreachable.
	cfg.Port = freeTCPPort(t)
	if _, err := Dial(context.Background(), cfg); !errors.Is(err, host.ErrUnreachable) {
		t.Fatalf("refused: %v", err)
	}
}

func freeTCPPort(t testing.TB) int {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestDialAuthFailure(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), nil)
	otherKey, _ := clientKey(t)
	cfg := s.config(otherKey, writeFile(t, s.knownLine(false)))
	cfg.Retries = 1
	_, err := Dial(context.Background(), cfg)
	if !errors.Is(err, host.ErrAuthFailed) || s.conns.Load() != 2 {
		t.Fatalf("auth: %v (%d attempts)", err, s.conns.Load())
	}
	_ = key
}

func TestEncryptedKeyPassphraseEnv(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("s3cret-pass"))
	p := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(p, "CLUSTERCTL_TEST_PASSPHRASE"); err == nil || !strings.Contains(err.Error(), "CLUSTERCTL_TEST_PASSPHRASE is not set") {
		t.Fatalf("unset: %v", err)
	}
	t.Setenv("CLUSTERCTL_TEST_PASSPHRASE", "wrong-pass")
	if _, err := loadKey(p, "CLUSTERCTL_TEST_PASSPHRASE"); err == nil || strings.Contains(err.Error(), "wrong-pass") {
		t.Fatalf("wrong: %v", err)
	}
	t.Setenv("CLUSTERCTL_TEST_PASSPHRASE", "s3cret-pass")
	if _, err := loadKey(p, "CLUSTERCTL_TEST_PASSPHRASE"); err != nil {
		t.Fatal(err)
	}
}

func TestDialTimeoutFrozenHost(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), func(s *testServer) { s.silent = true })
	cfg := s.config(key, writeFile(t, ""))
	cfg.DialTimeout = 500 * time.Millisecond
	t0 := time.Now()
	_, err := Dial(context.Background(), cfg)
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Errorf("took %v with a 500ms dial timeout", d)
	}
	if !errors.Is(err, host.ErrUnreachable) || !strings.Contains(err.Error(), "no SSH handshake") {
		t.Fatalf("%v", err)
	}
}

func TestKeepAliveDeclaresDead(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), nil)
	cfg := s.config(key, writeFile(t, s.knownLine(false)))
	cfg.KeepAlive = 100 * time.Millisecond
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(350 * time.Millisecond) // answered keepalives keep it alive
	if err := c.Run(context.Background(), host.Cmd{Line: "true"}); err != nil {
		t.Fatal(err)
	}
	s.frozen.Store(true)
	defer s.frozen.Store(false)
	t0 := time.Now()
	err = c.Run(context.Background(), host.Cmd{Line: "true"})
	if !errors.Is(err, host.ErrDisconnected) {
		t.Fatalf("frozen peer: %v", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("declared dead after %v", d)
	}
	if err := c.Run(context.Background(), host.Cmd{Line: "true"}); !errors.Is(err, host.ErrDisconnected) {
		t.Fatalf("later call: %v", err)
	}
}

func TestRunRefusesNULWithoutSending(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), nil)
	c, err := Dial(context.Background(), s.config(key, writeFile(t, s.knownLine(false))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Run(context.Background(), host.Cmd{Line: "rm -rf /tmp/x\x00/"})
	if !errors.Is(err, host.ErrInvalidCommand) || s.sessions.Load() != 0 {
		t.Fatalf("%v, %d sessions opened", err, s.sessions.Load())
	}
}

func TestRunExitCodeRedacted(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), nil)
	cfg := s.config(key, writeFile(t, s.knownLine(false)))
	cfg.Redactor = host.NewRedactor()
	cfg.Redactor.Add("tok-123456")
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Run(context.Background(), host.Cmd{Line: "exit 5 tok-123456"})
	var ee *host.ExitError
	if !errors.As(err, &ee) || ee.Code != 5 || strings.Contains(err.Error(), "tok-") {
		t.Fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Run(ctx, host.Cmd{Line: "sleep 30"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancel: %v", err)
	}
}

func TestPoolDialsOnce(t *testing.T) {
	key, signer := clientKey(t)
	s := startTestServer(t, signer.PublicKey(), nil)
	p := NewPool()
	h := p.Host(s.config(key, writeFile(t, s.knownLine(false))))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.Run(context.Background(), host.Cmd{Line: "true"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	p.Close()
	if err := h.Run(context.Background(), host.Cmd{Line: "true"}); err == nil {
		t.Error("closed pool still runs commands")
	}
}
