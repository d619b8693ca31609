package ssh

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const testSSHConfig = `# line 1
Host h3 db-*
  User tester
  IdentityFile /keys/a
  IdentityFile /keys/b
  ProxyJump b1,ops@b2:2222

Host *.example !secret.example
  User pattern-user
  Port 2200

Host special
  ProxyJump none
  StrictHostKeyChecking accept-new

Host b1
  HostName 10.0.0.1
  User jump1
  UserKnownHostsFile ~/kh-%r

Host b2
  HostName 10.0.0.2
  User ignored-because-proxyjump-says-ops

Host 172.31.60.?
  Port 2022

Host insecure
  StrictHostKeyChecking no

Host devnull
  UserKnownHostsFile /dev/null

Host *
  User everyone
  ProxyJump b1
`

func mustParse(t *testing.T, text string) *OpenSSHConfig {
	t.Helper()
	oc, err := ParseOpenSSHConfig("cfg", text)
	if err != nil {
		t.Fatal(err)
	}
	return oc
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, s string
		want   bool
	}{
		{"*", "anything", true},
		{"db-*", "db-1", true},
		{"db-*", "web-1", false},
		{"h?", "h1", true},
		{"h?", "h", false}, // '?' is exactly one character
		{"h?", "h12", false},
		{"*.Example", "a.example", true},
		{"172.31.60.?", "172.31.60.13", false},
		{"172.31.60.??", "172.31.60.13", true},
	} {
		if got := globMatch(tc.pat, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
}

func TestResolvePrecedence(t *testing.T) {
	oc := mustParse(t, testSSHConfig)
	fallback := Config{User: "root", Port: 22, KnownHostsFile: "/kh", HostKeyPolicy: HostKeyStrict}
	home, _ := os.UserHomeDir()

	t.Run("ssh_config fills what the spec did not write", func(t *testing.T) {
		got, origins, err := oc.Resolve(Config{Name: "h3", Address: "172.31.60.13"}, fallback)
		if err != nil {
			t.Fatal(err)
		}
		if got.User != "tester" || !reflect.DeepEqual(got.IdentityFiles, []string{"/keys/a", "/keys/b"}) {
			t.Errorf("user %q keys %v, want tester and both keys", got.User, got.IdentityFiles)
		}
		if origins[SettingUser] != "ssh_config cfg:3" || origins[SettingIdentityFile] != "ssh_config cfg:4, ssh_config cfg:5" {
			t.Errorf("origins %v", origins)
		}
		if got.Port != 22 || origins[SettingPort] != OriginDefault {
			t.Errorf("port %d from %q, want the default 22", got.Port, origins[SettingPort])
		}
		if got.Address != "172.31.60.13" || origins[SettingHostName] != OriginSpec {
			t.Errorf("address %q from %q, want the spec's", got.Address, origins[SettingHostName])
		}
	})

	t.Run("spec wins over ssh_config", func(t *testing.T) {
		written := Config{Name: "h3", Address: "172.31.60.13", User: "root", Port: 2222, IdentityFiles: []string{"/spec/key"},
			HostKeyPolicy: HostKeyStrict, Bastion: &Config{Name: "bastion x", Address: "10.9.9.9", Port: 22, User: "root"}}
		got, origins, err := oc.Resolve(written, fallback)
		if err != nil {
			t.Fatal(err)
		}
		if got.User != "root" || got.Port != 2222 || !reflect.DeepEqual(got.IdentityFiles, []string{"/spec/key"}) || got.Bastion.Address != "10.9.9.9" {
			t.Errorf("got %+v, want the spec's values", got)
		}
		for _, s := range []string{SettingUser, SettingPort, SettingIdentityFile, SettingProxyJump, SettingHostKeyPolicy} {
			if origins[s] != OriginSpec {
				t.Errorf("%s from %q, want spec", s, origins[s])
			}
		}
	})

	t.Run("wildcard and negation", func(t *testing.T) {
		got, _, err := oc.Resolve(Config{Name: "web", Address: "web.example"}, fallback)
		if err != nil {
			t.Fatal(err)
		}
		if got.User != "pattern-user" || got.Port != 2200 {
			t.Errorf("web.example: user %q port %d, want pattern-user 2200", got.User, got.Port)
		}
		got, _, err = oc.Resolve(Config{Name: "s", Address: "secret.example"}, fallback)
		if err != nil {
			t.Fatal(err)
		}
		if got.User != "everyone" || got.Port != 22 {
			t.Errorf("negated secret.example: user %q port %d, want the Host * user and port 22", got.User, got.Port)
		}
	})

	t.Run("host name and address both match", func(t *testing.T) {
		got, origins, err := oc.Resolve(Config{Name: "db-1", Address: "172.31.60.14"}, fallback)
		if err != nil {
			t.Fatal(err)
		}
		if got.User != "tester" || got.Port != 22 || origins[SettingPort] != OriginDefault {
			t.Errorf("db-1: user %q port %d (%s)", got.User, got.Port, origins[SettingPort])
		}
		got, _, err = oc.Resolve(Config{Name: "x", Address: "172.31.60.7"}, fallback)
		if err != nil {
			t.Fatal(err)
		}
		if got.Port != 2022 {
			t.Errorf("172.31.60.7: port %d, want 2022 from the address pattern", got.Port)
		}
	})

	t.Run("ProxyJump chain resolves each hop", func(t *testing.T) {
		got, origins, err := oc.Resolve(Config{Name: "h3", Address: "172.31.60.13"}, fallback)
		if err != nil {
			t.Fatal(err)
		}
		if origins[SettingProxyJump] != "ssh_config cfg:6" {
			t.Errorf("proxyJump from %q", origins[SettingProxyJump])
		}
		b2 := got.Bastion
		if b2 == nil || b2.Bastion == nil || b2.Bastion.Bastion != nil {
			t.Fatalf("want a chain of two hops, got %+v", b2)
		}
		b1 := b2.Bastion
		if b2.Name != "jump 2/2 b2" || b2.Address != "10.0.0.2" || b2.User != "ops" || b2.Port != 2222 {
			t.Errorf("hop 2: %+v", b2)
		}
		if b1.Name != "jump 1/2 b1" || b1.Address != "10.0.0.1" || b1.User != "jump1" || b1.Port != 22 {
			t.Errorf("hop 1: %+v", b1)
		}
		if b1.KnownHostsFile != filepath.Join(home, "kh-jump1") {
			t.Errorf("hop 1 known_hosts %q, want its own UserKnownHostsFile with %%r expanded", b1.KnownHostsFile)
		}
		// A hop without its own settings uses the target's keys and known_hosts.
		if !reflect.DeepEqual(b2.IdentityFiles, got.IdentityFiles) || b2.KnownHostsFile != "/kh" || b2.HostKeyPolicy != HostKeyStrict {
			t.Errorf("hop 2 keys %v known_hosts %q policy %q, want the target's", b2.IdentityFiles, b2.KnownHostsFile, b2.HostKeyPolicy)
		}
		if k := got.key(); !strings.Contains(k, "via ops@10.0.0.2:2222 via jump1@10.0.0.1:22") {
			t.Errorf("pool key %q does not name the route", k)
		}
	})

	t.Run("ProxyJump none comes first and wins", func(t *testing.T) {
		got, origins, err := oc.Resolve(Config{Name: "special", Address: "10.1.1.1"}, fallback)
		if err != nil {
			t.Fatal(err)
		}
		if got.Bastion != nil || origins[SettingProxyJump] != "ssh_config cfg:13" {
			t.Errorf("bastion %+v from %q, want none from cfg:13", got.Bastion, origins[SettingProxyJump])
		}
		if got.HostKeyPolicy != HostKeyAcceptNew {
			t.Errorf("policy %q, want accept-new", got.HostKeyPolicy)
		}
	})

	t.Run("StrictHostKeyChecking no is refused", func(t *testing.T) {
		_, _, err := oc.Resolve(Config{Name: "insecure", Address: "10.1.1.2"}, fallback)
		if !errors.Is(err, ErrInsecureSSHConfig) || !strings.Contains(err.Error(), "cfg:29") {
			t.Errorf("err = %v, want ErrInsecureSSHConfig naming cfg:29", err)
		}
		// The spec's policy wins, so the file's "no" is never consulted.
		got, _, err := oc.Resolve(Config{Name: "insecure", Address: "10.1.1.2", HostKeyPolicy: HostKeyAcceptNew}, fallback)
		if err != nil || got.HostKeyPolicy != HostKeyAcceptNew {
			t.Errorf("spec policy: %v %q", err, got.HostKeyPolicy)
		}
	})

	t.Run("UserKnownHostsFile /dev/null is refused", func(t *testing.T) {
		_, _, err := oc.Resolve(Config{Name: "devnull", Address: "10.1.1.3"}, fallback)
		if !errors.Is(err, ErrInsecureSSHConfig) {
			t.Errorf("err = %v, want ErrInsecureSSHConfig", err)
		}
	})
}

func TestParseProxyJump(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []jumpHop
		wantErr bool
	}{
		{in: "none"},
		{in: "NONE"},
		{in: "b1", want: []jumpHop{{host: "b1"}}},
		{in: "u@b1:2222, b2", want: []jumpHop{{user: "u", host: "b1", port: 2222}, {host: "b2"}}},
		{in: "ssh://u@b1:22,ssh://b2", want: []jumpHop{{user: "u", host: "b1", port: 22}, {host: "b2"}}},
		{in: "[fd00::1]:2200", want: []jumpHop{{host: "fd00::1", port: 2200}}},
		{in: "[fd00::1]", want: []jumpHop{{host: "fd00::1"}}},
		{in: "b1,,b2", wantErr: true},
		{in: "@b1", wantErr: true},
		{in: "b1:http", wantErr: true},
		{in: "b1:70000", wantErr: true},
	} {
		got, err := parseProxyJump(tc.in)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseProxyJump(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestLoadOpenSSHConfigInclude(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "included")
	if err := os.WriteFile(inc, []byte("Host inc-*\n  User from-include\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "config")
	if err := os.WriteFile(main, []byte("Include "+inc+"\nHost *\n  User fallback\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oc, err := LoadOpenSSHConfig(main)
	if err != nil {
		t.Fatal(err)
	}
	got, origins, err := oc.Resolve(Config{Name: "inc-1", Address: "10.0.0.9"}, Config{User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "from-include" || origins[SettingUser] != "ssh_config "+main+":1 (Include)" {
		t.Errorf("user %q from %q", got.User, origins[SettingUser])
	}
	if _, err := LoadOpenSSHConfig(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}
