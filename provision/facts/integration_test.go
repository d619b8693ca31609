//go:build integration

package facts_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/transport/ssh"
)

func startHosts(tb testing.TB, n int) (*testhosts.Cluster, *ssh.Pool, []host.Host) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := testhosts.Start(ctx, testhosts.Options{Net: "172.31.5", Count: n, Prefix: "ct5", Logf: tb.Logf})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	pool := ssh.NewPool()
	tb.Cleanup(func() { pool.Close() })
	var hs []host.Host
	for _, h := range c.Hosts {
		hs = append(hs, pool.Host(ssh.Config{
			Name: h.Name, Address: h.Addr, User: "root",
			IdentityFiles: []string{c.KeyFile}, KnownHostsFile: c.KnownHosts,
			DialTimeout: 3 * time.Second, KeepAlive: time.Second,
		}))
	}
	return c, pool, hs
}

var req = facts.Request{
	Sysctls:  []string{"net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "no.such.key"},
	Modules:  []string{"overlay", "br_netfilter", "ip_vs"},
	Packages: []string{"iptables", "containerd"},
	Files:    []string{"/etc/hostname", "/etc/nonexistent"},
}

// Facts from real hosts match what independent commands (run through
// nsenter, not SSH) say about them.
func TestGatherMatchesHost(t *testing.T) {
	c, _, hs := startHosts(t, 3)
	ctx := context.Background()
	if _, err := c.Exec(ctx, 2, "sysctl -qw net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		f, err := facts.Gather(ctx, h, req)
		if err != nil {
			t.Fatal(err)
		}
		idx := i + 1
		sh := func(script string) string {
			out, err := c.Exec(ctx, idx, script)
			if err != nil {
				t.Fatalf("exec %q: %v", script, err)
			}
			return strings.TrimSpace(out)
		}
		want := map[string]string{
			"hostname":   sh("cat /proc/sys/kernel/hostname"),
			"kernel":     sh("uname -r"),
			"os":         sh(". /etc/os-release; echo $ID"),
			"ip_forward": sh("cat /proc/sys/net/ipv4/ip_forward"),
			"iptables":   sh("dpkg-query -W -f='${Version}' iptables"),
			"hostfile":   sh("sha256sum /etc/hostname | cut -d' ' -f1"),
		}
		got := map[string]string{
			"hostname": f.Hostname, "kernel": f.Kernel, "os": f.OSID,
			"ip_forward": f.Sysctl["net.ipv4.ip_forward"], "iptables": f.Packages["iptables"],
			"hostfile": f.Files["/etc/hostname"],
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: %s = %q, the host says %q", h.Name(), k, got[k], w)
			}
		}
		if f.Init != "systemd" || f.SELinux != "absent" || f.OSFamily != "debian" || f.PackageManager != "apt" {
			t.Errorf("%s: init/selinux/family/pkgmgr = %s/%s/%s/%s", h.Name(), f.Init, f.SELinux, f.OSFamily, f.PackageManager)
		}
		// This kernel has overlay and br_netfilter built in and no ip_vs.
		if f.Modules["overlay"] != "builtin" || f.Modules["br_netfilter"] != "builtin" || f.Modules["ip_vs"] != "missing" {
			t.Errorf("%s: modules %v", h.Name(), f.Modules)
		}
		if f.Packages["containerd"] != "" || f.Files["/etc/nonexistent"] != "missing" {
			t.Errorf("%s: absent package/file reported as %q/%q", h.Name(), f.Packages["containerd"], f.Files["/etc/nonexistent"])
		}
		if _, ok := f.Sysctl["no.such.key"]; ok {
			t.Errorf("%s: a missing sysctl key was reported", h.Name())
		}
	}
}

// A host that drops off the network fails with its name within the dial
// timeout while the others answer.
func TestGatherDisconnectedHost(t *testing.T) {
	c, _, hs := startHosts(t, 3)
	if err := c.Disconnect(3); err != nil {
		t.Fatal(err)
	}
	defer c.Reconnect(3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(hs))
	start := time.Now()
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = facts.Gather(ctx, h, req)
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("reachable hosts failed: %v / %v", errs[0], errs[1])
	}
	if errs[2] == nil || !errors.Is(errs[2], host.ErrUnreachable) || !strings.Contains(errs[2].Error(), "h3") {
		t.Fatalf("disconnected host: err = %v, want host.ErrUnreachable naming h3", errs[2])
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the failure took %s", d)
	}
	t.Logf("disconnected host reported after %s: %v", time.Since(start).Round(time.Millisecond), errs[2])
}

// BenchmarkGather8Hosts: facts from 8 real hosts, one round trip each, in
// parallel, on open connections. Compare ns/op with BenchmarkGather1Host:
// the ratio shows how well the probes overlap.
func BenchmarkGather8Hosts(b *testing.B) { benchGather(b, 8, 8) }
func BenchmarkGather1Host(b *testing.B)  { benchGather(b, 8, 1) }

func benchGather(b *testing.B, boot, use int) {
	_, _, hs := startHosts(b, boot)
	ctx := context.Background()
	hs = hs[:use]
	for _, h := range hs { // dial outside the timed loop
		if _, err := facts.Gather(ctx, h, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		errs := make([]error, len(hs))
		for i, h := range hs {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = facts.Gather(ctx, h, req) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(use), "hosts")
}
