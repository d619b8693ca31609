//go:build integration

package ssh_test

import (
	"context"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	sshx "github.com/clusterctl/clusterctl/provision/transport/ssh"
)

func localConfig(s *localSSHD, kh string) sshx.Config {
	return sshx.Config{Name: "local", Address: "127.0.0.1", Port: s.Port, User: "root",
		IdentityFiles: []string{s.KeyFile}, KnownHostsFile: kh, Redactor: host.NewRedactor()}
}

func TestConformanceLocalSSHD(t *testing.T) {
	s := startSSHD(t, "")
	kh := writeKnownHosts(t, s.knownHostsLine())
	c, err := sshx.Dial(context.Background(), localConfig(s, kh))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hosttest.RunConformance(t, func(t *testing.T) host.Host { return c })
}
