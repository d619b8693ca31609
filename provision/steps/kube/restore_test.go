package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var (
	memberH1 = kube.EtcdMember{Host: "h1", Name: "h1", PeerURL: "https://172.31.10.11:2380", Image: "registry.local/k8s/etcd:3.6.5-0", DataDir: "/var/lib/etcd"}
	memberH2 = kube.EtcdMember{Host: "h2", Name: "h2", PeerURL: "https://172.31.10.12:2380", Image: "registry.local/k8s/etcd:3.6.5-0", DataDir: "/var/lib/etcd"}
)

func TestStopStartControlPlane(t *testing.T) {
	ctx := context.Background()
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("park and wait", func(l string) bool { return strings.Contains(l, "pgrep -x etcd") })
	h.ExpectFunc("unpark", func(l string) bool {
		return strings.Contains(l, "rmdir -- /etc/kubernetes/clusterctl/parked-manifests")
	})
	if err := kube.StopControlPlane(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := kube.StartControlPlane(ctx, h); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "restore-stop-start", h.Transcript())

	h = hosttest.NewFake(t, "h1")
	h.ExpectFunc("park and wait", func(l string) bool { return strings.Contains(l, "pgrep -x etcd") }).
		Stderr("etcd or the API server still runs 3 minutes after their manifests were moved away\n").Exit(1)
	if err := kube.StopControlPlane(ctx, h); err == nil || !strings.Contains(err.Error(), "stop the control plane on h1") || !strings.Contains(err.Error(), "still runs") {
		t.Errorf("error %v", err)
	}
}

func TestRestoreEtcdData(t *testing.T) {
	ctx := context.Background()
	h := hosttest.NewFake(t, "h2")
	h.Expect("rm -rf -- /var/lib/etcd/.clusterctl-restore-restore-1")
	h.ExpectFunc("etcdutl snapshot restore", func(l string) bool { return strings.Contains(l, " etcdutl snapshot restore ") })
	h.ExpectFunc("swap", func(l string) bool {
		return strings.HasPrefix(l, "set -e; [ -d /var/lib/etcd/.clusterctl-restore-restore-1/member ]")
	})
	old, err := kube.RestoreEtcdData(ctx, h, memberH2.Image, "/var/lib/clusterctl/etcd-snapshots/restore-1.db", "restore-1", memberH2, []kube.EtcdMember{memberH1, memberH2})
	if err != nil {
		t.Fatal(err)
	}
	if old != "/var/lib/etcd/.clusterctl-before-restore-restore-1" {
		t.Errorf("old data at %s", old)
	}
	steptest.Golden(t, "restore-etcd-data", h.Transcript())
}

func TestRestoreEtcdDataRefuses(t *testing.T) {
	ctx := context.Background()
	bad := memberH2
	bad.Name = "h2,h9=https://evil:2380"
	for name, call := range map[string]func(h host.Host) error{
		"member name": func(h host.Host) error {
			_, err := kube.RestoreEtcdData(ctx, h, memberH2.Image, "/var/lib/clusterctl/etcd-snapshots/x.db", "x", bad, []kube.EtcdMember{bad})
			return err
		},
		"image": func(h host.Host) error {
			_, err := kube.RestoreEtcdData(ctx, h, "x; reboot", "/var/lib/clusterctl/etcd-snapshots/x.db", "x", memberH2, []kube.EtcdMember{memberH2})
			return err
		},
		"snapshot path": func(h host.Host) error {
			_, err := kube.RestoreEtcdData(ctx, h, memberH2.Image, "/var/lib/../../etc/x.db", "x", memberH2, []kube.EtcdMember{memberH2})
			return err
		},
		"drop a foreign dir": func(h host.Host) error { return kube.DropOldData(ctx, h, "/var/lib/etcd/member") },
	} {
		if err := call(hosttest.NewFake(t, "h2")); err == nil { // the strict fake fails on any command
			t.Errorf("%s: accepted", name)
		}
	}
}

// testPKI: SeedRestore copies the files as they are.
func testPKI(t *testing.T) map[string][]byte {
	pki := map[string][]byte{}
	for _, p := range kube.BackupPKI {
		pki[p] = []byte("secret " + p + "\n")
	}
	return pki
}

func testSeed(t *testing.T) kube.Seed {
	return kube.Seed{PKI: testPKI(t), Snapshot: "/var/lib/clusterctl/etcd-snapshots/restore-1.db", Image: memberH1.Image, Tag: "restore-1",
		Member: kube.MemberFor(kube.Node{Name: "h1", Address: "172.31.10.11"}, memberH1.Image),
		Marker: []byte(`{"backup":"e2e.backup","takenAt":"2026-11-22T03:31:39Z"}`)}
}

func TestSeedRestore(t *testing.T) {
	ctx := context.Background()
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("residue", isResidueProbe).Stdout(residuePrepared + "dir /var/lib/clusterctl/etcd-snapshots 1\n")
	h.Expect("ctr -n k8s.io images ls").Stdout("REF TYPE DIGEST SIZE PLATFORMS LABELS\nregistry.local/k8s/etcd:3.6.5-0 application/vnd.oci.image.manifest.v1+json sha256:abc 58 MiB linux/amd64 -\n")
	h.Expect("install -d -m 0700 -- /var/lib/etcd")
	h.Expect("rm -rf -- /var/lib/etcd/.clusterctl-restore-restore-1")
	h.ExpectFunc("etcdutl snapshot restore", func(l string) bool {
		return strings.Contains(l, " etcdutl snapshot restore /var/lib/clusterctl/etcd-snapshots/restore-1.db ") &&
			strings.Contains(l, "--name h1 --initial-cluster 'h1=https://172.31.10.11:2380' --initial-advertise-peer-urls https://172.31.10.11:2380 ")
	})
	h.ExpectFunc("swap", func(l string) bool {
		return strings.HasPrefix(l, "set -e; [ -d /var/lib/etcd/.clusterctl-restore-restore-1/member ]")
	})
	h.Expect("rm -rf -- /var/lib/etcd/.clusterctl-before-restore-restore-1")
	h.Expect("install -d -m 0700 -- /etc/kubernetes/pki /etc/kubernetes/pki/etcd /etc/kubernetes/clusterctl")
	if err := kube.SeedRestore(ctx, h, testSeed(t)); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, p := range kube.BackupPKI {
		files = append(files, "/etc/kubernetes/pki/"+p)
	}
	for _, p := range append(files, kube.RestoreMarker) {
		f, ok := h.File(p)
		if !ok || f.Mode.Perm() != 0o600 || f.Owner != "root" {
			t.Errorf("%s: uploaded %v, mode %o owner %q; want 0600 root", p, ok, f.Mode.Perm(), f.Owner)
		}
	}
	// The marker comes last: a seed is complete once it is there.
	tr := h.Transcript()
	if i, j := strings.Index(tr, "upload: /etc/kubernetes/clusterctl/restore.json"), strings.LastIndex(tr, "upload: /etc/kubernetes/pki/"); i < j {
		t.Errorf("the marker is written before the certificates:\n%s", tr)
	}
	steptest.Golden(t, "restore-seed", tr)
}

func TestSeedRestoreRefusesBusyHost(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("residue", isResidueProbe).Stdout(residueControlPlane)
	err := kube.SeedRestore(context.Background(), h, testSeed(t))
	if !errors.Is(err, kube.ErrNotBare) || !strings.Contains(err.Error(), "reset it first") {
		t.Errorf("error %v", err)
	}
}

// probeSeeded: of kubeadm's files, only the CA (the seed's).
const probeSeeded = "file /etc/kubernetes/pki/ca.crt\nconntrack read-only\n"

// kubeadm init adopts a seed: it ignores the restored etcd data directory,
// and afterwards deletes every other host's Node object and the marker.
func TestInitAdoptsSeed(t *testing.T) {
	ctx := context.Background()
	red := host.NewRedactor()
	h := redacting(t, "h1", red)
	h.SetFile(kube.RestoreMarker, []byte(`{"backup":"e2e.backup","takenAt":"2026-11-22T03:31:39Z"}`), 0o600)
	h.ExpectFunc("probe", isProbe).Stdout(probeSeeded).Times(2)
	tg := step.Target{Host: h, Facts: freshFacts("h1"), Bundle: testBundle(t), Redactor: red}
	ch, err := initOp.Check(ctx, tg)
	if err != nil || ch.Action != step.ActionCreate {
		t.Fatalf("Check: %s", steptest.Report(initOp, ch, err))
	}
	h.Expect("install -d -m 0700 -- /etc/kubernetes/clusterctl /var/log/clusterctl")
	h.ExpectFunc("kubeadm init", func(l string) bool {
		return strings.Contains(l, "kubeadm init --config /etc/kubernetes/clusterctl/kubeadm-init.yaml --upload-certs '--ignore-preflight-errors=DirAvailable--var-lib-etcd' >")
	})
	h.ExpectFunc("wait for the API", func(l string) bool {
		return strings.Contains(l, "until kubectl --kubeconfig=/etc/kubernetes/admin.conf")
	})
	h.ExpectFunc("delete the other nodes", func(l string) bool { return strings.HasPrefix(l, "nodes=$(kubectl") })
	if err := initOp.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "init-seeded", steptest.Section("check", steptest.Report(initOp, ch, nil)), steptest.Section("transcript", h.Transcript()))
}

// Only the CA without the marker is a half-initialised host, as before.
func TestInitCAWithoutMarker(t *testing.T) {
	h := newNode(t, "h1")
	h.ExpectFunc("probe", isProbe).Stdout(probeSeeded)
	_, err := initOp.Check(context.Background(), step.Target{Host: h, Facts: freshFacts("h1"), Bundle: testBundle(t)})
	if !errors.Is(err, kube.ErrHalfInitialised) {
		t.Errorf("error %v", err)
	}
}
