package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/clusterctl/clusterctl/provision/lock"
	"github.com/clusterctl/clusterctl/provision/state"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/steps/addons"
)

// testSpec loads a spec written from body.
func testSpec(t *testing.T, body string) *spec.Cluster {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.cue"), []byte("package clusterctl\n\ncluster: {\n"+body+"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := spec.Load([]string{dir}, spec.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const oneCPSpec = `
	name: "e2e"
	kubernetes: version: "1.37.2"
	hosts: {
		h1: {address: "172.31.10.11", roles: ["control-plane"]}
		h2: {address: "172.31.10.12", roles: ["worker"]}
		h3: {address: "172.31.10.13", roles: ["worker"]}
	}
	health: probes: "hello-h2": {url: "http://172.31.10.12:30080/"}`

const haSpec = `
	name: "ha"
	kubernetes: {version: "1.37.2", controlPlaneEndpoint: mode: "node-local"}
	hosts: {
		h1: {address: "172.31.13.11", roles: ["control-plane"]}
		h2: {address: "172.31.13.12", roles: ["control-plane"]}
		h3: {address: "172.31.13.13", roles: ["control-plane"]}
		h4: {address: "172.31.13.14", roles: ["worker"]}
	}
	health: probes: "hello-h4": {url: "http://172.31.13.14:30080/"}`

// nodeJSON is a Node as kubectl lists it.
func nodeJSON(name, ready, reason, version, ip string, roles ...string) string {
	labels := []string{`"kubernetes.io/hostname": "` + name + `"`}
	for _, r := range roles {
		labels = append(labels, `"node-role.kubernetes.io/`+r+`": ""`)
	}
	return fmt.Sprintf(`{"kind": "Node", "metadata": {"name": %q, "labels": {%s}}, "status": {"conditions": [{"type": "Ready", "status": %q, "reason": %q}],
		"nodeInfo": {"kubeletVersion": %q}, "addresses": [{"type": "InternalIP", "address": %q}, {"type": "Hostname", "address": %q}]}}`,
		name, strings.Join(labels, ", "), ready, reason, version, ip, name)
}

func podJSON(name, node string, ready bool) string {
	cond := "True"
	if !ready {
		cond = "False"
	}
	return fmt.Sprintf(`{"kind": "Pod", "metadata": {"name": %q, "namespace": "kube-system"}, "spec": {"nodeName": %q},
		"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": %q}], "containerStatuses": [{"name": "c", "ready": true}]}}`, name, node, cond)
}

func lookAnswer(readyz, etcd, members string, items []string, probes string) string {
	return "@@readyz\n" + readyz + "\n@@etcd\n" + etcd + "\n@@members\n" + members + "\n@@objects\n" +
		`{"apiVersion": "v1", "kind": "List", "items": [` + strings.Join(items, ",\n") + "]}\n@@probes\n" + probes
}

func isLook(l string) bool { return strings.HasPrefix(l, "echo @@readyz; ") }

func fakes(t *testing.T, names ...string) (map[string]host.Host, map[string]*hosttest.Fake) {
	hosts, fs := map[string]host.Host{}, map[string]*hosttest.Fake{}
	for _, n := range names {
		f := hosttest.NewFake(t, n)
		hosts[n], fs[n] = f, f
	}
	return hosts, fs
}

// goldenStatus renders r both ways and compares with testdata/status/NAME.
func goldenStatus(t *testing.T, name string, r *addons.Report) {
	t.Helper()
	var text, js bytes.Buffer
	if err := render.StatusText(&text, r); err != nil {
		t.Fatal(err)
	}
	if err := render.StatusJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	hosttest.AssertGolden(t, filepath.Join("testdata", "status", name+".txt"), text.String())
	hosttest.AssertGolden(t, filepath.Join("testdata", "status", name+".json"), js.String())
}

// expectState answers the reads of the record of the last apply (on the
// control plane the look ran on, h) and of the lock (on its host, lh).
func expectState(t *testing.T, h *hosttest.Fake, rec *state.Record, lh *hosttest.Fake, holder *lock.Info) {
	t.Helper()
	answer := "@@clusterctl-no-record\n"
	if rec != nil {
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		answer = "@@clusterctl-record\n" + string(b) + "\n"
	}
	h.ExpectFunc("read the record", func(l string) bool { return strings.Contains(l, "get configmap clusterctl-state") }).Stdout(answer)
	answer = "@@lock-gone\n"
	if holder != nil {
		b, _ := json.Marshal(holder)
		answer = fmt.Sprintf("@@lock-held\n%d\n%s\n", holder.Heartbeat.Unix(), b)
	}
	lh.ExpectFunc("read the lock", func(l string) bool { return strings.Contains(l, "/var/lib/clusterctl/lock.json") }).Stdout(answer)
}

func testRecord(c *spec.Cluster, digest string) *state.Record {
	r := &state.Record{Format: state.FormatVersion, Cluster: c.Name, SpecDigest: digest, Git: &state.Git{Commit: "4f2a9c1e7b3d5a6f8e9d0c1b2a3f4e5d6c7b8a9f"},
		Clusterctl: "v0.4.0", Distribution: "kubeadm", KubernetesVersion: "1.37.2",
		AppliedAt: time.Date(2026, 11, 21, 18, 30, 0, 0, time.UTC), AppliedBy: "ann@laptop"}
	for _, n := range c.Names() {
		r.Hosts = append(r.Hosts, state.Host{Name: n, Address: c.Hosts[n].Address, Roles: c.Hosts[n].Roles, User: "root", Port: 22})
	}
	return r
}

func TestStatusHealthy(t *testing.T) {
	c := testSpec(t, oneCPSpec)
	e, err := statusExpect(c)
	if err != nil {
		t.Fatal(err)
	}
	hosts, f := fakes(t, "h1", "h2", "h3")
	for _, h := range f {
		h.Expect("true")
	}
	f["h1"].ExpectFunc("look", isLook).Stdout(lookAnswer("ok", "ok",
		`{"level":"warn","msg":"unrecognized environment variable"}`+"\n"+`[{"endpoint":"https://172.31.10.11:2379","health":true,"took":"10.6ms"}]`,
		[]string{
			nodeJSON("h1", "True", "KubeletReady", "v1.37.2", "172.31.10.11", "control-plane"),
			nodeJSON("h2", "True", "KubeletReady", "v1.37.2", "172.31.10.12"),
			nodeJSON("h3", "True", "KubeletReady", "v1.37.2", "172.31.10.13"),
			podJSON("etcd-h1", "h1", true),
			podJSON("kube-proxy-abcde", "h2", true),
		}, "0 200\n"))
	expectState(t, f["h1"], testRecord(c, c.Digest), f["h1"], nil)
	r := lookStatus(context.Background(), c, hosts, c.ControlPlanes()[0], e, host.NewRedactor())
	if !r.Healthy || r.CheckedFrom != "h1" || len(r.Problems) != 0 {
		t.Errorf("healthy %v from %q, problems %q", r.Healthy, r.CheckedFrom, r.Problems)
	}
	goldenStatus(t, "healthy", r)
}

// TestStatusLostControlPlane: the first control plane is down: its SSH is
// reported, the look runs on the second, and every sign of the lost member
// names it (node, etcd member, its pods).
func TestStatusLostControlPlane(t *testing.T) {
	c := testSpec(t, haSpec)
	e, err := statusExpect(c)
	if err != nil {
		t.Fatal(err)
	}
	hosts, f := fakes(t, "h1", "h2", "h3", "h4")
	f["h1"].Expect("true").Err(fmt.Errorf("h1: dial h1 (root@172.31.13.11:22): dial tcp 172.31.13.11:22: connect: no route to host: %w", host.ErrUnreachable))
	for _, n := range []string{"h2", "h3", "h4"} {
		f[n].Expect("true")
	}
	members := `[{"endpoint":"https://172.31.13.12:2379","health":true,"took":"9ms"},{"endpoint":"https://172.31.13.13:2379","health":true,"took":"11ms"},` +
		`{"endpoint":"https://172.31.13.11:2379","health":false,"took":"5.0s","error":"context deadline exceeded"}]` + "\nError: unhealthy cluster\ncommand terminated with exit code 1"
	f["h2"].ExpectFunc("look", isLook).Stdout(lookAnswer("ok", "ok", members, []string{
		nodeJSON("h1", "Unknown", "NodeStatusUnknown", "v1.37.2", "172.31.13.11", "control-plane"),
		nodeJSON("h2", "True", "KubeletReady", "v1.37.2", "172.31.13.12", "control-plane"),
		nodeJSON("h3", "True", "KubeletReady", "v1.37.2", "172.31.13.13"),
		nodeJSON("h4", "True", "KubeletReady", "v1.33.13", "172.31.13.14"),
		nodeJSON("h9", "True", "KubeletReady", "v1.37.2", "172.31.13.19"),
		podJSON("etcd-h1", "h1", false),
		podJSON("etcd-h2", "h2", true),
		`{"kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system", "generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 5, "updatedNumberScheduled": 5, "numberAvailable": 4}}`,
	}, "0 503\n"))
	stale := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	// The lock lives on h2 (--lock-host h2: h1 is gone for good).
	expectState(t, f["h2"], testRecord(c, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), f["h2"],
		&lock.Info{ID: "k3v7q2m9x4b8n6c1", Owner: "ci@runner-7", PID: 4242, Command: "apply", Host: "h1", Started: stale, Heartbeat: stale})
	r := lookStatus(context.Background(), c, hosts, "h2", e, host.NewRedactor())
	if r.Healthy || r.CheckedFrom != "h2" {
		t.Errorf("healthy %v from %q", r.Healthy, r.CheckedFrom)
	}
	for _, want := range []string{
		"node h1: unreachable over SSH (dial h1 (root@172.31.13.11:22): dial tcp 172.31.13.11:22: connect: no route to host: host unreachable)",
		"node h1: not Ready (NodeStatusUnknown)",
		"etcd member h1 (https://172.31.13.11:2379): unhealthy: context deadline exceeded",
		"pod kube-system/etcd-h1 on h1: not ready",
		"node h3: not a control plane in the cluster, but the spec says it is",
		"node h4: kubelet v1.33.13, want v1.37.2",
		"daemonset kube-system/kube-proxy: 4 of 5 pods available (5 updated)",
		"probe hello-h4 (http://172.31.13.14:30080/): status 503, want 200",
	} {
		if !contains(r.Problems, want) {
			t.Errorf("problems lack %q:\n%s", want, strings.Join(r.Problems, "\n"))
		}
	}
	if n := r.Node("h9"); n == nil || n.InSpec || n.Healthy || contains(r.Problems, "node h9: not in the spec") {
		t.Errorf("a node not in the spec: %+v; problems %q", n, r.Problems)
	}
	goldenStatus(t, "lost-control-plane", r)
}

// TestStatusNoControlPlane: no control plane answers; nothing is looked
// at, and every host's SSH state is still reported.
func TestStatusNoControlPlane(t *testing.T) {
	c := testSpec(t, `
	name: "e2e"
	kubernetes: version: "1.37.2"
	hosts: {
		h1: {address: "172.31.10.11", roles: ["control-plane"]}
		h2: {address: "172.31.10.12", roles: ["worker"]}
	}`)
	e, err := statusExpect(c)
	if err != nil {
		t.Fatal(err)
	}
	hosts, f := fakes(t, "h1", "h2")
	f["h1"].Expect("true").Err(fmt.Errorf("h1: dial h1 (root@172.31.10.11:22): connection refused: %w", host.ErrUnreachable))
	f["h2"].Expect("true").Err(fmt.Errorf("h2: user root: ssh: unable to authenticate: %w", host.ErrAuthFailed))
	r := lookStatus(context.Background(), c, hosts, c.ControlPlanes()[0], e, host.NewRedactor())
	if r.Healthy || r.CheckedFrom != "" || r.Node("h2").SSH != addons.SSHFailed {
		t.Errorf("healthy %v from %q, h2 %+v", r.Healthy, r.CheckedFrom, r.Node("h2"))
	}
	goldenStatus(t, "no-control-plane", r)
}

// TestStatusLookFails: a control plane answers SSH but the look fails
// there (sudo refused): the next control plane is asked.
func TestStatusLookFails(t *testing.T) {
	c := testSpec(t, haSpec)
	e, err := statusExpect(c)
	if err != nil {
		t.Fatal(err)
	}
	hosts, f := fakes(t, "h1", "h2", "h3", "h4")
	for _, h := range f {
		h.Expect("true")
	}
	f["h1"].ExpectFunc("look", isLook).Err(fmt.Errorf("h1: sudo: %w", host.ErrSudoPasswordNeed))
	f["h2"].ExpectFunc("look", isLook).Stdout(lookAnswer("ok", "ok", `[]`, nil, "0 200\n"))
	// The look runs on h2; the lock is read on h1, where it lives.
	expectState(t, f["h2"], nil, f["h1"], nil)
	r := lookStatus(context.Background(), c, hosts, c.ControlPlanes()[0], e, host.NewRedactor())
	if r.CheckedFrom != "h2" || !contains(r.Problems, "node h1: look at the cluster failed here: look at the cluster: h1: sudo: sudo requires a password") {
		t.Errorf("from %q, problems %q", r.CheckedFrom, r.Problems)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
