package facts

import (
	"strings"
	"testing"
)

const sample = `os.id=rocky
os.version=9.4
os.like=rhel centos fedora
arch=x86_64
kernel=5.14.0-427.el9.x86_64
init=systemd
cgroup=2
hostname=cp1
swap.device=/dev/dm-1
fstab.swap=/dev/mapper/rl-swap none swap defaults 0 0
selinux=enforcing
sysctl.net.ipv4.ip_forward=0
sysctl.net.bridge.bridge-nf-call-iptables!=nodir
sysctl.net.ipv4.ip_forwardd!=missing
module.overlay=loaded
module.br_netfilter=available
module.ip_vs=missing
pkgmgr=dnf
pkg.conntrack-tools=1.4.7-2.el9
pkg.socat=
firewall=firewalld
firewall.active=yes
timesync=chrony
timesync.active=yes
file./etc/sysctl.d/99-kubernetes.conf=missing
service.containerd=enabled/active
disk./var=20480
etchosts=127.0.0.1 localhost
end=ok
`

func TestParseRHEL(t *testing.T) {
	f, err := Parse("cp1", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"family", f.OSFamily, "rhel"},
		{"selinux", f.SELinux, "enforcing"},
		{"ip_forward", f.Sysctl["net.ipv4.ip_forward"], "0"},
		{"br_netfilter", f.Modules["br_netfilter"], "available"},
		{"ip_vs", f.Modules["ip_vs"], "missing"},
		{"conntrack", f.Packages["conntrack-tools"], "1.4.7-2.el9"},
		{"firewall", f.Firewall, "firewalld"},
		{"file", f.Files["/etc/sysctl.d/99-kubernetes.conf"], "missing"},
		{"service", f.Services["containerd"], "enabled/active"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if _, ok := f.Sysctl["net.bridge.bridge-nf-call-iptables"]; ok {
		t.Error("a sysctl missing on the kernel must be absent from the map")
	}
	// Only a key missing from a directory that exists is unknown: a
	// missing directory may come with a module (br_netfilter).
	if strings.Join(f.SysctlUnknown, ",") != "net.ipv4.ip_forwardd" {
		t.Errorf("SysctlUnknown = %q, want [net.ipv4.ip_forwardd]", f.SysctlUnknown)
	}
	if v, ok := f.Packages["socat"]; !ok || v != "" {
		t.Errorf("an absent package must map to \"\", got %q, %v", v, ok)
	}
	if len(f.SwapDevices) != 1 || len(f.FstabSwap) != 1 || f.CgroupV != 2 || !f.FirewallActive || f.DiskFreeMB["/var"] != 20480 {
		t.Errorf("scalars misparsed: %+v", f)
	}
}

// Anything but a complete, well-formed answer is an error: garbage, a
// truncated answer (connection lost), data after the end, unknown facts.
func TestParseRejects(t *testing.T) {
	cases := map[string]struct{ out, want string }{
		"empty":          {"", "ended early after 0 lines"},
		"truncated":      {strings.Split(sample, "selinux=")[0], "ended early"},
		"garbage":        {"\x00\x01binary junk\n", "not key=value"},
		"html":           {"<html><body>login</body></html>\n", "not key=value"},
		"after end":      {sample + "kernel=x\n", "data after the end marker"},
		"unknown fact":   {"os.id=debian\nfrobs=3\nend=ok\n", `unknown fact "frobs"`},
		"bad cgroup":     {"os.id=debian\ncgroup=7\nend=ok\n", `cgroup version "7"`},
		"bad module":     {"os.id=debian\nmodule.x=maybe\nend=ok\n", `module state "maybe"`},
		"bad disk":       {"os.id=debian\ndisk./=lots\nend=ok\n", `free disk "lots"`},
		"no os":          {"kernel=6.1\nend=ok\n", "lacks the OS id"},
		"bad end marker": {"os.id=debian\nend=nope\n", `end marker "nope"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("h9", []byte(c.out))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestDigestIgnoresFreeDisk(t *testing.T) {
	a, _ := Parse("h", []byte(sample))
	b, _ := Parse("h", []byte(strings.Replace(sample, "disk./var=20480", "disk./var=10", 1)))
	c, _ := Parse("h", []byte(strings.Replace(sample, "sysctl.net.ipv4.ip_forward=0", "sysctl.net.ipv4.ip_forward=1", 1)))
	if a.Digest() != b.Digest() {
		t.Error("free disk space changed the digest")
	}
	if a.Digest() == c.Digest() {
		t.Error("a sysctl change did not change the digest")
	}
}

func TestRequestMerge(t *testing.T) {
	r := Request{Sysctls: []string{"b", "a"}}.Merge(Request{Sysctls: []string{"a", "c"}, Files: []string{"/f"}})
	if strings.Join(r.Sysctls, ",") != "a,b,c" || len(r.Files) != 1 {
		t.Fatalf("merge = %+v", r)
	}
}
