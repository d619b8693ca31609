package hostprep_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var _ = flag.Bool("update", false, "rewrite golden files")

// rule answers every command containing match (first rule wins).
type rule struct {
	match string
	out   string
	code  int
}

// osHost is what a fresh host of each family answers; the golden
// transcripts pin the exact commands, so the rules may be loose.
var osRules = map[string][]rule{
	"debian": {
		{match: "grep '^CapBnd:' /proc/1/status", out: "CapBnd:\t000001fffeffffff\n"},
		{match: "systemctl show", out: "LoadState=loaded\nActiveState=inactive\nUnitFileState=enabled\nConditionResult=no\nConditionTimestampMonotonic=4512345\nVirt=container-other\n"},
		{match: "dpkg-query -W", out: "ethtool ii  1:6.1-1\n"},
		{match: "command -v apt-get", out: "apt\n"},
	},
	"rhel": {
		{match: "grep '^CapBnd:' /proc/1/status", out: "CapBnd:\t000001ffffffffff\n"},
		{match: "systemctl show", out: "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\nConditionResult=yes\nConditionTimestampMonotonic=4512345\nVirt=none\n"},
		{match: "firewall-cmd --permanent --list-ports", out: "22/tcp 6443/tcp\n"},
		{match: "rpm -q", out: "package conntrack-tools is not installed\n"},
		{match: "command -v containerd", code: 1},
		{match: "command -v apt-get", out: "dnf\n"},
	},
}

// newHost is a fake of a fresh host of family osName, with its files.
func newHost(t *testing.T, osName string) *hosttest.Fake {
	f := hosttest.NewFake(t, "node-1")
	for _, r := range osRules[osName] {
		f.ExpectFunc(r.match, func(l string) bool { return strings.Contains(l, r.match) }).Stdout(r.out).Exit(r.code).AnyTimes()
	}
	// The sha256 check after an upload (hosts without UploadVerified):
	// answer with the digest of what was uploaded.
	f.ExpectFunc("sha256sum -- FILE", func(l string) bool { return strings.HasPrefix(l, "sha256sum -- ") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			p := strings.TrimPrefix(cmd.Line, "sha256sum -- ")
			file, _ := f.File(p)
			sum := sha256.Sum256(file.Content)
			fmt.Fprintf(cmd.Stdout, "%s  %s\n", hex.EncodeToString(sum[:]), p)
			return nil
		}).AnyTimes()
	// StatFile: every managed file is missing on a fresh host.
	f.ExpectFunc("stat FILE", func(l string) bool { return strings.Contains(l, "sha256sum < ") }).Stdout("missing\n").AnyTimes()
	f.ExpectFunc("any other command", func(string) bool { return true }).AnyTimes()
	switch osName {
	case "debian":
		f.SetFile("/etc/hosts", []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n172.31.4.11\th1\n"), 0o644)
		f.SetFile("/etc/fstab", []byte("# /etc/fstab: static file system information.\nUUID=1234 / ext4 errors=remount-ro 0 1\n/swapfile none swap sw 0 0\n"), 0o644)
	case "rhel":
		f.SetFile("/etc/hosts", []byte("127.0.0.1   localhost localhost.localdomain\n::1         localhost localhost.localdomain\n"), 0o644)
		f.SetFile("/etc/fstab", []byte("/dev/mapper/rl-root     /                       xfs     defaults        0 0\n/dev/mapper/rl-swap     none                    swap    defaults        0 0\n"), 0o644)
		f.SetFile("/etc/selinux/config", []byte("# This file controls the state of SELinux on the system.\nSELINUX=enforcing\nSELINUXTYPE=targeted\n"), 0o644)
		f.SetFile("/etc/chrony.conf", []byte("pool 2.rocky.pool.ntp.org iburst\ndriftfile /var/lib/chrony/drift\n"), 0o644)
	}
	return f
}

// testBundle is a bundle of small fake packages for family osName.
func testBundle(t *testing.T, osName string) *bundle.Bundle {
	t.Helper()
	type pkg struct{ name, version string }
	var pkgs []pkg
	kind, ext := bundle.KindDeb, ".deb"
	if osName == "rhel" {
		kind, ext = bundle.KindRPM, ".rpm"
		pkgs = []pkg{{"containerd", "1.7.27-3.1.el9"}, {"runc", "1.2.5-1.el9"}, {"containernetworking-plugins", "1.5.1-1.el9"},
			{"conntrack", "1.4.7-2.el9"}, {"socat", "1.7.4.1-5.el9"}, {"ethtool", "6.2-1.el9"}, {"ipset", "7.11-8.el9"}, {"chrony", "4.5-1.el9"}}
	} else {
		pkgs = []pkg{{"containerd", "1.6.20~ds1-1+deb12u3"}, {"runc", "1.1.5+ds1-1+deb12u1"}, {"containernetworking-plugins", "1.1.1+ds1-3+b5"},
			{"conntrack", "1:1.4.7-1+b2"}, {"socat", "1.7.4.4-2"}, {"ethtool", "1:6.1-1"}, {"ipset", "7.17-1"}, {"libipset13", "7.17-1"},
			{"systemd-timesyncd", "252.39-1~deb12u2"}}
	}
	var files []steptest.File
	for _, p := range pkgs {
		files = append(files, steptest.File{
			File:    bundle.File{Path: kind + "s/" + p.name + ext, Kind: kind, Package: p.name, Version: p.version},
			Content: []byte("fake package " + p.name + " " + p.version + "\n"),
		})
	}
	return steptest.WriteBundle(t, nil, files...)
}

func kindFile(op step.Op) string { return strings.ReplaceAll(op.Kind(), "/", "-") }

// TestCheckGolden checks every op against recorded facts (Debian: recorded
// on a test host; RHEL: hand-written) and pins the plans.
func TestCheckGolden(t *testing.T) {
	for _, tc := range []struct{ fixture, os, source string }{
		{"debian-fresh", "debian", "bundle"},
		{"debian-fresh", "debian", "online"},
		{"rhel-fresh", "rhel", "online"},
		{"rhel-fresh", "rhel", "bundle"},
		{"debian-converged", "debian", "bundle"},
	} {
		t.Run(tc.fixture+"-"+tc.source, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join("testdata", tc.fixture+".probe")); err != nil {
				t.Skipf("no recorded facts (the integration test records them with CLUSTERCTL_RECORD=1): %v", err)
			}
			f := loadFacts(t, tc.fixture)
			h := newHost(t, tc.os)
			if tc.fixture == "debian-converged" {
				h.SetFile("/etc/hosts", nil, 0o644)
			}
			var b *bundle.Bundle
			if tc.source == "bundle" {
				b = testBundle(t, tc.os)
			}
			var out strings.Builder
			for _, op := range nodeOps("172.31.4", "node-1", tc.source) {
				ch, err := op.Check(context.Background(), step.Target{Host: h, Facts: f, Bundle: b})
				out.WriteString(steptest.Report(op, ch, err))
			}
			hosttest.AssertGolden(t, filepath.Join("testdata", "check-"+tc.fixture+"-"+tc.source+".golden"), out.String())
		})
	}
}

// TestApplyTranscripts pins the exact commands and files each op sends to a
// fresh Debian or RHEL-family host.
func TestApplyTranscripts(t *testing.T) {
	for _, tc := range []struct{ fixture, os, source string }{
		{"debian-fresh", "debian", "bundle"},
		{"debian-fresh", "debian", "online"},
		{"rhel-fresh", "rhel", "online"},
		{"rhel-fresh", "rhel", "bundle"},
	} {
		for _, op := range nodeOps("172.31.4", "node-1", tc.source) {
			name := tc.os + "-" + tc.source + "-" + kindFile(op)
			t.Run(name, func(t *testing.T) {
				f := loadFacts(t, tc.fixture)
				h := newHost(t, tc.os)
				var b *bundle.Bundle
				if tc.source == "bundle" {
					b = testBundle(t, tc.os)
				}
				err := op.Apply(context.Background(), step.Target{Host: h, Facts: f, Bundle: b})
				got := h.Transcript()
				if err != nil {
					got += "error: " + err.Error() + "\n"
				}
				hosttest.AssertGolden(t, filepath.Join("testdata", "apply-"+name+".golden"), got)
			})
		}
	}
}

// TestCheckOffline: without facts every op plans to create, showing what it
// would set.
func TestCheckOffline(t *testing.T) {
	for _, op := range nodeOps("172.31.4", "node-1", "bundle") {
		h := hosttest.NewFake(t, "node-1") // strict: offline Check sends nothing
		ch, err := op.Check(context.Background(), step.Target{Host: h})
		if err != nil {
			t.Errorf("%s: %v", op.Kind(), err)
			continue
		}
		if ch.Action != step.ActionCreate || len(ch.Diff) == 0 {
			t.Errorf("%s: offline check = %+v, want create with a diff", op.Kind(), ch)
		}
	}
}

func TestNeedsCoverChecks(t *testing.T) {
	r := needs(nodeOps("172.31.4", "node-1", "bundle"))
	want := facts.Request{
		Sysctls:  []string{"net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-iptables", "net.ipv4.ip_forward"},
		Modules:  []string{"br_netfilter", "ip_vs", "overlay"},
		Packages: []string{"chrony", "conntrack", "containerd", "containerd.io", "containernetworking-plugins", "ethtool", "ipset", "runc", "socat", "systemd-timesyncd"},
	}
	if strings.Join(r.Sysctls, " ") != strings.Join(want.Sysctls, " ") || strings.Join(r.Modules, " ") != strings.Join(want.Modules, " ") ||
		strings.Join(r.Packages, " ") != strings.Join(want.Packages, " ") {
		t.Errorf("needs = %+v\nwant %+v", r, want)
	}
	if len(r.Files) != 13 {
		t.Errorf("needs %d files, want 13: %v", len(r.Files), r.Files)
	}
}
