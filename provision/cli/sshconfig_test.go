package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/state"
	"github.com/clusterctl/clusterctl/provision/transport/ssh"
)

func writeSSHConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Schema defaults (user root, port 22, strict) do not hide ssh_config
// values; what the spec writes wins; sudo follows the final user.
func TestTransportConfigFromSSHConfig(t *testing.T) {
	cfgFile := writeSSHConfig(t, `Host h2 h3
  User tester
  IdentityFile /keys/tester
  Port 2222
  StrictHostKeyChecking accept-new
  ProxyJump b1
Host b1
  HostName 172.31.10.1
`)
	c := testSpec(t, oneCPSpec+`
	hosts: h3: ssh: {user: "root", sudo: enabled: false}
	ssh: {config: "`+cfgFile+`", port: 22}`)
	f, err := connect(c, host.NewRedactor())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	h2 := f.conns["h2"]
	if h2.cfg.User != "tester" || h2.cfg.Port != 22 || h2.cfg.HostKeyPolicy != ssh.HostKeyAcceptNew {
		t.Errorf("h2: user %q port %d policy %q; want tester from ssh_config, 22 from the spec, accept-new", h2.cfg.User, h2.cfg.Port, h2.cfg.HostKeyPolicy)
	}
	if h2.origins[ssh.SettingUser] != "ssh_config "+cfgFile+":2" || h2.origins[ssh.SettingPort] != ssh.OriginSpec {
		t.Errorf("h2 origins %v", h2.origins)
	}
	if b := h2.cfg.Bastion; b == nil || b.Address != "172.31.10.1" || b.User != "tester" {
		t.Errorf("h2 bastion %+v, want b1 at 172.31.10.1 as tester", b)
	}
	if typ := fmt.Sprintf("%T", f.hosts["h2"]); typ != "*host.sudoHost" {
		t.Errorf("h2 connects as tester but is %s, not wrapped in sudo", typ)
	}
	if typ := fmt.Sprintf("%T", f.hosts["h3"]); typ == "*host.sudoHost" {
		t.Errorf("h3 sets sudo.enabled false but is wrapped in sudo")
	}
	h3 := f.conns["h3"]
	if h3.cfg.User != "root" || h3.origins[ssh.SettingUser] != ssh.OriginSpec {
		t.Errorf("h3: user %q from %q; the spec's per-host user must win", h3.cfg.User, h3.origins[ssh.SettingUser])
	}
	h1 := f.conns["h1"]
	if h1.cfg.User != "root" || h1.origins[ssh.SettingUser] != ssh.OriginDefault || h1.cfg.Bastion != nil {
		t.Errorf("h1 (no Host block): user %q from %q, bastion %+v", h1.cfg.User, h1.origins[ssh.SettingUser], h1.cfg.Bastion)
	}

	var out bytes.Buffer
	printSSHConfigOrigins(&out, c.Names(), f.conns)
	if !strings.Contains(out.String(), "h2: from ssh_config: ") || !strings.Contains(out.String(), "user tester ("+cfgFile+":2)") ||
		!strings.Contains(out.String(), "proxyJump tester@172.31.10.1:22 ("+cfgFile+":6)") || strings.Contains(out.String(), "h1:") {
		t.Errorf("origins note:\n%s", out.String())
	}
	got := connectionSettings(h2)
	if got[ssh.SettingIdentityFile] != (connSetting{Value: "/keys/tester", Origin: "ssh_config " + cfgFile + ":3"}) {
		t.Errorf("json identityFile %+v", got[ssh.SettingIdentityFile])
	}
}

// An ssh_config StrictHostKeyChecking no is refused with its file:line,
// unless the spec writes its own policy.
func TestSSHConfigRefusesNoHostKeyChecking(t *testing.T) {
	cfgFile := writeSSHConfig(t, "Host *\n  StrictHostKeyChecking no\n")
	c := testSpec(t, oneCPSpec+`
	ssh: config: "`+cfgFile+`"`)
	_, err := connect(c, host.NewRedactor())
	if err == nil || !strings.Contains(err.Error(), cfgFile+":2") || !strings.Contains(err.Error(), "always verifies host keys") {
		t.Fatalf("err = %v, want a refusal naming %s:2", err, cfgFile)
	}
	c = testSpec(t, oneCPSpec+`
	ssh: {config: "`+cfgFile+`", hostKeyPolicy: "strict"}`)
	f, err := connect(c, host.NewRedactor())
	if err != nil {
		t.Fatalf("the spec's hostKeyPolicy must win over the file: %v", err)
	}
	f.Close()
}

// A host only the record lists stays strict even when ssh_config says
// accept-new for every host.
func TestConnectRemovedIsStrictOverSSHConfig(t *testing.T) {
	port, _ := sshListener(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	cfgFile := writeSSHConfig(t, "Host *\n  StrictHostKeyChecking accept-new\n")
	c := testSpec(t, oneCPSpec+`
	ssh: {config: "`+cfgFile+`", knownHostsFile: "`+known+`", identityFile: "`+clientKey(t)+`", connectTimeout: "3s"}`)
	f, err := connect(c, host.NewRedactor())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if p := f.conns["h1"].cfg.HostKeyPolicy; p != ssh.HostKeyAcceptNew {
		t.Fatalf("spec host policy %q, want accept-new from ssh_config (else this test cannot fail)", p)
	}
	var stderr bytes.Buffer
	gone := connectRemoved(context.Background(), c, f, []state.Host{{Name: "old", Address: "127.0.0.1", Port: port, Roles: []string{"worker"}}}, printWarning(&stderr))
	if !gone["old"] {
		t.Errorf("a removed host with an unknown key was reached; stderr: %s", stderr.String())
	}
	if b, err := os.ReadFile(known); err == nil && len(b) > 0 {
		t.Errorf("the removed host's key was recorded:\n%s", b)
	}
}
