package hostprep_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/hostprep"
)

// A host's /etc/hosts with the user's lines around a block clusterctl wrote.
const hostsWithBlock = "127.0.0.1\tlocalhost\n" +
	"# BEGIN clusterctl managed block\n" +
	"172.31.4.11\tnode-1\t# clusterctl\n" +
	"172.31.4.12\tnode-2\t# clusterctl\n" +
	"# END clusterctl managed block\n" +
	"10.9.9.9\tmine\n"

func manyEntries(n int) []hostprep.HostEntry {
	e := make([]hostprep.HostEntry, n)
	for i := range e {
		e[i] = hostprep.HostEntry{Address: fmt.Sprintf("10.1.%d.%d", i/256, i%256), Name: fmt.Sprintf("node-%d", i)}
	}
	return e
}

// blockOf is the managed block of an /etc/hosts, markers included, as
// `sed -n '/BEGIN clusterctl/,/END clusterctl/p' /etc/hosts` prints it.
func blockOf(content string) string {
	var b strings.Builder
	in := false
	for _, l := range strings.SplitAfter(content, "\n") {
		if strings.HasPrefix(l, "# BEGIN clusterctl") {
			in = true
		}
		if in {
			b.WriteString(l)
		}
		if strings.HasPrefix(l, "# END clusterctl") {
			in = false
		}
	}
	return b.String()
}

// Mode "none": the step keeps no block and removes the one written before;
// a second run changes nothing.
func TestEtcHostsNoneRemovesBlock(t *testing.T) {
	op := hostprep.EtcHosts{}
	h := hosttest.NewFake(t, "node-1")
	h.SetFile("/etc/hosts", []byte(hostsWithBlock), 0o644)

	f := loadFacts(t, "debian-fresh")
	f.EtcHosts = []string{"127.0.0.1\tlocalhost", "172.31.4.11\tnode-1\t# clusterctl", "172.31.4.12\tnode-2\t# clusterctl", "10.9.9.9\tmine"}
	ch, err := op.Check(context.Background(), step.Target{Host: h, Facts: f})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Action != step.ActionUpdate || len(ch.Diff) != 2 || ch.Diff[0].To != "(removed)" {
		t.Fatalf("check with a block = %+v, want an update removing node-1 and node-2", ch)
	}

	if err := op.Apply(context.Background(), step.Target{Host: h, Facts: f}); err != nil {
		t.Fatal(err)
	}
	hosttest.AssertGolden(t, filepath.Join("testdata", "apply-etc-hosts-none.golden"), h.Transcript())

	// Converged: the probe sees no managed line, and Apply uploads nothing.
	f.EtcHosts = []string{"127.0.0.1\tlocalhost", "10.9.9.9\tmine"}
	if ch, err := op.Check(context.Background(), step.Target{Host: h, Facts: f}); err != nil || ch.Action != step.ActionNone {
		t.Fatalf("check after removal = %+v, %v; want none", ch, err)
	}
	before := h.Transcript()
	if err := op.Apply(context.Background(), step.Target{Host: h, Facts: f}); err != nil {
		t.Fatal(err)
	}
	if again := strings.TrimPrefix(h.Transcript(), before); strings.Contains(again, "upload") {
		t.Errorf("second apply uploaded again:\n%s", again)
	}
}

// Offline, every host is blank: with no block wanted there is nothing to
// remove, so the plan shows no change; with a block it creates it.
func TestEtcHostsOffline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []hostprep.HostEntry
		want    step.Action
	}{
		{"none", nil, step.ActionNone},
		{"three hosts", manyEntries(3), step.ActionCreate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := step.Op(hostprep.EtcHosts{Entries: tc.entries})
			oc, ok := op.(step.OfflineChecker)
			if !ok {
				t.Fatal("EtcHosts does not say what an offline plan shows")
			}
			if ch := oc.CheckOffline(); ch.Action != tc.want || (tc.want != step.ActionNone && len(ch.Diff) == 0) {
				t.Errorf("offline = %+v, want %s", ch, tc.want)
			}
		})
	}
}

// A long block shows in plans as its size and sha256 (O(1) per host, so a
// plan stays linear in the cluster); the sha256 is that of the block the
// step writes. Short blocks stay listed line by line.
func TestEtcHostsLongBlockDigest(t *testing.T) {
	op := hostprep.EtcHosts{Entries: manyEntries(1000)}
	h := hosttest.NewFake(t, "node-1")
	h.SetFile("/etc/hosts", []byte("127.0.0.1\tlocalhost\n"), 0o644)
	if err := op.Apply(context.Background(), step.Target{Host: h}); err != nil {
		t.Fatal(err)
	}
	written, err := h.ReadFile(context.Background(), "/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(blockOf(string(written))))
	want := hex.EncodeToString(sum[:])

	js, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	if len(js) > 300 || !strings.Contains(string(js), `"count":1000`) || !strings.Contains(string(js), `"sha256":"`+want+`"`) {
		t.Errorf("params of a 1000-host block (%d bytes) = %.300s; want count 1000 and sha256 %s", len(js), js, want)
	}
	d := op.Describe()
	if len(d) != 1 || !strings.Contains(d[0].To, "1000 hosts") || !strings.Contains(d[0].To, "sha256:"+want[:12]) {
		t.Errorf("describe = %+v, want one line with the count and sha256:%s", d, want[:12])
	}

	// An online check of a host without the block: the diff is a summary,
	// not a line per host.
	f := loadFacts(t, "debian-fresh")
	ch, err := op.Check(context.Background(), step.Target{Host: h, Facts: f})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Action != step.ActionCreate || len(ch.Diff) > 8 {
		t.Errorf("check = %s with %d diff lines, want create with a short diff", ch.Action, len(ch.Diff))
	}

	// Switching a large cluster to "none": one line too.
	f.EtcHosts = nil
	for _, e := range op.Entries {
		f.EtcHosts = append(f.EtcHosts, e.Address+"\t"+e.Name+"\t# clusterctl")
	}
	ch, err = hostprep.EtcHosts{}.Check(context.Background(), step.Target{Host: h, Facts: f})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Action != step.ActionUpdate || len(ch.Diff) != 1 || !strings.Contains(ch.Diff[0].To, "none; 1000 entries differ") {
		t.Errorf("check of none over 1000 lines = %+v, want one update line", ch)
	}

	small, _ := json.Marshal(hostprep.EtcHosts{Entries: manyEntries(3)})
	if want := `{"entries":[{"address":"10.1.0.0","name":"node-0"},{"address":"10.1.0.1","name":"node-1"},{"address":"10.1.0.2","name":"node-2"}]}`; string(small) != want {
		t.Errorf("params of a 3-host block = %s, want %s", small, want)
	}
}
