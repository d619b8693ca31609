//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
)

// drWorkload is the scenario's own workload, beside the spec's hello: a
// Deployment nobody's spec manages (it only lives in etcd) and a ConfigMap
// with a value made for this run.
const drWorkload = `apiVersion: apps/v1
kind: Deployment
metadata: {name: dr-hello, namespace: default}
spec:
  replicas: 2
  selector:
    matchLabels: {app: dr-hello}
  template:
    metadata:
      labels: {app: dr-hello}
    spec:
      containers:
      - name: hello
        image: registry.local/clusterctl/hello:v1
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 2
---
apiVersion: v1
kind: ConfigMap
metadata: {name: dr-config, namespace: default}
data: {value: VALUE}
`

// TestDisasterRecovery: a kubeadm cluster (1 control plane, 2 workers)
// with a workload and a ConfigMap is backed up, then lost three ways and
// brought back each time, checked from outside (kubectl, curl) and on the
// hosts (nsenter):
//
//  1. in place: objects changed and deleted after the backup; restore puts
//     the cluster's etcd back to the backup (static pods stopped, etcdutl
//     restore, old data kept until healthy);
//  2. reset: `clusterctl reset` tears every host down to a prepared host
//     (checked: no cluster state, binaries/images/host preparation and the
//     user's files kept); `apply` from the spec builds a new, empty cluster
//     (new certificates); restore refuses it without --rebuild, and with it
//     resets and rebuilds the cluster from the backup's certificates and
//     etcd data; a subset reset and rejoin, and a quorum refusal;
//  3. power cut and wipe: the hosts are replaced by blank ones; restore
//     alone prepares them and rebuilds the cluster: the time from bare hosts
//     to the recovered cluster is reported.
//
// After each recovery the ConfigMap holds the run's value, dr-hello is
// rolled out, the cluster passes the cluster tests' checks, and a further
// apply changes nothing.
func TestDisasterRecovery(t *testing.T) {
	skipWithoutKubernetes(t)
	t.Parallel() // each scenario has its own hosts, net and kubeconfig
	c := startCluster(t, "172.31.16", "ct16", "root", nil)
	dr := &drScenario{c: c, t: t, file: filepath.Join(t.TempDir(), "e2e.backup"), cps: 1}
	dr.value = "dr-" + randomHex(8)
	dr.createWorkload()
	dr.backup()
	dr.inPlace()
	dr.resetApplyRestore()
	dr.subsetReset()
	dr.wipeAndRestore()
	c.report()
}

// TestDisasterRecoveryHA: the same with three control planes (stacked
// etcd, also workers) provisioned as the sudo user "tester": an in-place
// restore makes one etcd cluster of the same three members from the
// snapshot; a control plane reset alone leaves the cluster with its etcd
// member removed and joins again; after a reset of every host, restore
// rebuilds the cluster (the first control plane seeded, the others joining
// as control planes).
func TestDisasterRecoveryHA(t *testing.T) {
	skipWithoutKubernetes(t)
	t.Parallel() // each scenario has its own hosts, net and kubeconfig
	c := startCluster(t, "172.31.17", "ct17", "tester", func(inv string) string {
		inv = strings.Replace(inv, `controlPlaneEndpoint: mode: "node-local"`,
			`controlPlaneEndpoint: {mode: "external", address: "172.31.17.11", port: 6443}`, 1)
		return strings.ReplaceAll(inv, `roles: ["control-plane"]`, `roles: ["control-plane", "worker"]`)
	})
	dr := &drScenario{c: c, t: t, file: filepath.Join(t.TempDir(), "e2e.backup"), cps: 3}
	dr.value = "dr-ha-" + randomHex(8)
	dr.createWorkload()
	dr.backup()
	dr.inPlace()
	dr.checkMembers("after the restore in place", "h1", "h2", "h3")

	e := c.e
	out := e.clusterctl(0, "reset", "--yes", "--hosts", "h3", e.spec)
	mustContain(t, out, "control plane h3 leaves the cluster", "etcd member: listed", "2 changed, ")
	dr.checkMembers("after h3's reset", "h1", "h2")
	out = e.clusterctl(0, "apply", "--yes", e.spec)
	mustContain(t, out, " 0 failed, ")
	c.phase("reset --hosts h3 (a control plane), apply: h3 joins again")
	dr.checkMembers("after h3 joined again", "h1", "h2", "h3")

	dr.resetAll()
	t0 := time.Now()
	out = e.clusterctl(0, "restore", "--yes", dr.file, e.spec)
	c.phase("restore: reset hosts -> recovered cluster")
	mustContain(t, out, "Rebuild (no host holds a cluster)", `Restored cluster "e2e" from `)
	t.Logf("reset hosts -> recovered 3-control-plane cluster: %s", time.Since(t0).Round(100*time.Millisecond))
	dr.checkWorkload("reset, restore")
	dr.checkMembers("after the rebuild", "h1", "h2", "h3")
	c.verify(3, 3)
	dr.converges("reset, restore")
	c.report()
}

// checkMembers lists etcd's members with etcdctl from the cluster's etcd
// image on h1 (nsenter, not clusterctl).
func (d *drScenario) checkMembers(when string, want ...string) {
	d.t.Helper()
	out := d.c.e.sh(1, `ctr -n k8s.io run --rm --net-host --mount type=bind,src=/etc/kubernetes/pki/etcd,dst=/etc/kubernetes/pki/etcd,options=rbind:ro `+
		`"$(sed -n 's/^ *image: *//p' /etc/kubernetes/manifests/etcd.yaml)" e2e-members-$$ etcdctl --endpoints=https://127.0.0.1:2379 `+
		`--cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key `+
		`member list 2>/dev/null | awk -F', ' '$2 == "started" { print $3 }' | sort | tr '\n' ' '`)
	if got := strings.Join(want, " "); out != got {
		d.t.Errorf("%s: etcd members started: %q, want %q", when, out, got)
	}
}

type drScenario struct {
	c     *cluster
	t     *testing.T
	file  string
	value string
	cps   int // control planes
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *drScenario) kubectl(args ...string) string {
	d.t.Helper()
	return Kubectl(d.t, d.c.kubectl, d.c.kubeconfig, "e2e", args...)
}

func (d *drScenario) createWorkload() {
	t := d.t
	f := filepath.Join(t.TempDir(), "dr.yaml")
	if err := os.WriteFile(f, []byte(strings.Replace(drWorkload, "VALUE", d.value, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.kubectl("apply", "-f", f)
	d.kubectl("rollout", "status", "deployment/dr-hello", "--timeout=180s")
	d.c.phase("workload dr-hello and ConfigMap dr-config created")
}

// checkWorkload: the ConfigMap holds the run's value; dr-hello is rolled
// out with both replicas running and ready.
func (d *drScenario) checkWorkload(when string) {
	t := d.t
	if got := d.kubectl("get", "configmap", "dr-config", "-o", "jsonpath={.data.value}"); got != d.value {
		t.Fatalf("%s: ConfigMap dr-config value %q, want %q", when, got, d.value)
	}
	d.kubectl("rollout", "status", "deployment/dr-hello", "--timeout=300s")
	Eventually(t, when+": dr-hello pods running and ready", 3*time.Minute, func() error {
		out := d.kubectl("get", "pods", "-l", "app=dr-hello", "--no-headers", "-o",
			"custom-columns=NAME:.metadata.name,PHASE:.status.phase,READY:.status.containerStatuses[*].ready,NODE:.spec.nodeName")
		n := 0
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[1] == "Running" && f[2] == "true" {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d of 2 running and ready:\n%s", n, out)
		}
		return nil
	})
	t.Logf("%s: dr-config=%s, dr-hello:\n%s", when, d.value, d.kubectl("get", "pods", "-l", "app=dr-hello", "-o", "wide"))
}

// converges: a further apply changes nothing and plan agrees.
func (d *drScenario) converges(when string) {
	out := d.c.e.clusterctl(0, "apply", "--yes", d.c.e.spec)
	mustContain(d.t, out, "No changes.", "\n0 changed, ", " 0 failed, ")
	d.c.e.clusterctl(0, "plan", "--detailed-exitcode", d.c.e.spec)
	d.c.phase(when + ": further apply (no changes)")
}

func (d *drScenario) backup() {
	t, e := d.t, d.c.e
	out := e.clusterctl(0, "backup", "--out", d.file, e.spec)
	d.c.phase("backup")
	t.Logf("backup:\n%s", out)
	mustContain(t, out, "Backup "+d.file+` of cluster "e2e": etcd revision `)
	st, err := os.Stat(d.file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	// Checked with the standard tools, not clusterctl's own reader.
	sum := exec.Command("sha256sum", "-c", filepath.Base(d.file)+".sha256")
	sum.Dir = filepath.Dir(d.file)
	if b, err := sum.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
	list, err := exec.Command("tar", "tf", d.file).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"clusterctl-backup.json", "pki/ca.key", "pki/sa.key", "pki/etcd/ca.key", "pki/front-proxy-ca.key", "etcd/snapshot.db"} {
		if !strings.Contains(string(list), want+"\n") {
			t.Errorf("the archive lacks %s:\n%s", want, list)
		}
	}
	var meta struct {
		Cluster    string `json:"cluster"`
		SpecDigest string `json:"specDigest"`
		Etcd       struct {
			Revision int64 `json:"revision"`
		} `json:"etcd"`
	}
	raw, err := os.ReadFile(d.file + ".json")
	if err != nil || json.Unmarshal(raw, &meta) != nil || meta.Cluster != "e2e" || len(meta.SpecDigest) != 64 || meta.Etcd.Revision <= 0 {
		t.Errorf("%s.json: %v\n%s", d.file, err, raw)
	}
	if strings.Contains(string(raw), "PRIVATE KEY") {
		t.Errorf("%s.json holds a key", d.file)
	}
	if n := e.sh(1, "ls -A /var/lib/clusterctl/etcd-snapshots | wc -l"); n != "0" {
		t.Errorf("%s snapshots left on h1", n)
	}
	t.Logf("backup file %s (%d bytes), etcd revision %d", d.file, st.Size(), meta.Etcd.Revision)
}

// inPlace: changes after the backup are undone by restoring it in place.
func (d *drScenario) inPlace() {
	t, e := d.t, d.c.e
	d.kubectl("delete", "deployment", "dr-hello", "--wait=true")
	d.kubectl("patch", "configmap", "dr-config", "--type=merge", "-p", `{"data":{"value":"changed-after-backup"}}`)
	d.kubectl("create", "configmap", "after-backup", "--from-literal=x=1")
	d.c.phase("in place: changes after the backup")
	out := e.clusterctl(0, "restore", "--yes", d.file, e.spec)
	dt := d.c.phase("in place: restore")
	t.Logf("restore in place (%s):\n%s", dt.Round(100*time.Millisecond), out)
	mustContain(t, out, "In place (h1 runs a cluster with the backup's certificate authority)", `Restored cluster "e2e" from `)
	d.checkWorkload("in place")
	if out, err := exec.Command(d.c.kubectl, "--kubeconfig", d.c.kubeconfig, "--context", "e2e", "get", "configmap", "after-backup").CombinedOutput(); err == nil || !strings.Contains(string(out), "NotFound") {
		t.Errorf("after-backup survived the restore: %v %s", err, out)
	}
	if got := e.sh(1, "ls -A /var/lib/etcd; find /etc/kubernetes/clusterctl /var/lib/clusterctl/etcd-snapshots -mindepth 1 | wc -l"); got != "member\n0" {
		t.Errorf("h1 after the restore: /var/lib/etcd and leftovers: %q", got)
	}
	d.c.verify(d.cps, 3)
	d.converges("in place")
}

// hostState is what a host holds of a node and of its preparation, read
// with the host's own tools (ctr's stderr aside: containerd 2 warns there
// about cgroup v1 on every call).
const hostState = `echo "kubelet=$(systemctl is-active kubelet)/$(systemctl is-enabled kubelet 2>/dev/null)"
echo "etc-kubernetes=$(ls -A /etc/kubernetes | grep -vx kubelet-resolv.conf | tr '\n' ' ')"
echo "etcd=$(ls -A /var/lib/etcd | wc -l) kubelet-dir=$(ls -A /var/lib/kubelet | wc -l) cni-conf=$(ls -A /etc/cni/net.d | wc -l)"
echo "links=$(ls /sys/class/net | grep -cE '^(cni0|flannel)')"
echo "chains=$(iptables-save | grep -cE '^:(KUBE-|FLANNEL)') nft-tables=$(nft list tables | grep -c ' kube-proxy$')"
echo "containers=$(ctr -n k8s.io containers ls -q 2>/dev/null | wc -l)"
echo "kept: containerd=$(systemctl is-active containerd) kubeadm=$(kubeadm version -o short) hello-image=$(ctr -n k8s.io images ls -q 2>/dev/null | grep -c '/hello:v1$') sysctl=$(test -f /etc/sysctl.d/99-kubernetes.conf && echo yes) user-file=$(cat /root/keep-me)"`

func (d *drScenario) checkClean(when string) {
	t, e := d.t, d.c.e
	want := "kubelet=inactive/disabled\netc-kubernetes=\netcd=0 kubelet-dir=0 cni-conf=0\nlinks=0\nchains=0 nft-tables=0\ncontainers=0\n" +
		"kept: containerd=active kubeadm=v1.37.2 hello-image=1 sysctl=yes user-file=mine"
	dirty := false
	for _, h := range e.hosts.Hosts {
		if got := e.sh(h.Index, hostState); got != want {
			t.Errorf("%s: %s:\n%s\nwant\n%s", when, h.Name, got, want)
			dirty = true
		}
	}
	out, err := exec.Command(d.c.kubectl, "--kubeconfig", d.c.kubeconfig, "--context", "e2e", "--request-timeout=10s", "get", "nodes").CombinedOutput()
	if err == nil {
		t.Errorf("%s: kubectl still reaches a cluster:\n%s", when, out)
		dirty = true
	}
	if dirty {
		t.FailNow()
	}
}

// resetAll: every host torn down to a prepared host, checked; a second
// reset has nothing to do.
func (d *drScenario) resetAll() {
	t, e := d.t, d.c.e
	for _, h := range e.hosts.Hosts {
		e.sh(h.Index, "echo mine > /root/keep-me")
	}
	out := e.clusterctl(0, "reset", "--yes", e.spec)
	d.c.phase("reset: every host")
	mustContain(t, out, "Plan: 0 to add, 0 to change, 3 to remove", "3 changed, ", " 0 failed, ")
	d.checkClean("after reset")
	out = e.clusterctl(0, "reset", "--yes", e.spec)
	mustContain(t, out, "No changes.")
	d.c.phase("reset again: no changes; hosts checked")
}

// resetApplyRestore: reset every host, build a new cluster from the spec,
// and bring the backup back into it.
func (d *drScenario) resetApplyRestore() {
	t, e := d.t, d.c.e
	d.resetAll()

	t0 := time.Now()
	out := e.clusterctl(0, "apply", "--yes", "-o", "json", e.spec)
	d.c.phase("apply: prepared hosts -> new, empty cluster")
	for _, ev := range ApplyEvents(out) {
		if ev.Type == "failed" || ev.Type == "skipped" {
			t.Fatalf("apply after reset: %s %s: %s", ev.Step, ev.Type, ev.Error)
		}
	}
	if out, err := exec.Command(d.c.kubectl, "--kubeconfig", d.c.kubeconfig, "--context", "e2e", "get", "configmap", "dr-config").CombinedOutput(); err == nil {
		t.Fatalf("the new cluster already has dr-config:\n%s", out)
	}
	out = e.clusterctl(1, "restore", "--yes", d.file, e.spec)
	mustContain(t, out, "hold a cluster whose certificates are not the backup's", "pass --rebuild")
	out = e.clusterctl(0, "restore", "--yes", "--rebuild", d.file, e.spec)
	dt := d.c.phase("restore --rebuild into the new cluster's hosts")
	t.Logf("restore --rebuild (%s):\n%s", dt.Round(100*time.Millisecond), lastLines(out, 25))
	mustContain(t, out, "Rebuild (h1, h2, h3 hold a cluster", "Seeded h1 with the backup's certificate authorities and etcd data", `Restored cluster "e2e" from `)
	d.checkWorkload("reset, apply, restore")
	t.Logf("reset hosts -> apply -> restored cluster: %s", time.Since(t0).Round(100*time.Millisecond))
	d.c.verify(d.cps, 3)
	d.converges("reset, apply, restore")
}

// subsetReset: one worker goes and comes back; control planes cannot go
// alone.
func (d *drScenario) subsetReset() {
	t, e := d.t, d.c.e
	out := e.clusterctl(1, "reset", "--yes", "--hosts", "h1", e.spec)
	mustContain(t, out, "etcd would lose quorum")
	out = e.clusterctl(0, "reset", "--yes", "--hosts", "h3", e.spec)
	mustContain(t, out, "cluster/kube/delete-node/h3", "2 changed, ")
	if nodes := d.kubectl("get", "nodes", "-o", "name"); strings.Contains(nodes, "node/h3") {
		t.Errorf("node h3 still listed after its reset:\n%s", nodes)
	}
	out = e.clusterctl(0, "apply", "--yes", e.spec)
	mustContain(t, out, " 0 failed, ")
	d.c.phase("reset --hosts h3, apply: h3 joins again")
	d.checkWorkload("subset reset")
	d.c.verify(d.cps, 3)
}

// wipeAndRestore: power cut, blank hosts, restore alone.
func (d *drScenario) wipeAndRestore() {
	t, e := d.t, d.c.e
	for _, h := range e.hosts.Hosts {
		if err := e.hosts.Kill(h.Index); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.hosts.Close(); err != nil { // the disks go with them
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hosts, err := testhosts.Start(ctx, testhosts.Options{Net: e.hosts.Net, Count: 3, Prefix: e.hosts.Prefix, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hosts.Close() })
	e.hosts = hosts
	if got := e.sh(1, "command -v kubeadm containerd || echo bare"); got != "bare" {
		t.Fatalf("the new h1 is not bare: %s", got)
	}
	d.c.phase("power cut, wipe: 3 blank hosts")
	t0 := time.Now()
	out := e.clusterctl(0, "restore", "--yes", d.file, e.spec)
	recovered := time.Since(t0)
	d.c.phase("restore on blank hosts")
	t.Logf("restore on blank hosts:\n%s", lastLines(out, 25))
	mustContain(t, out, "Rebuild (no host holds a cluster)", `Restored cluster "e2e" from `)
	d.checkWorkload("wipe, restore")
	t.Logf("bare hosts -> recovered cluster (restore, host preparation included): %s", recovered.Round(100*time.Millisecond))
	d.c.timings = append(d.c.timings, [2]string{"= bare hosts -> recovered cluster", recovered.Round(100 * time.Millisecond).String()})
	d.c.verify(d.cps, 3)
	d.converges("wipe, restore")
}
