package kube_test

import (
	"context"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// The snapshot's "saved DIR/NAME" report interpolated the backup directory
// inside double quotes, where $(...) still runs: the directory must appear
// on the command line only as host.Quote makes it.
func TestEtcdSnapshotQuotesDir(t *testing.T) {
	dir := `/var/backups/it's$(reboot)`
	op := kube.EtcdSnapshot{Cluster: cluster, Node: "h1", Dir: dir}
	cp := newNode(t, "h1")
	cp.ExpectFunc("earlier snapshot", func(l string) bool { return strings.HasPrefix(l, "cd "+host.Quote(dir)+" ") })
	var line string
	cp.ExpectFunc("save", func(l string) bool { return strings.HasPrefix(l, "set -e; umask 077;") }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			line = cmd.Line
			_, err := cmd.Stdout.Write([]byte("saved " + dir + "/etcd-before-v1.34.10-20260101T120000Z.db\n"))
			return err
		})
	if err := op.Apply(context.Background(), step.Target{Host: cp, Facts: freshFacts("h1")}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, dir) {
		t.Errorf("the backup directory appears unquoted in:\n%s", line)
	}
}
