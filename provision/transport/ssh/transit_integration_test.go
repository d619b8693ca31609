//go:build integration

package ssh_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
	"github.com/clusterctl/clusterctl/provision/host"
)

// TestUploadNeverOpenableByOthers races uploads the way another user on the
// host would: testdata/openwatch, as uid 65534, opens every file that
// appears in the target directory or the sudo user's home the moment
// inotify reports it, and later reads what those fds hold. No secret may be
// in them. (One test host, net 172.31.45, prefix gu1.)
func TestUploadNeverOpenableByOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("test hosts need root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := testhosts.Start(ctx, testhosts.Options{Net: "172.31.45", Count: 1, Prefix: "gu1"})
	if err != nil {
		t.Fatalf("start test hosts: %v", err)
	}
	defer c.Close()

	bin := filepath.Join(t.TempDir(), "openwatch")
	build := exec.Command("go", "build", "-o", bin, "./testdata/openwatch")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build openwatch: %v\n%s", err, b)
	}
	root := dial(t, hostConfig(c, 1, "root"))
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := root.Upload(ctx, f, "/usr/local/bin/openwatch", host.FileOptions{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	// Both world-searchable, as /etc and a default Debian home are.
	out(t, root, "mkdir -p -m 755 /srv/pub && chmod 755 /home/tester")
	testerCfg := hostConfig(c, 1, "tester")
	sudo := host.WithSudo(dial(t, testerCfg), host.SudoOptions{Redactor: testerCfg.Redactor})

	var rnd [16]byte
	rand.Read(rnd[:])
	marker := fmt.Sprintf("secret-%x", rnd)
	stdin, stdinW := io.Pipe()
	stdoutR, stdout := io.Pipe()
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- root.Run(ctx, host.Cmd{Line: host.Join("/usr/local/bin/openwatch", marker, "/srv/pub", "/home/tester"), Stdin: stdin, Stdout: stdout})
		stdout.Close()
	}()
	lines := bufio.NewScanner(stdoutR)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("openwatch did not start: %q", lines.Text())
	}
	var report bytes.Buffer
	reportDone := make(chan struct{})
	go func() {
		for lines.Scan() {
			report.WriteString(lines.Text() + "\n")
		}
		close(reportDone)
	}()

	secret := append([]byte(marker), make([]byte, 256<<10)...)
	for i := range 5 {
		if err := root.Upload(ctx, bytes.NewReader(secret), fmt.Sprintf("/srv/pub/root-%d", i), host.FileOptions{Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
		if err := sudo.Upload(ctx, bytes.NewReader(secret), fmt.Sprintf("/srv/pub/sudo-%d", i), host.FileOptions{Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
	}
	// A public file: proves the watcher sees and opens what it may.
	if err := root.Upload(ctx, strings.NewReader("public\n"), "/srv/pub/control", host.FileOptions{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stdinW.Close()
	if err := <-watchDone; err != nil {
		t.Fatalf("openwatch: %v", err)
	}
	<-reportDone
	t.Logf("openwatch (uid 65534):\n%s", report.String())
	if !strings.Contains(report.String(), "opened /srv/pub/control bytes=7") {
		t.Errorf("the watcher never opened the public control file: the test proves nothing")
	}
	for _, l := range strings.Split(report.String(), "\n") {
		if strings.HasSuffix(l, "secret=true") {
			t.Errorf("another user read the secret in transit: %s", l)
		}
	}
}
