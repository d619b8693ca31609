package state

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
)

const (
	kubectl = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"
	admin   = "/etc/kubernetes/admin.conf"
)

const sampleDigest = "abc123def4567890abc123def4567890abc123def4567890abc123def4567890"

func sample() Record {
	return Record{
		Format: FormatVersion, Cluster: "prod", SpecDigest: sampleDigest,
		Git:        &Git{Commit: "0123456789abcdef01230123456789abcdef0123", Dirty: true},
		Clusterctl: "v0.3.0", Distribution: "kubeadm", KubernetesVersion: "1.37.2",
		Hosts: []Host{
			{Name: "cp1", Address: "10.0.0.1", Roles: []string{"control-plane"}, User: "root", Port: 22},
			{Name: "w1", Address: "10.0.0.2", Roles: []string{"worker"}, User: "ops", Port: 2222},
		},
		AppliedAt: time.Date(2026, 11, 22, 3, 4, 5, 0, time.UTC), AppliedBy: "ann@laptop",
	}
}

func TestReadAnswers(t *testing.T) {
	doc, _ := json.Marshal(sample())
	cases := []struct {
		name, stdout string
		exit         int
		want         *Record
		err          string
	}{
		{name: "no cluster", stdout: markNoCluster + "\n"},
		{name: "no record", stdout: markNoRecord + "\n"},
		{name: "record", stdout: markRecord + "\n" + string(doc) + "\n", want: ptr(sample())},
		{name: "garbage", stdout: "Welcome to the machine\n", err: "unexpected answer"},
		{name: "truncated", stdout: markRecord + "\n{\"format\":1,", err: "unexpected EOF"},
		{name: "newer format", stdout: markRecord + "\n{\"format\":9}\n", err: "format 9"},
		{name: "api down", exit: 3, err: "cannot read the cluster's state record"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := hosttest.NewFake(t, "cp1")
			h.ExpectFunc("read state", func(l string) bool { return strings.Contains(l, ConfigMapName) }).Stdout(c.stdout).Exit(c.exit)
			got, err := Read(context.Background(), h, kubectl, admin, "prod")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrUnreadable) {
					t.Fatalf("err = %v, want ErrUnreadable saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(c.want)
			if string(a) != string(b) {
				t.Fatalf("got %s\nwant %s", a, b)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// The read script runs in a real shell: no admin.conf means no cluster.
func TestReadScriptWithoutCluster(t *testing.T) {
	h := hosttest.NewLocal("cp1", t.TempDir(), nil)
	got, err := Read(context.Background(), h, "false", filepath.Join(t.TempDir(), "missing.conf"), "prod")
	if err != nil || got != nil {
		t.Fatalf("Read = %v, %v; want no record, no error", got, err)
	}
	// With a kubeconfig present and a kubectl that answers a record.
	conf := filepath.Join(t.TempDir(), "admin.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(sample())
	fake := "printf '%s' '" + string(doc) + "'; :"
	got, err = Read(context.Background(), h, fake, conf, "prod")
	if err != nil || got == nil || got.Cluster != "prod" || len(got.Hosts) != 2 {
		t.Fatalf("Read = %+v, %v", got, err)
	}
}

func TestRemoved(t *testing.T) {
	r := sample()
	if got := r.Removed([]string{"cp1", "w2"}); len(got) != 1 || got[0].Name != "w1" {
		t.Fatalf("Removed = %+v, want w1", got)
	}
	if got := (*Record)(nil).Removed([]string{"a"}); got != nil {
		t.Fatalf("nil record removed %v", got)
	}
}

func TestSummary(t *testing.T) {
	r := sample()
	want := "applied 2026-11-22 03:04:05 UTC by ann@laptop from commit 0123456789ab (with uncommitted changes), kubeadm 1.37.2, 2 hosts, clusterctl v0.3.0"
	if got := r.Summary(); got != want {
		t.Fatalf("Summary =\n%s\nwant\n%s", got, want)
	}
}

func TestSaveWritesConfigMap(t *testing.T) {
	h := hosttest.NewFake(t, "cp1")
	var doc string
	h.ExpectFunc("server-side apply", func(l string) bool {
		return l == kubectl+" --request-timeout=30s apply --server-side --force-conflicts --field-manager=clusterctl -f -"
	}).Do(func(_ context.Context, cmd host.Cmd) error {
		b, err := io.ReadAll(cmd.Stdin)
		doc = string(b)
		return err
	})
	op := Save{Record: sample(), Kubectl: kubectl}
	if ch, _ := op.Check(context.Background(), step.Target{Host: h}); ch.Action != step.ActionRead {
		t.Fatalf("Check = %v, want read (never a change)", ch.Action)
	}
	before := time.Now().UTC().Add(-time.Second)
	if err := op.Apply(context.Background(), step.Target{Host: h}); err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Kind     string
		Metadata struct{ Name, Namespace string }
		Data     map[string]string
	}
	if err := json.Unmarshal([]byte(doc), &cm); err != nil {
		t.Fatalf("%v in %s", err, doc)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata.Name != ConfigMapName || cm.Metadata.Namespace != Namespace {
		t.Fatalf("object %+v", cm)
	}
	got, err := parse(markRecord+"\n"+cm.Data[DataKey], "prod")
	if err != nil {
		t.Fatal(err)
	}
	if got.AppliedAt.Before(before) || got.SpecDigest != sampleDigest || !got.Git.Dirty {
		t.Fatalf("stored %+v", got)
	}
}
