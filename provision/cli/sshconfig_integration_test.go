//go:build integration

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/spec"
)

// An ssh_config file with a Host pattern that sets the user and the key,
// and a ProxyJump chain through two bastions, on real OpenSSH hosts
// (prefix sc1, net 172.31.60): h2 accepts SSH only from h1 and h3 only
// from h2, so h3 is reachable only through h1 then h2.
func TestSSHConfigProxyJumpChain(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("test hosts need root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := testhosts.Start(ctx, testhosts.Options{Net: "172.31.60", Count: 3, Prefix: "sc1"})
	if err != nil {
		t.Fatalf("start test hosts: %v", err)
	}
	defer c.Close()
	h1, _ := c.Host(1)
	h2, _ := c.Host(2)
	h3, _ := c.Host(3)
	onlyFrom := func(i int, from string) {
		t.Helper()
		// New SSH connections from anyone else are dropped (a timeout, as
		// behind a firewall); the harness's nsenter Exec still works.
		script := fmt.Sprintf("iptables -A INPUT -p tcp --dport 22 ! -s %s -m conntrack --ctstate NEW -j DROP", host.Quote(from))
		if out, err := c.Exec(ctx, i, script); err != nil {
			t.Fatalf("isolate h%d: %v: %s", i, err, out)
		}
	}
	onlyFrom(2, h1.Addr)
	onlyFrom(3, h2.Addr)

	// No agent and an empty home: the only key is the one the Host
	// pattern names, so a login proves the pattern applied.
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("HOME", t.TempDir())

	dir := t.TempDir()
	emptyKnown := filepath.Join(dir, "empty_known_hosts")
	if err := os.WriteFile(emptyKnown, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// First value wins: the failing routes come before the pattern.
	sshConfig := fmt.Sprintf(`Host target-badhop
  ProxyJump jump1,jump3

Host target-unknownkey
  ProxyJump jump1-unknown

Host target-* !target-direct
  User tester
  IdentityFile %[1]s
  UserKnownHostsFile %[2]s
  ProxyJump jump1,ops@jump2

Host jump1
  HostName %[3]s
  User root

Host jump1-unknown
  HostName %[3]s
  UserKnownHostsFile %[6]s

Host jump2
  HostName %[4]s

Host jump3
  HostName %[5]s

Host *
  IdentityFile %[1]s
  UserKnownHostsFile %[2]s
`, c.KeyFile, c.KnownHosts, h1.Addr, h2.Addr, h3.Addr, emptyKnown)
	// ops is not a user on h2: the hop's ProxyJump user must win over
	// the jump2 entry, so make it one.
	if out, err := c.Exec(ctx, 2, "useradd -m ops && mkdir -p ~ops/.ssh && cp /root/.ssh/authorized_keys ~ops/.ssh/ && chown -R ops: ~ops/.ssh"); err != nil {
		t.Fatalf("add user ops on h2: %v: %s", err, out)
	}
	// oneHost writes a spec of one host (addresses must be unique) beside
	// the ssh_config file and returns its directory.
	oneHost := func(t *testing.T, name, addr string) string {
		t.Helper()
		d := t.TempDir()
		spec := fmt.Sprintf(`package clusterctl

cluster: {
	name: "sc"
	kubernetes: version: "1.37.2"
	ssh: {config: "ssh_config", connectTimeout: "4s"}
	hosts: %q: {address: %q, roles: ["control-plane"]}
}
`, name, addr)
		for file, text := range map[string]string{"cluster.cue": spec, "ssh_config": sshConfig} {
			if err := os.WriteFile(filepath.Join(d, file), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	connectOne := func(t *testing.T, name string) *fleet {
		t.Helper()
		f, err := connect(testSpecDir(t, oneHost(t, name, h3.Addr)), host.NewRedactor())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}

	t.Run("chain and pattern", func(t *testing.T) {
		f := connectOne(t, "target-3")
		var out bytes.Buffer
		// sshd's log says who logged in, with which key, from where.
		line := `journalctl -u ssh --no-pager -o cat | grep 'Accepted publickey' | tail -n 3`
		if err := f.hosts["target-3"].Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
			t.Fatalf("run on h3 through the chain: %v", err)
		}
		got := out.String()
		t.Logf("h3 says:\n%s", got)
		if !strings.Contains(got, "Accepted publickey for tester from "+h2.Addr+" ") {
			t.Errorf("h3's sshd did not log a login of tester from h2 (%s)", h2.Addr)
		}
		rc := f.conns["target-3"]
		if rc.cfg.User != "tester" || !strings.HasPrefix(rc.origins["user"], "ssh_config ") || !strings.HasSuffix(rc.origins["proxyJump"], "ssh_config:11") {
			t.Errorf("target-3: user %q origins %v", rc.cfg.User, rc.origins)
		}
	})

	t.Run("hop 2 is h2 logged in as ops from h1", func(t *testing.T) {
		out, err := c.Exec(ctx, 2, "journalctl -u ssh --no-pager -o cat | grep 'Accepted publickey for ops' | tail -n 1")
		if err != nil || !strings.Contains(out, "from "+h1.Addr+" ") {
			t.Errorf("h2's sshd log: %v %q, want ops from h1 (%s)", err, out, h1.Addr)
		}
	})

	t.Run("negated pattern dials directly and is dropped", func(t *testing.T) {
		f := connectOne(t, "target-direct")
		if rc := f.conns["target-direct"]; rc.cfg.Bastion != nil || rc.cfg.User != "root" {
			t.Errorf("target-direct: user %q bastion %+v, want root and no jump", rc.cfg.User, rc.cfg.Bastion)
		}
		err := f.hosts["target-direct"].Run(ctx, host.Cmd{Line: "true"})
		if !errors.Is(err, host.ErrUnreachable) {
			t.Errorf("direct dial to isolated h3: %v, want unreachable (else the chain test proves nothing)", err)
		}
	})

	for _, tc := range []struct{ name, want, also string }{
		// h1 cannot reach h3: the hop not reached, and through which.
		{"target-badhop", "jump 2/2 jump3", "through bastion jump 1/2 jump1 (root@" + h1.Addr + ":22): no connection within 4s"},
		// Each hop's host key is checked against its own known_hosts.
		{"target-unknownkey", "jump 1/1 jump1-unknown", "is not in " + emptyKnown},
	} {
		t.Run("failing hop "+tc.name, func(t *testing.T) {
			f := connectOne(t, tc.name)
			err := f.hosts[tc.name].Run(ctx, host.Cmd{Line: "true"})
			t.Logf("%s: %v", tc.name, err)
			if err == nil || !strings.Contains(err.Error(), tc.want+" (") || !strings.Contains(err.Error(), tc.also) {
				t.Errorf("err = %v, want it to name the failing hop %q and say %q", err, tc.want, tc.also)
			}
			if tc.name == "target-unknownkey" && !errors.Is(err, host.ErrHostKeyUnknown) {
				t.Errorf("err = %v, want ErrHostKeyUnknown for the hop", err)
			}
		})
	}

	t.Run("facts -o json shows the origins", func(t *testing.T) {
		dir := oneHost(t, "target-3", h3.Addr)
		var stdout, stderr bytes.Buffer
		code := Run(ctx, []string{"facts", "-o", "json", dir}, Options{Stdout: &stdout, Stderr: &stderr, Version: "test"})
		if code != 0 {
			t.Fatalf("facts exit %d: %s", code, stderr.String())
		}
		var got map[string]struct {
			Connection map[string]connSetting `json:"connection"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		conn := got["target-3"].Connection
		want := map[string]connSetting{
			"user":      {Value: "tester", Origin: "ssh_config " + filepath.Join(dir, "ssh_config") + ":8"},
			"proxyJump": {Value: fmt.Sprintf("root@%s:22,ops@%s:22", h1.Addr, h2.Addr), Origin: "ssh_config " + filepath.Join(dir, "ssh_config") + ":11"},
			"hostname":  {Value: h3.Addr, Origin: "spec"},
			"port":      {Value: "22", Origin: "default"},
		}
		for k, w := range want {
			if conn[k] != w {
				t.Errorf("connection.%s = %+v, want %+v", k, conn[k], w)
			}
		}
	})
}

func testSpecDir(t *testing.T, dir string) *spec.Cluster {
	t.Helper()
	c, err := spec.Load([]string{dir}, spec.LoadOptions{WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
