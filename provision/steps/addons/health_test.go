package addons_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/addons"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var health = addons.Health{Nodes: []string{"h1", "h2", "h3"}, Version: "1.37.2", Timeout: "1500ms",
	Probes: []addons.Probe{{Name: "hello-h2", URL: "http://172.31.10.12:30080/", Status: 200}}}

func node(name, ready, version string) string {
	return `{"kind": "Node", "metadata": {"name": "` + name + `"}, "status": {"conditions": [{"type": "Ready", "status": "` + ready +
		`", "reason": "KubeletNotReady"}], "nodeInfo": {"kubeletVersion": "` + version + `"}}}`
}

const (
	podRunning = `{"kind": "Pod", "metadata": {"name": "coredns-1", "namespace": "kube-system"}, "status": {"phase": "Running", "containerStatuses": [{"name": "coredns", "ready": true}]}}`
	podCrash   = `{"kind": "Pod", "metadata": {"name": "coredns-2", "namespace": "kube-system"}, "status": {"phase": "Running", "containerStatuses": [{"name": "coredns", "ready": false, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}`
	podApp     = `{"kind": "Pod", "metadata": {"name": "app-1", "namespace": "default"}, "status": {"phase": "Pending"}}`
	deployOK   = `{"kind": "Deployment", "metadata": {"name": "hello", "namespace": "default", "generation": 1}, "spec": {"replicas": 3}, "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3}}`
	deployBad  = `{"kind": "Deployment", "metadata": {"name": "hello", "namespace": "default", "generation": 2}, "spec": {"replicas": 3}, "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}}`
	dsOK       = `{"kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system", "generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}}`
	dsBad      = `{"kind": "DaemonSet", "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel", "generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 1}}`
	stsBad     = `{"kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default", "generation": 3}, "spec": {"replicas": 2}, "status": {"observedGeneration": 2}}`
)

// answer is what the look script prints on the control plane when etcd
// is healthy (a failing /readyz is then about something else).
func answer(readyz string, items []string, probes string) string {
	return answerEtcd(readyz, "ok", oneMember, items, probes)
}

const oneMember = `[{"endpoint":"https://172.31.10.11:2379","health":true,"took":"2.1ms"}]`

func answerEtcd(readyz, etcd, members string, items []string, probes string) string {
	return "@@readyz\n" + readyz + "\n@@etcd\n" + etcd + "\n@@members\n" + members + "\n@@objects\n" +
		`{"apiVersion": "v1", "kind": "List", "items": [` + strings.Join(items, ",") + "]}\n@@probes\n" + probes
}

var healthyItems = []string{node("h1", "True", "v1.37.2"), node("h2", "True", "v1.37.2"), node("h3", "True", "v1.37.2"), podRunning, podApp, deployOK, dsOK}

func isLook(l string) bool { return strings.HasPrefix(l, "echo @@readyz; ") }

func TestHealthHealthy(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("look", isLook).Stdout(answer("ok", healthyItems, "0 200\n"))
	ch, err := health.Check(context.Background(), step.Target{})
	if err != nil || ch.Action != step.ActionRead {
		t.Fatalf("Check: %s", steptest.Report(health, ch, err))
	}
	if err := health.Apply(context.Background(), step.Target{Host: h, Facts: someFacts()}); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "health-healthy", h.Transcript())
}

// TestHealthBecomesHealthy: a node still joining, then Ready: no error.
func TestHealthBecomesHealthy(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("look", isLook).Stdout(answer("ok", []string{node("h1", "True", "v1.37.2"), node("h2", "False", "v1.37.2")}, "0 000\n"))
	h.ExpectFunc("look", isLook).Stdout(answer("ok", healthyItems, "0 200\n"))
	if err := health.Apply(context.Background(), step.Target{Host: h, Facts: someFacts()}); err != nil {
		t.Fatal(err)
	}
}

func TestHealthUnhealthy(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	items := []string{node("h1", "True", "v1.37.2"), node("h2", "False", "v1.33.13"), podRunning, podCrash, podApp, deployBad, dsBad, stsBad}
	h.ExpectFunc("look", isLook).Stdout(answer("[-]etcd failed: reason withheld\nreadyz check failed", items, "0 503\n")).AnyTimes()
	err := health.Apply(context.Background(), step.Target{Host: h, Facts: someFacts()})
	if !errors.Is(err, addons.ErrUnhealthy) {
		t.Fatalf("error %v, want ErrUnhealthy", err)
	}
	for _, want := range []string{
		"cluster unhealthy after 1.5s (3 checks): ",
		"API server /readyz: [-]etcd failed: reason withheld",
		"node h2: not Ready (KubeletNotReady)",
		"node h2: kubelet v1.33.13, want v1.37.2",
		"node h3: not registered",
		"pod kube-system/coredns-2: container coredns CrashLoopBackOff",
		"deployment default/hello: 2 of 3 replicas available (3 updated)",
		"daemonset kube-flannel/kube-flannel-ds: 1 of 3 pods available (3 updated)",
		"statefulset default/db: change not yet observed",
		"probe hello-h2 (http://172.31.10.12:30080/): status 503, want 200",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "app-1") {
		t.Errorf("a pod outside kube-system counted: %v", err)
	}
}

// TestHealthAPIDown: kubectl cannot reach the API server at all.
func TestHealthAPIDown(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	refused := "The connection to the server 172.31.10.11:6443 was refused - did you specify the right host or port?"
	h.ExpectFunc("look", isLook).Stdout("@@readyz\n" + refused + "\n\n@@objects\n" + refused + "\n@@probes\n0 000\n").AnyTimes()
	op := health
	op.Timeout = "10ms"
	err := op.Apply(context.Background(), step.Target{Host: h, Facts: someFacts()})
	if err == nil || !strings.Contains(err.Error(), "API server /readyz: The connection to the server") ||
		!strings.Contains(err.Error(), "list the cluster's objects: The connection") || !strings.Contains(err.Error(), "no answer, want 200") {
		t.Errorf("error %v", err)
	}
}

// TestHealthProbeWithoutCurl: the control plane has no curl; clusterctl
// probes from here.
func TestHealthProbeWithoutCurl(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	defer srv.Close()
	op := addons.Health{Nodes: []string{"h1"}, Version: "1.37.2", Timeout: "10ms", Probes: []addons.Probe{{Name: "tea", URL: srv.URL, Status: 418}}}
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("look", isLook).Stdout(answer("ok", []string{node("h1", "True", "v1.37.2")}, "no curl\n"))
	if err := op.Apply(context.Background(), step.Target{Host: h, Facts: someFacts()}); err != nil {
		t.Fatal(err)
	}
	op.Probes[0].Status = 200
	h.ExpectFunc("look", isLook).Stdout(answer("ok", []string{node("h1", "True", "v1.37.2")}, "no curl\n")).AnyTimes()
	if err := op.Apply(context.Background(), step.Target{Host: h, Facts: someFacts()}); err == nil || !strings.Contains(err.Error(), "status 418, want 200") {
		t.Errorf("error %v", err)
	}
}

func TestHealthInvalid(t *testing.T) {
	for _, op := range []addons.Health{
		{Timeout: "soon"},
		{Timeout: "1m", Probes: []addons.Probe{{Name: "p", URL: "file:///etc/passwd"}}},
		{Timeout: "1m", Probes: []addons.Probe{{Name: "p", URL: "http://"}}},
	} {
		if _, err := op.Check(context.Background(), step.Target{}); err == nil {
			t.Errorf("%+v accepted", op)
		}
	}
}

// TestHealthEtcd: etcd as the API server sees it and as each member says;
// a control plane without an etcd pod (external etcd) is not a problem.
func TestHealthEtcd(t *testing.T) {
	items := []string{node("h1", "True", "v1.37.2"), node("h2", "True", "v1.37.2"), node("h3", "True", "v1.37.2")}
	members := `{"level":"warn","msg":"unrecognized environment variable"}` + "\n" +
		`[{"endpoint":"https://172.31.10.11:2379","health":true,"took":"9ms"},{"endpoint":"https://172.31.10.12:2379","health":false,"took":"5s","error":"context deadline exceeded"}]` +
		"\nError: unhealthy cluster\ncommand terminated with exit code 1"
	for _, tc := range []struct {
		name, readyz, etcd, members string
		want                        []string
	}{
		{"member down", "ok", "ok", members, []string{"etcd member https://172.31.10.12:2379: unhealthy: context deadline exceeded"}},
		{"readyz etcd", "[-]etcd failed: reason withheld\nreadyz check failed", "etcd failed: reason withheld", "Error from server: etcdserver: request timed out",
			[]string{"API server /readyz: [-]etcd failed: reason withheld", "etcd: etcd failed: reason withheld"}},
		{"no etcd pod", "ok", "ok", `Error from server (NotFound): pods "etcd-h1" not found`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hosttest.NewFake(t, "h1")
			h.ExpectFunc("look", isLook).Stdout(answerEtcd(tc.readyz, tc.etcd, tc.members, items, "0 200\n"))
			op := health
			r, err := addons.Look(context.Background(), h, op.Expect())
			if err != nil {
				t.Fatal(err)
			}
			if r.Healthy != (len(tc.want) == 0) || len(r.Problems) != len(tc.want) {
				t.Errorf("healthy %v, problems %q, want %q", r.Healthy, r.Problems, tc.want)
			}
			for _, w := range tc.want {
				if !slices.Contains(r.Problems, w) {
					t.Errorf("problems lack %q: %q", w, r.Problems)
				}
			}
			if tc.name == "no etcd pod" && !strings.HasPrefix(r.Etcd.MembersError, "Error from server (NotFound)") {
				t.Errorf("members error %q", r.Etcd.MembersError)
			}
		})
	}
}

// TestHealthNodeLost: the node controller marks a silent node's pods not
// ready; the problem names the pod's node.
func TestHealthNodeLost(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	pod := `{"kind": "Pod", "metadata": {"name": "kube-proxy-x", "namespace": "kube-system"}, "spec": {"nodeName": "h3"}, "status": {"phase": "Running",
		"conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [{"name": "kube-proxy", "ready": true}]}}`
	items := []string{node("h1", "True", "v1.37.2"), node("h2", "True", "v1.37.2"), node("h3", "Unknown", "v1.37.2"), pod}
	h.ExpectFunc("look", isLook).Stdout(answer("ok", items, "0 200\n"))
	r, err := addons.Look(context.Background(), h, health.Expect())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"node h3: not Ready (KubeletNotReady)", "pod kube-system/kube-proxy-x on h3: not ready"}
	if !slices.Equal(r.Problems, want) {
		t.Errorf("problems %q, want %q", r.Problems, want)
	}
}
