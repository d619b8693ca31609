//go:build integration

package ssh_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	sshx "github.com/clusterctl/clusterctl/provision/transport/ssh"
)

// One cluster of 4 test hosts (prefix ct3, net 172.31.3) shared by the
// package's integration tests; tests that break a host repair it.
var (
	clusterOnce sync.Once
	theCluster  *testhosts.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theCluster != nil {
		theCluster.Close()
	}
	os.Exit(code)
}

func cluster(t testing.TB) *testhosts.Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("test hosts need root")
	}
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		t0 := time.Now()
		theCluster, clusterErr = testhosts.Start(ctx, testhosts.Options{Net: "172.31.3", Count: 4, Prefix: "ct3"})
		fmt.Fprintf(os.Stderr, "testhosts: 4 hosts up in %v\n", time.Since(t0).Round(time.Millisecond))
	})
	if clusterErr != nil {
		t.Fatalf("start test hosts: %v", clusterErr)
	}
	return theCluster
}

func hostConfig(c *testhosts.Cluster, i int, user string) sshx.Config {
	h, _ := c.Host(i)
	return sshx.Config{Name: h.Name, Address: h.Addr, User: user, IdentityFiles: []string{c.KeyFile},
		KnownHostsFile: c.KnownHosts, Redactor: host.NewRedactor(), DialTimeout: 5 * time.Second}
}

func dial(t testing.TB, cfg sshx.Config) *sshx.Conn {
	t.Helper()
	conn, err := sshx.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func out(t testing.TB, h host.Host, line string) string {
	t.Helper()
	var b, e bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &b, Stderr: &e}); err != nil {
		t.Fatalf("%s: run %q: %v (%s)", h.Name(), line, err, e.String())
	}
	return strings.TrimSpace(b.String())
}

func TestConformanceSSH(t *testing.T) {
	c := cluster(t)
	t.Run("root", func(t *testing.T) {
		conn := dial(t, hostConfig(c, 1, "root"))
		hosttest.RunConformance(t, func(t *testing.T) host.Host { return conn })
	})
	t.Run("pool", func(t *testing.T) {
		p := sshx.NewPool()
		t.Cleanup(func() { p.Close() })
		h := p.Host(hostConfig(c, 2, "root"))
		hosttest.RunConformance(t, func(t *testing.T) host.Host { return h })
	})
	t.Run("sudo-tester", func(t *testing.T) {
		cfg := hostConfig(c, 1, "tester")
		conn := dial(t, cfg)
		hosttest.RunConformance(t, func(t *testing.T) host.Host {
			return host.WithSudo(conn, host.SudoOptions{Redactor: cfg.Redactor})
		})
	})
	t.Run("sudo-tester-pw", func(t *testing.T) {
		t.Setenv("CLUSTERCTL_TEST_SUDO_PASSWORD", "testpass")
		cfg := hostConfig(c, 1, "tester-pw")
		conn := dial(t, cfg)
		hosttest.RunConformance(t, func(t *testing.T) host.Host {
			return host.WithSudo(conn, host.SudoOptions{Password: os.Getenv("CLUSTERCTL_TEST_SUDO_PASSWORD"), Redactor: cfg.Redactor})
		})
	})
}

func TestPoolParallel4Hosts(t *testing.T) {
	c := cluster(t)
	p := sshx.NewPool()
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	t0 := time.Now()
	for i := 1; i <= 4; i++ {
		h := p.Host(hostConfig(c, i, "root"))
		for j := 0; j < 15; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var b bytes.Buffer
				if err := h.Run(context.Background(), host.Cmd{Line: "hostname", Stdout: &b}); err != nil {
					errs <- err
				} else if got := strings.TrimSpace(b.String()); got != fmt.Sprintf("h%d", i) {
					errs <- fmt.Errorf("h%d: hostname %q", i, got)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("60 commands on 4 hosts in %v", time.Since(t0))
	// One TCP connection per host carried all of them.
	for i := 1; i <= 4; i++ {
		h := p.Host(hostConfig(c, i, "root"))
		n := out(t, h, "ss -Htn state established '( sport = :22 )' | wc -l")
		if n != "1" {
			t.Errorf("h%d: %s established SSH connections, want 1", i, n)
		}
	}
}

func TestUpload50MBVerified(t *testing.T) {
	c := cluster(t)
	conn := dial(t, hostConfig(c, 1, "root"))
	data := make([]byte, 50<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	ctx := context.Background()
	out(t, conn, "rm -rf /root/upl && mkdir /root/upl")
	t0 := time.Now()
	if err := conn.UploadVerified(ctx, bytes.NewReader(data), "/root/upl/big.bin", host.FileOptions{Mode: 0o600}, want); err != nil {
		t.Fatal(err)
	}
	t.Logf("50 MB verified upload in %v", time.Since(t0))
	if got := out(t, conn, "sha256sum /root/upl/big.bin | cut -d' ' -f1; stat -c %a /root/upl/big.bin"); got != want+"\n600" {
		t.Errorf("on host: %q", got)
	}
	var dl bytes.Buffer
	if err := conn.Download(ctx, "/root/upl/big.bin", &dl); err != nil || !bytes.Equal(dl.Bytes(), data) {
		t.Errorf("download differs (%v)", err)
	}
	// A wrong digest: refused, nothing left behind, old file untouched.
	bad := strings.Repeat("0", 64)
	err := conn.UploadVerified(ctx, bytes.NewReader(data[:1<<20]), "/root/upl/big.bin", host.FileOptions{}, bad)
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("wrong sha256 accepted: %v", err)
	}
	err = conn.UploadVerified(ctx, bytes.NewReader(data[:1<<20]), "/root/upl/new.bin", host.FileOptions{}, bad)
	if err == nil {
		t.Fatal("wrong sha256 accepted")
	}
	if got := out(t, conn, "ls -A /root/upl"); got != "big.bin" {
		t.Errorf("left behind: %q", got)
	}
	if got := out(t, conn, "sha256sum /root/upl/big.bin | cut -d' ' -f1"); got != want {
		t.Errorf("old file changed by a refused upload")
	}
}

func knownHostsLines(t testing.TB, c *testhosts.Cluster) map[string]string {
	b, err := os.ReadFile(c.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 {
			m[f[0]] = f[1] + " " + f[2]
		}
	}
	return m
}

func TestHostKeyMismatchAndUnknown(t *testing.T) {
	c := cluster(t)
	keys := knownHostsLines(t, c)
	h1, _ := c.Host(1)
	h2, _ := c.Host(2)
	// h1's address with h2's key, on line 2.
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte("# comment\n"+h1.Addr+" "+keys[h2.Addr]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := hostConfig(c, 1, "root")
	cfg.KnownHostsFile = kh
	t0 := time.Now()
	_, err := sshx.Dial(context.Background(), cfg)
	if !errors.Is(err, host.ErrHostKeyMismatch) {
		t.Fatalf("got %v, want ErrHostKeyMismatch", err)
	}
	if time.Since(t0) > 3*time.Second {
		t.Errorf("mismatch was retried: %v", time.Since(t0))
	}
	for _, s := range []string{kh + ":2", "SHA256:", "ssh-keygen -R", "h1"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}
	t.Logf("mismatch: %v", err)
	// accept-new still refuses a changed key.
	cfg.HostKeyPolicy = sshx.HostKeyAcceptNew
	if _, err := sshx.Dial(context.Background(), cfg); !errors.Is(err, host.ErrHostKeyMismatch) {
		t.Fatalf("accept-new with a changed key: %v", err)
	}
	// Unknown host, strict.
	cfg.HostKeyPolicy = ""
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "empty")
	_, err = sshx.Dial(context.Background(), cfg)
	if !errors.Is(err, host.ErrHostKeyUnknown) || !strings.Contains(err.Error(), "ssh-keyscan -p 22 "+h1.Addr+" >> ") {
		t.Fatalf("unknown host: %v", err)
	}
	t.Logf("unknown: %v", err)
}

func TestAcceptNewThenStrict(t *testing.T) {
	c := cluster(t)
	kh := filepath.Join(t.TempDir(), "new", ".ssh", "known_hosts")
	p := sshx.NewPool()
	var wg sync.WaitGroup
	// Parallel first dials of 4 hosts, each recording its key.
	for i := 1; i <= 4; i++ {
		for _, user := range []string{"root", "tester"} { // two dials per host race on the same entry
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := hostConfig(c, i, user)
				cfg.KnownHostsFile, cfg.HostKeyPolicy = kh, sshx.HostKeyAcceptNew
				if _, err := p.Get(context.Background(), cfg); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	p.Close()
	b, _ := os.ReadFile(kh)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("known_hosts has %d lines, want 4:\n%s", len(lines), b)
	}
	if st, _ := os.Stat(kh); st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v", st.Mode())
	}
	if st, _ := os.Stat(filepath.Dir(kh)); st.Mode().Perm() != 0o700 {
		t.Errorf("known_hosts dir mode %v", st.Mode())
	}
	want := knownHostsLines(t, c)
	for _, l := range lines {
		f := strings.Fields(l)
		if want[f[0]] != f[1]+" "+f[2] {
			t.Errorf("recorded %q, real key %q", l, want[f[0]])
		}
	}
	for i := 1; i <= 4; i++ {
		cfg := hostConfig(c, i, "root")
		cfg.KnownHostsFile = kh
		dial(t, cfg)
	}
	// Hashed entries (ssh-keygen -H) verify too.
	if o, err := exec.Command("ssh-keygen", "-H", "-f", kh).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v %s", err, o)
	}
	b, _ = os.ReadFile(kh)
	if !strings.HasPrefix(string(b), "|1|") {
		t.Fatalf("not hashed: %s", b)
	}
	cfg := hostConfig(c, 3, "root")
	cfg.KnownHostsFile = kh
	dial(t, cfg)
}

func TestBastion(t *testing.T) {
	c := cluster(t)
	h1, _ := c.Host(1)
	rule := "INPUT -p tcp --dport 22 ! -s " + h1.Addr + " -j DROP"
	for _, i := range []int{2, 3} {
		if o, err := c.Exec(context.Background(), i, "iptables -I "+rule); err != nil {
			t.Skipf("iptables inside h%d: %v %s", i, err, o)
		}
		t.Cleanup(func() { c.Exec(context.Background(), i, "iptables -D "+rule) })
	}
	// Direct: refused by the firewall (dropped: times out).
	cfg := hostConfig(c, 2, "root")
	cfg.DialTimeout = 2 * time.Second
	t0 := time.Now()
	if _, err := sshx.Dial(context.Background(), cfg); !errors.Is(err, host.ErrUnreachable) {
		t.Fatalf("direct dial of h2 behind the firewall: %v", err)
	} else {
		t.Logf("direct: %v after %v", err, time.Since(t0))
	}
	p := sshx.NewPool()
	defer p.Close()
	bastion := hostConfig(c, 1, "root")
	for _, i := range []int{2, 3} {
		cfg := hostConfig(c, i, "root")
		cfg.Bastion = &bastion
		h := p.Host(cfg)
		if got := out(t, h, "hostname; echo $SSH_CONNECTION | cut -d' ' -f1"); got != fmt.Sprintf("h%d\n%s", i, h1.Addr) {
			t.Errorf("via bastion: %q", got)
		}
		if err := h.Upload(context.Background(), strings.NewReader("via bastion\n"), "/root/bastion.txt", host.FileOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Standalone Dial with a private bastion.
	cfg = hostConfig(c, 3, "root")
	cfg.Bastion = &bastion
	conn := dial(t, cfg)
	if got, err := conn.ReadFile(context.Background(), "/root/bastion.txt"); err != nil || string(got) != "via bastion\n" {
		t.Errorf("read via bastion: %q %v", got, err)
	}
}

func TestSudoUsers(t *testing.T) {
	c := cluster(t)
	t.Setenv("CLUSTERCTL_TEST_SUDO_PASSWORD", "testpass")
	for _, tc := range []struct{ user, pwEnv string }{{"tester", ""}, {"tester-pw", "CLUSTERCTL_TEST_SUDO_PASSWORD"}} {
		t.Run(tc.user, func(t *testing.T) {
			cfg := hostConfig(c, 2, tc.user)
			conn := dial(t, cfg)
			pw := ""
			if tc.pwEnv != "" {
				pw = os.Getenv(tc.pwEnv)
			}
			h := host.WithSudo(conn, host.SudoOptions{Password: pw, Redactor: cfg.Redactor})
			ctx := context.Background()
			dst := "/etc/clusterctl-" + tc.user + ".conf"
			if err := h.Upload(ctx, strings.NewReader("written by "+tc.user+"\n"), dst, host.FileOptions{Mode: 0o640, Owner: "root", Group: "root"}); err != nil {
				t.Fatal(err)
			}
			if got := out(t, conn, "stat -c '%U:%G %a' "+dst+"; ls -A ~ | grep clusterctl || true; ls /etc | grep clusterctl-tmp || true"); got != "root:root 640" {
				t.Errorf("after sudo upload: %q", got)
			}
			shadow, err := h.ReadFile(ctx, "/etc/shadow")
			if err != nil || !strings.Contains(string(shadow), "root:") {
				t.Errorf("sudo read of /etc/shadow: %v", err)
			}
			if _, err := conn.ReadFile(ctx, "/etc/shadow"); err == nil {
				t.Errorf("%s can read /etc/shadow without sudo", tc.user)
			}
			if _, err := h.ReadFile(ctx, "/etc/nope"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file under sudo: %v", err)
			}
			if got := out(t, h, "id -un; cat"); got != "root" {
				t.Errorf("sudo id / stdin: %q (password leaked into stdin?)", got)
			}
			err = h.Run(ctx, host.Cmd{Line: "echo " + host.Quote("pw is testpass") + " >&2; exit 3"})
			if err == nil || strings.Contains(err.Error(), "testpass") && pw != "" {
				t.Errorf("password visible: %v", err)
			}
		})
	}
	t.Run("tester-pw-without-password", func(t *testing.T) {
		conn := dial(t, hostConfig(c, 2, "tester-pw"))
		err := host.WithSudo(conn, host.SudoOptions{}).Run(context.Background(), host.Cmd{Line: "true"})
		if !errors.Is(err, host.ErrSudoPasswordNeed) {
			t.Fatalf("got %v", err)
		}
		t.Logf("%v", err)
	})
	t.Run("tester-pw-wrong-password", func(t *testing.T) {
		conn := dial(t, hostConfig(c, 2, "tester-pw"))
		r := host.NewRedactor()
		err := host.WithSudo(conn, host.SudoOptions{Password: "wrong-pass", Redactor: r}).Run(context.Background(), host.Cmd{Line: "true"})
		if !errors.Is(err, host.ErrAuthFailed) || strings.Contains(err.Error(), "wrong-pass") {
			t.Fatalf("got %v", err)
		}
		t.Logf("%v", err)
	})
}

func TestSecretsRedacted(t *testing.T) {
	c := cluster(t)
	cfg := hostConfig(c, 1, "root")
	const secret = "K10join-token::server:deadbeefcafe"
	cfg.Redactor.Add(secret)
	conn := dial(t, cfg)
	var captured bytes.Buffer
	w := cfg.Redactor.Writer(&captured)
	err := conn.Run(context.Background(), host.Cmd{
		Line:   "k3s agent --token " + host.Quote(secret) + " 2>/dev/null; echo \"bad token " + secret + "\" >&2; echo " + secret + "; exit 2",
		Stdout: w, Stderr: w,
	})
	w.(io.Closer).Close()
	var ee *host.ExitError
	if !errors.As(err, &ee) || ee.Code != 2 {
		t.Fatalf("got %v", err)
	}
	for where, s := range map[string]string{"error": err.Error(), "command": ee.Command, "stderr tail": ee.Stderr, "captured": captured.String()} {
		if strings.Contains(s, "deadbeef") {
			t.Errorf("secret in %s: %q", where, s)
		}
		if !strings.Contains(s, "***") {
			t.Errorf("no redaction mark in %s: %q", where, s)
		}
	}
}

// TestFailuresInParallelBatch breaks three of four hosts in three ways while
// a batch runs on all four: h1 finishes, the others fail with a clear error
// within the configured time. Runs last; repairs the hosts.
func TestFailuresInParallelBatch(t *testing.T) {
	c := cluster(t)
	const keepAlive = time.Second
	p := sshx.NewPool()
	defer p.Close()
	hosts := make([]host.Host, 5)
	for i := 1; i <= 4; i++ {
		cfg := hostConfig(c, i, "root")
		cfg.KeepAlive, cfg.DialTimeout = keepAlive, 3*time.Second
		hosts[i] = p.Host(cfg)
		out(t, hosts[i], "true") // connected
	}
	t.Cleanup(func() {
		c.Resume(3)
		c.Reconnect(4)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Boot(ctx, 2); err != nil {
			t.Errorf("boot h2 again: %v", err)
		}
	})
	// The batch runs long enough that all three faults land while it runs,
	// even when the fault scripts are slow on a loaded machine; each
	// failure is timed from its own fault, not from the batch's start.
	const batch = 30 * time.Second
	type result struct {
		err  error
		done time.Time
	}
	res := make([]result, 5)
	var wg sync.WaitGroup
	for i := 1; i <= 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*batch)
			defer cancel()
			err := hosts[i].Run(ctx, host.Cmd{Line: fmt.Sprintf("sleep %d; echo done", int(batch.Seconds()))})
			res[i] = result{err, time.Now()}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	faulted := make([]time.Time, 5)
	for i, fault := range map[int]func(int) error{2: c.Kill, 3: c.Pause, 4: c.Disconnect} {
		if err := fault(i); err != nil {
			t.Fatal(err)
		}
		faulted[i] = time.Now()
	}
	wg.Wait()
	if res[1].err != nil {
		t.Errorf("h1 failed: %v", res[1].err)
	}
	limit := (3+1)*keepAlive + 3*time.Second
	for i, what := range map[int]string{2: "killed", 3: "paused", 4: "disconnected"} {
		r := res[i]
		if !errors.Is(r.err, host.ErrDisconnected) && !errors.Is(r.err, host.ErrUnreachable) {
			t.Errorf("h%d %s: %v, want ErrDisconnected or ErrUnreachable", i, what, r.err)
		}
		d := r.done.Sub(faulted[i])
		if d > limit {
			t.Errorf("h%d %s: failed %v after the fault, limit %v", i, what, d, limit)
		}
		t.Logf("h%d %s: %v after the fault: %v", i, what, d.Round(time.Millisecond), r.err)
	}
	// New dials to the broken hosts fail within the dial timeout.
	for i, what := range map[int]string{2: "killed", 3: "paused", 4: "disconnected"} {
		cfg := hostConfig(c, i, "root")
		cfg.DialTimeout = 3 * time.Second
		t1 := time.Now()
		_, err := sshx.Dial(context.Background(), cfg)
		d := time.Since(t1)
		if !errors.Is(err, host.ErrUnreachable) {
			t.Errorf("dial h%d %s: %v", i, what, err)
		}
		if d > cfg.DialTimeout+time.Second {
			t.Errorf("dial h%d %s: %v, timeout %v", i, what, d, cfg.DialTimeout)
		}
		t.Logf("dial h%d %s: after %v: %v", i, what, d.Round(time.Millisecond), err)
	}
}
