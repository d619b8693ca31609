package host_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

func TestSudoRunPasswordless(t *testing.T) {
	f := hosttest.NewFake(t, "node-1")
	f.Expect(`sudo -n -- sh -c 'systemctl restart containerd'`)
	h := host.WithSudo(f, host.SudoOptions{})
	if err := h.Run(context.Background(), host.Cmd{Line: "systemctl restart containerd"}); err != nil {
		t.Fatal(err)
	}
}

func TestSudoPasswordOnStdinOnly(t *testing.T) {
	const pw = "correct horse battery"
	r := host.NewRedactor()
	f := hosttest.NewFake(t, "node-1")
	f.Redactor = r
	var gotStdin string
	f.ExpectFunc("sudo -S ... tee", func(l string) bool { return strings.HasPrefix(l, "sudo -k -S -p '' -- sh -c ") }).
		Do(func(ctx context.Context, cmd host.Cmd) error {
			b, _ := io.ReadAll(cmd.Stdin)
			gotStdin = string(b)
			return nil
		})
	h := host.WithSudo(f, host.SudoOptions{Password: pw, Redactor: r})
	if err := h.Run(context.Background(), host.Cmd{Line: "tee /etc/x", Stdin: strings.NewReader("payload\n")}); err != nil {
		t.Fatal(err)
	}
	if want := pw + "\nclusterctl-sudo-stdin-begins\npayload\n"; gotStdin != want {
		t.Errorf("stdin = %q, want %q", gotStdin, want)
	}
	tr := f.Transcript()
	if strings.Contains(tr, "horse") {
		t.Errorf("password in transcript:\n%s", tr)
	}
	hosttest.AssertGolden(t, "testdata/sudo-password-run.golden", tr)
}

func TestSudoPasswordRequired(t *testing.T) {
	f := hosttest.NewFake(t, "node-1")
	f.Expect(`sudo -n -- sh -c 'cat /etc/shadow'`).Stderr("sudo: a password is required\n").Exit(1)
	err := host.WithSudo(f, host.SudoOptions{}).Run(context.Background(), host.Cmd{Line: "cat /etc/shadow"})
	if !errors.Is(err, host.ErrSudoPasswordNeed) {
		t.Fatalf("got %v, want ErrSudoPasswordNeed", err)
	}
	var ee *host.ExitError
	if !errors.As(err, &ee) || ee.Command != "sudo: cat /etc/shadow" {
		t.Errorf("ExitError = %+v", ee)
	}
	if !strings.Contains(err.Error(), "NOPASSWD") {
		t.Errorf("no hint in %q", err)
	}
}

func TestSudoUploadTranscript(t *testing.T) {
	f := hosttest.NewFake(t, "node-1")
	f.Expect(`umask 077 && mktemp -d "$HOME"/.clusterctl-upload.XXXXXXXX`).Stdout("/home/tester/.clusterctl-upload.AbCd1234\n")
	f.ExpectFunc("sudo install", func(l string) bool {
		return strings.HasPrefix(l, "sudo -n -- sh -c 'install -m 0640 -o root -g kube -- ")
	})
	f.Expect(`rm -rf -- /home/tester/.clusterctl-upload.AbCd1234`)
	h := host.WithSudo(f, host.SudoOptions{})
	err := h.Upload(context.Background(), strings.NewReader("key: value\n"), "/etc/kube/my config.yaml", host.FileOptions{Mode: 0o640, Owner: "root", Group: "kube"})
	if err != nil {
		t.Fatal(err)
	}
	hosttest.AssertGolden(t, "testdata/sudo-upload.golden", f.Transcript())
}

func TestSudoUploadFailureCleansUp(t *testing.T) {
	f := hosttest.NewFake(t, "node-1")
	f.Expect(`umask 077 && mktemp -d /var/tmp/x/.clusterctl-upload.XXXXXXXX`).Stdout("/var/tmp/x/.clusterctl-upload.1\n")
	f.ExpectFunc("sudo install", func(l string) bool { return strings.HasPrefix(l, "sudo -n -- sh -c ") }).
		Stderr("sudo: a password is required\n").Exit(1)
	f.Expect(`rm -rf -- /var/tmp/x/.clusterctl-upload.1`)
	h := host.WithSudo(f, host.SudoOptions{TempDir: "/var/tmp/x"})
	err := h.Upload(context.Background(), strings.NewReader("x"), "/etc/x", host.FileOptions{})
	if !errors.Is(err, host.ErrSudoPasswordNeed) {
		t.Fatalf("got %v", err)
	}
}

// A staging upload that fails midway still removes the staging directory.
func TestSudoUploadStageFailureCleansUp(t *testing.T) {
	f := hosttest.NewFake(t, "node-1")
	f.Expect(`umask 077 && mktemp -d "$HOME"/.clusterctl-upload.XXXXXXXX`).Stdout("/home/u/.clusterctl-upload.2\n")
	f.Expect(`rm -rf -- /home/u/.clusterctl-upload.2`)
	h := host.WithSudo(f, host.SudoOptions{})
	err := h.Upload(context.Background(), iotest.ErrReader(errors.New("disk on fire")), "/etc/x", host.FileOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("got %v", err)
	}
}

func TestSudoReadFileMissing(t *testing.T) {
	f := hosttest.NewFake(t, "node-1")
	f.ExpectFunc("sudo cat", func(l string) bool { return strings.Contains(l, "exec cat -- /etc/nope") }).Exit(66)
	_, err := host.WithSudo(f, host.SudoOptions{}).ReadFile(context.Background(), "/etc/nope")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
}

// TestSudoConformanceLocal runs the whole contract through real sudo on this
// machine, as root (sudo never asks root for a password, which also proves
// that an unread password line never reaches the command's stdin).
func TestSudoConformanceLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Skip("sudo not installed")
	}
	for name, pw := range map[string]string{"nopasswd": "", "password": "unused-password"} {
		t.Run(name, func(t *testing.T) {
			hosttest.RunConformance(t, func(t *testing.T) host.Host {
				r := host.NewRedactor()
				return host.WithSudo(hosttest.NewLocal("local", t.TempDir(), r), host.SudoOptions{Password: pw, Redactor: r, TempDir: t.TempDir()})
			})
		})
	}
}
