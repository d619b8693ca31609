package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/state"
)

// sshListener answers SSH handshakes on 127.0.0.1 with a fresh host key
// and counts the connections it was offered.
func sshListener(t *testing.T) (port int, dials *int) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &gossh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	n := 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n++
			go func() {
				defer c.Close()
				_, chans, reqs, err := gossh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				go gossh.DiscardRequests(reqs)
				for ch := range chans {
					ch.Reject(gossh.Prohibited, "no sessions here")
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, &n
}

// clientKey writes an identity file for the client (the listener takes
// any client).
func clientKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// A host only the record lists is dialled with strict host key checking,
// even under hostKeyPolicy "accept-new": its key is never recorded.
func TestConnectRemovedIsStrict(t *testing.T) {
	port, _ := sshListener(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	c := testSpec(t, oneCPSpec+`
	ssh: {hostKeyPolicy: "accept-new", knownHostsFile: "`+known+`", identityFile: "`+clientKey(t)+`", connectTimeout: "3s"}`)
	red := host.NewRedactor()
	f, err := connect(c, red)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stderr bytes.Buffer
	gone := connectRemoved(context.Background(), c, f, []state.Host{{Name: "old", Address: "127.0.0.1", Port: port, Roles: []string{"worker"}}}, printWarning(&stderr))
	if !gone["old"] {
		t.Errorf("a host with an unknown key was reached; stderr: %s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "is not in "+known) {
		t.Errorf("stderr %q does not say the key is unknown", stderr.String())
	}
	if b, err := os.ReadFile(known); err == nil && len(b) > 0 {
		t.Errorf("the removed host's key was recorded:\n%s", b)
	}
	if _, ok := f.hosts["old"]; ok {
		t.Error("the unreachable removed host joined the fleet")
	}
}

// Under the same accept-new spec, a host of the spec does learn its key:
// the listener and the policy work, so the test above can fail.
func TestConnectSpecHostAcceptsNew(t *testing.T) {
	port, _ := sshListener(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	c := testSpec(t, `
	name: "e2e"
	kubernetes: version: "1.37.2"
	hosts: h1: {address: "127.0.0.1", roles: ["control-plane"], ssh: port: `+strconv.Itoa(port)+`}
	ssh: {hostKeyPolicy: "accept-new", knownHostsFile: "`+known+`", identityFile: "`+clientKey(t)+`", connectTimeout: "3s"}`)
	f, err := connect(c, host.NewRedactor())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_ = f.hosts["h1"].Run(context.Background(), host.Cmd{Line: "true"}) // sessions are refused; the handshake is what counts
	if b, _ := os.ReadFile(known); !bytes.Contains(b, []byte("ssh-ed25519")) {
		t.Fatalf("accept-new recorded nothing: %q", b)
	}
}
