package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/state"
)

// The lock lives on the spec's first control plane, never on "the first
// that answers": when it is down, the error names it and --lock-host, and
// no other control plane is locked.
func TestTakeLockOnFirstControlPlaneOnly(t *testing.T) {
	c := testSpec(t, haSpec)
	hosts, f := fakes(t, "h1", "h2", "h3", "h4")
	f["h1"].ExpectFunc("acquire", func(l string) bool { return strings.Contains(l, "lock.json") }).
		Err(fmt.Errorf("h1: dial tcp 172.31.13.11:22: connect: no route to host: %w", host.ErrUnreachable))
	fl := &fleet{hosts: hosts, redactor: host.NewRedactor()}
	var stderr bytes.Buffer
	_, err := takeLock(context.Background(), c, fl, "", "apply", &stderr)
	for _, want := range []string{"lives on h1, the spec's first control plane, which cannot be reached", "no route to host", "--lock-host NAME"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
	// With --lock-host h2, the lock is taken there.
	f["h2"].ExpectFunc("acquire", func(l string) bool { return strings.Contains(l, "ln ") }).Stdout("@@lock-acquired\n")
	l, err := takeLock(context.Background(), c, fl, "h2", "apply", &stderr)
	if err != nil || l.Info.Host != "h2" {
		t.Fatalf("takeLock --lock-host h2 = %+v, %v", l, err)
	}
	f["h2"].ExpectFunc("release", func(l string) bool { return strings.Contains(l, "rm -f") })
	_ = l.Release(context.Background())
}

func TestLockHost(t *testing.T) {
	c := testSpec(t, haSpec)
	for _, tc := range []struct{ flag, want, err string }{
		{"", "h1", ""},
		{"h3", "h3", ""},
		{"h4", "", `--lock-host "h4" is not a control plane of the spec (those are: h1, h2, h3)`},
		{"h9", "", `--lock-host "h9" is not a control plane`},
	} {
		got, err := lockHost(c, tc.flag)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("lockHost(%q) = %q, %v; want %q, %q", tc.flag, got, err, tc.want, tc.err)
		}
	}
}

// A record that does not validate is refused with a warning naming the
// field, and the plan goes on without it: none of its hosts is dialled.
func TestReadPreviousRefusesBadRecord(t *testing.T) {
	c := testSpec(t, oneCPSpec)
	hosts, f := fakes(t, "h1", "h2", "h3")
	rec := testRecord(c, c.Digest)
	rec.Hosts = append(rec.Hosts, state.Host{Name: "victim", Address: "10.9.9.9", Roles: []string{"worker"}, User: "root", Port: 22})
	rec.Hosts[1].User = "root -oProxyCommand=id"
	expectRecord(t, f["h1"], rec)
	var stderr bytes.Buffer
	got := readPrevious(context.Background(), c, &fleet{hosts: hosts, redactor: host.NewRedactor()}, printWarning(&stderr))
	if got != nil {
		t.Fatalf("a bad record is used: %+v", got)
	}
	for _, want := range []string{"warning: could not read the cluster's record", `hosts[1].user: "root -oProxyCommand=id" is not a user name`, "hosts removed from the spec since then are not planned"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q lacks %q", stderr.String(), want)
		}
	}
	if gone := connectRemoved(context.Background(), c, &fleet{hosts: hosts}, got.Removed(c.Names()), printWarning(&stderr)); gone != nil {
		t.Errorf("hosts of a refused record were dialled: %v", gone)
	}
}

func expectRecord(t *testing.T, h *hosttest.Fake, rec *state.Record) {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	h.ExpectFunc("read the record", func(l string) bool { return strings.Contains(l, "get configmap clusterctl-state") }).Stdout("@@clusterctl-record\n" + string(b) + "\n")
}
