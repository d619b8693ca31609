package hostprep_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
)

// TestCheckDecisions: the action each op picks from variations of recorded
// facts, and the errors it refuses with.
func TestCheckDecisions(t *testing.T) {
	sysctl := hostprep.Sysctl{Values: map[string]string{"net.ipv4.ip_forward": "1"}}
	sysctlContent, _ := sysctl.Render()
	modules := hostprep.KernelModules{Modules: []string{"overlay", "ip_vs"}, Required: map[string]string{"ip_vs": `network.kubeProxyMode "ipvs"`}}
	modulesContent, _ := modules.Render()

	tests := []struct {
		name    string
		fixture string
		op      step.Op
		edit    func(f *facts.Facts)
		file    map[string]string // files on the fake host
		rules   []rule            // answers to cheap remote commands
		want    step.Action
		wantErr string
		note    string
	}{
		{name: "sysctl values and file match", fixture: "debian-fresh", op: sysctl,
			edit: func(f *facts.Facts) {
				f.Sysctl["net.ipv4.ip_forward"] = "1"
				f.Files[hostprep.DefaultSysctlFile] = hostprep.Digest(sysctlContent)
			}, want: step.ActionNone},
		{name: "sysctl file edited by hand, values still right", fixture: "debian-fresh", op: sysctl,
			edit: func(f *facts.Facts) {
				f.Sysctl["net.ipv4.ip_forward"] = "1"
				f.Files[hostprep.DefaultSysctlFile] = hostprep.Digest([]byte("edited"))
			}, want: step.ActionUpdate},
		{name: "sysctl value drifted, file right", fixture: "debian-fresh", op: sysctl,
			edit: func(f *facts.Facts) { f.Files[hostprep.DefaultSysctlFile] = hostprep.Digest(sysctlContent) },
			want: step.ActionUpdate},
		{name: "sysctl bad key", fixture: "debian-fresh", op: hostprep.Sysctl{Values: map[string]string{"net.x;reboot": "1"}},
			wantErr: "not a kernel parameter name"},
		{name: "sysctl key unknown to the kernel", fixture: "debian-fresh", op: hostprep.Sysctl{Values: map[string]string{"net.ipv4.ip_forwardd": "1"}},
			edit:    func(f *facts.Facts) { f.SysctlUnknown = []string{"net.ipv4.ip_forwardd"} },
			wantErr: "sysctl net.ipv4.ip_forwardd does not exist on this host (no /proc/sys/net/ipv4/ip_forwardd)"},
		{name: "sysctl key a module adds later", fixture: "debian-fresh",
			op:   hostprep.Sysctl{Values: map[string]string{"net.bridge.bridge-nf-call-iptables": "1", "net.netfilter.nf_conntrack_max": "131072"}},
			edit: func(f *facts.Facts) { f.SysctlUnknown = []string{"net.netfilter.nf_conntrack_max"} },
			want: step.ActionCreate},
		{name: "sysctl value with newline", fixture: "debian-fresh", op: hostprep.Sysctl{Values: map[string]string{"net.x": "1\nkernel.panic = 1"}},
			wantErr: "one non-empty line"},
		{name: "module missing without ignore", fixture: "debian-fresh", op: modules,
			wantErr: `kernel module ip_vs is missing on kernel 6.18.44-fc-v669 (neither loadable nor built in); network.kubeProxyMode "ipvs" needs it: choose network.kubeProxyMode "iptables"`},
		{name: "module missing but ignored", fixture: "debian-fresh",
			op: hostprep.KernelModules{Modules: []string{"overlay", "ip_vs"}, Ignore: []string{"ip_vs"}},
			edit: func(f *facts.Facts) {
				c, _ := hostprep.KernelModules{Modules: []string{"overlay", "ip_vs"}}.Render()
				f.Files[hostprep.DefaultModulesFile] = hostprep.Digest(c)
			},
			want: step.ActionNone, note: "ip_vs is missing (ignored)"},
		{name: "builtin modules are present", fixture: "debian-fresh", op: hostprep.KernelModules{Modules: []string{"overlay", "br_netfilter"}},
			edit: func(f *facts.Facts) {
				c, _ := hostprep.KernelModules{Modules: []string{"overlay", "br_netfilter"}}.Render()
				f.Files[hostprep.DefaultModulesFile] = hostprep.Digest(c)
			}, want: step.ActionNone},
		{name: "module available", fixture: "rhel-fresh", op: hostprep.KernelModules{Modules: []string{"br_netfilter"}},
			edit: func(f *facts.Facts) {
				c, _ := hostprep.KernelModules{Modules: []string{"br_netfilter"}}.Render()
				f.Files[hostprep.DefaultModulesFile] = hostprep.Digest(c)
			}, want: step.ActionUpdate},
		{name: "module name hostile", fixture: "debian-fresh", op: hostprep.KernelModules{Modules: []string{"$(reboot)"}}, wantErr: "kernel module name"},
		{name: "modules file hand-edited", fixture: "debian-fresh", op: hostprep.KernelModules{Modules: []string{"overlay"}},
			edit: func(f *facts.Facts) { f.Files[hostprep.DefaultModulesFile] = hostprep.Digest(modulesContent) }, want: step.ActionUpdate},
		{name: "swap on now", fixture: "debian-fresh", op: hostprep.Swap{},
			edit: func(f *facts.Facts) { f.SwapDevices = []string{"/swapfile"} }, want: step.ActionUpdate},
		{name: "swap in fstab only", fixture: "debian-fresh", op: hostprep.Swap{},
			edit: func(f *facts.Facts) { f.FstabSwap = []string{"/swapfile none swap sw 0 0"} }, want: step.ActionUpdate},
		{name: "no swap", fixture: "debian-fresh", op: hostprep.Swap{}, want: step.ActionNone},
		{name: "selinux absent", fixture: "debian-fresh", op: hostprep.SELinux{Mode: "disabled"}, want: step.ActionNone, note: "SELinux not present"},
		{name: "selinux enforcing", fixture: "rhel-fresh", op: hostprep.SELinux{Mode: "permissive"},
			file: map[string]string{"/etc/selinux/config": "SELINUX=enforcing\n"}, want: step.ActionUpdate},
		{name: "selinux permissive now, file says enforcing", fixture: "rhel-fresh", op: hostprep.SELinux{Mode: "permissive"},
			edit: func(f *facts.Facts) { f.SELinux = "permissive" },
			file: map[string]string{"/etc/selinux/config": "SELINUX=enforcing\n"}, want: step.ActionUpdate},
		{name: "selinux done", fixture: "rhel-fresh", op: hostprep.SELinux{Mode: "permissive"},
			edit: func(f *facts.Facts) { f.SELinux = "permissive" },
			file: map[string]string{"/etc/selinux/config": "SELINUX=permissive\n"}, want: step.ActionNone},
		{name: "selinux disabled pending reboot", fixture: "rhel-fresh", op: hostprep.SELinux{Mode: "disabled"},
			edit: func(f *facts.Facts) { f.SELinux = "permissive" },
			file: map[string]string{"/etc/selinux/config": "SELINUX=disabled\n"}, want: step.ActionNone, note: "next reboot"},
		{name: "selinux bad mode", fixture: "rhel-fresh", op: hostprep.SELinux{Mode: "off"}, wantErr: "want permissive or disabled"},
		{name: "firewalld to disable", fixture: "rhel-fresh", op: hostprep.Firewall{Mode: "disabled"}, want: step.ActionUpdate},
		{name: "firewalld already stopped", fixture: "rhel-fresh", op: hostprep.Firewall{Mode: "disabled"},
			edit: func(f *facts.Facts) { f.FirewallActive = false }, want: step.ActionNone, note: "not running"},
		{name: "firewalld ports open", fixture: "rhel-fresh",
			op:    hostprep.Firewall{Mode: "open-ports", Ports: []hostprep.Port{{Proto: "tcp", Port: "6443"}}},
			rules: []rule{{match: "firewall-cmd --permanent --list-ports", out: "6443/tcp\n"}}, want: step.ActionNone},
		{name: "ufw port missing", fixture: "debian-fresh",
			op:    hostprep.Firewall{Mode: "open-ports", Ports: []hostprep.Port{{Proto: "tcp", Port: "6443"}, {Proto: "tcp", Port: "30000-32767"}}},
			edit:  func(f *facts.Facts) { f.Firewall = "ufw"; f.FirewallActive = true },
			rules: []rule{{match: "ufw status", out: "Status: active\n\nTo                         Action      From\n--                         ------      ----\n6443/tcp                   ALLOW       Anywhere\n"}},
			want:  step.ActionUpdate},
		{name: "ufw ranges use a colon", fixture: "debian-fresh",
			op:    hostprep.Firewall{Mode: "open-ports", Ports: []hostprep.Port{{Proto: "tcp", Port: "30000-32767"}}},
			edit:  func(f *facts.Facts) { f.Firewall = "ufw"; f.FirewallActive = true },
			rules: []rule{{match: "ufw status", out: "30000:32767/tcp            ALLOW       Anywhere\n"}},
			want:  step.ActionNone},
		{name: "firewall port hostile", fixture: "rhel-fresh",
			op: hostprep.Firewall{Mode: "open-ports", Ports: []hostprep.Port{{Proto: "tcp", Port: "1;reboot"}}}, wantErr: "want N or N-M"},
		{name: "no firewall", fixture: "debian-fresh", op: hostprep.Firewall{Mode: "disabled"}, want: step.ActionNone, note: "no firewall present"},
		{name: "hostname ok", fixture: "debian-fresh", op: hostprep.Hostname{Name: "h1"},
			edit: func(f *facts.Facts) { f.Files["/etc/hostname"] = hostprep.Digest([]byte("h1\n")) }, want: step.ActionNone},
		{name: "hostname hostile", fixture: "debian-fresh", op: hostprep.Hostname{Name: "a'; reboot #"}, wantErr: "not a valid host name"},
		{name: "etc hosts hostile address", fixture: "debian-fresh", op: hostprep.EtcHosts{Entries: []hostprep.HostEntry{{Address: "1.2.3.4\n0.0.0.0", Name: "x"}}}, wantErr: "is not an address"},
		{name: "etc hosts stale entry", fixture: "debian-converged",
			op:   hostprep.EtcHosts{Entries: []hostprep.HostEntry{{Address: "172.31.4.11", Name: "node-1"}, {Address: "172.31.4.12", Name: "node-2"}}},
			want: step.ActionUpdate},
		{name: "packages pinned version differs", fixture: "debian-converged", op: hostprep.Packages{Names: []string{"runc=1.1.4"}, Source: "online"}, want: step.ActionUpdate},
		{name: "packages bundle without bundle", fixture: "debian-fresh", op: hostprep.Packages{Names: []string{"runc"}, Source: "bundle"}, wantErr: "no bundle was given"},
		{name: "package name hostile", fixture: "debian-fresh", op: hostprep.Packages{Names: []string{"-o=APT::x"}, Source: "online"}, wantErr: "not a package name"},
		{name: "time server hostile", fixture: "debian-fresh", op: hostprep.TimeSync{Servers: []string{"a\nNTP=evil"}}, wantErr: "want a host name"},
		{name: "chrony running with our servers", fixture: "rhel-fresh", op: hostprep.TimeSync{},
			rules: []rule{{match: "systemctl show", out: "ActiveState=active\nUnitFileState=enabled\nConditionResult=yes\n"}}, want: step.ActionNone},
		{name: "chrony stopped", fixture: "rhel-fresh", op: hostprep.TimeSync{},
			rules: []rule{{match: "systemctl show", out: "ActiveState=inactive\nUnitFileState=disabled\nConditionResult=yes\nConditionTimestampMonotonic=0\n"}}, want: step.ActionUpdate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := loadFacts(t, tc.fixture)
			if tc.edit != nil {
				tc.edit(f)
			}
			h := hosttest.NewFake(t, "node-1")
			for _, r := range tc.rules {
				h.ExpectFunc(r.match, func(l string) bool { return strings.Contains(l, r.match) }).Stdout(r.out).AnyTimes()
			}
			for p, c := range tc.file {
				h.SetFile(p, []byte(c), 0o644)
			}
			ch, err := tc.op.Check(context.Background(), step.Target{Host: h, Facts: f})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.Action != tc.want {
				t.Errorf("action = %s, want %s (diff %+v, note %q)", ch.Action, tc.want, ch.Diff, ch.Note)
			}
			if !strings.Contains(ch.Note, tc.note) {
				t.Errorf("note = %q, want it to contain %q", ch.Note, tc.note)
			}
			if ch.Action != step.ActionNone && len(ch.Diff) == 0 {
				t.Errorf("a change without a diff")
			}
		})
	}
}

func TestMissingModuleIsSentinel(t *testing.T) {
	f := loadFacts(t, "debian-fresh")
	_, err := hostprep.KernelModules{Modules: []string{"ip_vs"}}.Check(context.Background(), step.Target{Host: hosttest.NewFake(t, "n"), Facts: f})
	if !errors.Is(err, hostprep.ErrModuleMissing) {
		t.Fatalf("err = %v, want ErrModuleMissing", err)
	}
}

func TestReplaceHostsBlock(t *testing.T) {
	lines := []string{"10.0.0.1\tnode-1\t# clusterctl", "10.0.0.2\tnode-2\t# clusterctl"}
	block := "# BEGIN clusterctl managed block\n10.0.0.1\tnode-1\t# clusterctl\n10.0.0.2\tnode-2\t# clusterctl\n# END clusterctl managed block\n"
	tests := []struct{ name, in, want string }{
		{"empty", "", block},
		{"appended after user lines", "127.0.0.1 localhost\n", "127.0.0.1 localhost\n" + block},
		{"no final newline", "127.0.0.1 localhost", "127.0.0.1 localhost\n" + block},
		{"replaced in place", "127.0.0.1 localhost\n# BEGIN clusterctl managed block\n10.0.0.9 old # clusterctl\n# END clusterctl managed block\n192.168.1.1 printer\n",
			"127.0.0.1 localhost\n" + block + "192.168.1.1 printer\n"},
		{"stray marked line folded in", "127.0.0.1 localhost\n10.0.0.9 old\t# clusterctl\n::1 localhost\n", "127.0.0.1 localhost\n" + block + "::1 localhost\n"},
		{"idempotent", "127.0.0.1 localhost\n" + block, "127.0.0.1 localhost\n" + block},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hostprep.ReplaceHostsBlock(tc.in, lines); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestCommentSwap(t *testing.T) {
	in := "# /etc/fstab\nUUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n  /dev/sdb2\tnone\tswap\tsw\t0\t0\n#/old none swap sw 0 0\n#clusterctl# /swap2 none swap sw 0 0\n"
	want := "# /etc/fstab\nUUID=1 / ext4 defaults 0 1\n#clusterctl# /swapfile none swap sw 0 0\n#clusterctl#   /dev/sdb2\tnone\tswap\tsw\t0\t0\n#/old none swap sw 0 0\n#clusterctl# /swap2 none swap sw 0 0\n"
	got := hostprep.CommentSwap(in)
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if again := hostprep.CommentSwap(got); again != got {
		t.Errorf("not idempotent:\n%s", again)
	}
}

func TestSetSELinuxMode(t *testing.T) {
	for in, want := range map[string]string{
		"SELINUX=enforcing\nSELINUXTYPE=targeted\n":  "SELINUX=permissive\nSELINUXTYPE=targeted\n",
		"# SELINUX=enforcing\nSELINUX = enforcing\n": "# SELINUX=enforcing\nSELINUX=permissive\n",
		"SELINUXTYPE=targeted":                       "SELINUXTYPE=targeted\nSELINUX=permissive\n",
		"":                                           "SELINUX=permissive\n",
	} {
		if got := hostprep.SetSELinuxMode(in, "permissive"); got != want {
			t.Errorf("SetSELinuxMode(%q) = %q, want %q", in, got, want)
		}
	}
}
