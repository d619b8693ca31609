//go:build integration

package ssh_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// localSSHD is a real OpenSSH server on 127.0.0.1 started for one test.
type localSSHD struct {
	Dir, KeyFile, HostPub string
	Port                  int
	cmd                   *exec.Cmd
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSSHD runs /usr/sbin/sshd -D -e with a private config accepting one key
// (shared by all sshds of the test when keyFile is given) for root.
func startSSHD(t testing.TB, keyFile string) *localSSHD {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("no /usr/sbin/sshd (apt-get install openssh-server)")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir+"/hostkey")
	if keyFile == "" {
		keyFile = dir + "/id_ed25519"
		run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile)
	}
	pub, _ := os.ReadFile(keyFile + ".pub")
	if err := os.WriteFile(dir+"/authorized_keys", pub, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/hostkey
AuthorizedKeysFile %[2]s/authorized_keys
PidFile %[2]s/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
`, port, dir)
	if err := os.WriteFile(dir+"/sshd_config", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", dir+"/sshd_config")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Logf("sshd:%d: %s", port, sc.Text())
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("sshd on port %d did not start", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hp, _ := os.ReadFile(dir + "/hostkey.pub")
	return &localSSHD{Dir: dir, KeyFile: keyFile, HostPub: strings.TrimSpace(string(hp)), Port: port, cmd: cmd}
}

// knownHostsLine is the sshd's entry for a known_hosts file.
func (s *localSSHD) knownHostsLine() string {
	f := strings.Fields(s.HostPub)
	return fmt.Sprintf("[127.0.0.1]:%d %s %s\n", s.Port, f[0], f[1])
}

func writeKnownHosts(t testing.TB, lines ...string) string {
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
