package facts

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

// The probe, run on this machine, tells a sysctl key absent from a
// directory that exists (a typo: unknown) from one whose directory is
// absent too (it may come with a module): only the first is unknown.
func TestProbeSysctlUnknownLocal(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/ipv4/ip_forward"); err != nil {
		t.Fatalf("this test reads /proc/sys: %v", err)
	}
	h := hosttest.NewLocal("local", t.TempDir(), nil)
	f, err := Gather(context.Background(), h, Request{Sysctls: []string{"net.ipv4.ip_forward", "net.ipv4.ip_forwardd", "net.nosuchdir.x"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Sysctl["net.ipv4.ip_forward"]; !ok {
		t.Errorf("net.ipv4.ip_forward not read: %v", f.Sysctl)
	}
	if !slices.Equal(f.SysctlUnknown, []string{"net.ipv4.ip_forwardd"}) {
		t.Errorf("SysctlUnknown = %q, want [net.ipv4.ip_forwardd]", f.SysctlUnknown)
	}
}
