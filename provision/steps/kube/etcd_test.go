package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// etcdManifest is the part of kubeadm's etcd static pod clusterctl reads.
const etcdManifest = `apiVersion: v1
kind: Pod
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://172.31.10.11:2379
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://172.31.10.11:2380
    - --initial-cluster=h1=https://172.31.10.11:2380
    - --name=h1
    image: registry.local/k8s/etcd:3.6.5-0
    imagePullPolicy: IfNotPresent
`

const (
	snapshotSum    = "5f1c5cd6d4b6d1b9c86d5bb83ee7b5e8b42f3bb1f0c30f43a1b1a3e0f4d0c8a1"
	snapshotStatus = `{"level":"warn","msg":"unrecognized environment variable","environment-variable":"ETCDCTL_API=3"}` + "\n" +
		`{"hash":1631775502,"revision":676,"totalKey":428,"totalSize":1519616,"version":"3.6.0"}` + "\n"
)

func etcdNode(t *testing.T) *hosttest.Fake {
	h := hosttest.NewFake(t, "h1")
	h.SetFile(kube.EtcdManifest, []byte(etcdManifest), 0o600)
	return h
}

func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	h := etcdNode(t)
	h.Expect("install -d -m 0700 -- /var/lib/clusterctl/etcd-snapshots")
	h.ExpectFunc("etcdctl snapshot save", func(l string) bool { return strings.Contains(l, " etcdctl ") && strings.Contains(l, " snapshot save ") })
	h.ExpectFunc("etcdutl snapshot status", func(l string) bool { return strings.Contains(l, " etcdutl snapshot status ") }).Stdout(snapshotStatus)
	h.ExpectFunc("digest", func(l string) bool { return strings.HasPrefix(l, "sha256sum -- /var/lib/clusterctl/etcd-snapshots/") }).
		Stdout(snapshotSum + "  /var/lib/clusterctl/etcd-snapshots/etcd-test.db\n1519648\n")
	info, err := kube.Snapshot(ctx, h, kube.SnapshotOptions{Name: "etcd-test"})
	if err != nil {
		t.Fatal(err)
	}
	want := kube.SnapshotInfo{Host: "h1", Path: "/var/lib/clusterctl/etcd-snapshots/etcd-test.db", SHA256: snapshotSum, Size: 1519648,
		Revision: 676, TotalKeys: 428, Hash: 1631775502, Version: "3.6.0",
		Member: kube.EtcdMember{Host: "h1", Name: "h1", PeerURL: "https://172.31.10.11:2380", Image: "registry.local/k8s/etcd:3.6.5-0", DataDir: "/var/lib/etcd"}}
	if info != want {
		t.Errorf("SnapshotInfo\n got %+v\nwant %+v", info, want)
	}
	steptest.Golden(t, "etcd-snapshot", h.Transcript())
}

func TestSnapshotFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("no etcd manifest", func(t *testing.T) {
		h := hosttest.NewFake(t, "h1")
		_, err := kube.Snapshot(ctx, h, kube.SnapshotOptions{Name: "x"})
		if err == nil || !strings.Contains(err.Error(), "stacked etcd of kubeadm control planes only") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("save fails: tool container removed", func(t *testing.T) {
		h := etcdNode(t)
		h.Expect("install -d -m 0700 -- /var/lib/clusterctl/etcd-snapshots")
		h.ExpectFunc("etcdctl snapshot save", func(l string) bool { return strings.Contains(l, " snapshot save ") }).
			Stderr("context deadline exceeded\n").Exit(1)
		h.ExpectFunc("remove the container", func(l string) bool {
			return strings.Contains(l, "ctr -n k8s.io containers delete clusterctl-x-save")
		})
		_, err := kube.Snapshot(ctx, h, kube.SnapshotOptions{Name: "x"})
		var ee *host.ExitError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), "take an etcd snapshot on h1") || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("corrupt snapshot removed", func(t *testing.T) {
		h := etcdNode(t)
		h.Expect("install -d -m 0700 -- /var/lib/clusterctl/etcd-snapshots")
		h.ExpectFunc("etcdctl snapshot save", func(l string) bool { return strings.Contains(l, " snapshot save ") })
		h.ExpectFunc("etcdutl snapshot status", func(l string) bool { return strings.Contains(l, " snapshot status ") }).
			Stderr("Error: snapshot file integrity check failed\n").Exit(1)
		h.ExpectFunc("remove the container", func(l string) bool { return strings.Contains(l, "containers delete clusterctl-x-status") })
		h.Expect("rm -f -- /var/lib/clusterctl/etcd-snapshots/x.db")
		if _, err := kube.Snapshot(ctx, h, kube.SnapshotOptions{Name: "x"}); err == nil || !strings.Contains(err.Error(), "integrity check failed") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("hostile options", func(t *testing.T) {
		for _, o := range []kube.SnapshotOptions{{Dir: "/var/tmp/a,b"}, {Dir: "relative"}, {Dir: "/a/../etc"}, {Name: "x; reboot"}, {Name: "../x"}} {
			if _, err := kube.Snapshot(ctx, hosttest.NewFake(t, "h1"), o); err == nil {
				t.Errorf("%+v accepted", o)
			}
		}
	})
}

func TestEtcdManifestRefused(t *testing.T) {
	for name, m := range map[string]string{
		"external data dir": strings.Replace(etcdManifest, "--data-dir=/var/lib/etcd", "--data-dir=/data/etcd", 1),
		"hostile image":     strings.Replace(etcdManifest, "image: registry.local/k8s/etcd:3.6.5-0", "image: x;reboot", 1),
		"no name":           strings.Replace(etcdManifest, "    - --name=h1\n", "", 1),
	} {
		h := hosttest.NewFake(t, "h1")
		h.SetFile(kube.EtcdManifest, []byte(m), 0o600)
		if _, err := kube.ReadEtcdMember(context.Background(), h, kube.EtcdManifest); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
