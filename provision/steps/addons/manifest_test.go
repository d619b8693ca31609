package addons_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/addons"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

const helloYAML = `# the sample workload
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 3
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
      - {name: hello, image: registry.local/clusterctl/hello:v1, imagePullPolicy: Never}
---
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  type: NodePort
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
`

const crdDir = `{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"}}`

// specDir writes files (relative path -> content) into a temporary spec
// directory.
func specDir(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestManifestFresh(t *testing.T) {
	ctx := context.Background()
	dir := specDir(t, map[string]string{"manifests/hello.yaml": helloYAML})
	op := addons.Manifest{Name: "hello", Path: "manifests/hello.yaml", SpecDir: dir, Namespace: "default", Wait: true, Timeout: "2m"}
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("kubectl diff", isDiff).Stdout(`diff -u -N /tmp/LIVE-1/apps.v1.Deployment.default.hello /tmp/MERGED-1/apps.v1.Deployment.default.hello
@@ -0,0 +1,40 @@
+kind: Deployment
diff -u -N /tmp/LIVE-1/v1.Service.default.hello /tmp/MERGED-1/v1.Service.default.hello
@@ -0,0 +1,20 @@
+kind: Service
`).Exit(1)
	ch, err := op.Check(ctx, step.Target{Host: h, Facts: someFacts()})
	if err != nil || ch.Action != step.ActionCreate || len(ch.Diff) != 2 {
		t.Fatalf("Check: %s", steptest.Report(op, ch, err))
	}
	h.ExpectFunc("apply", isApply)
	h.Expect("kubectl --kubeconfig=/etc/kubernetes/admin.conf rollout status deployment/hello --timeout 2m -n default")
	if err := op.Apply(ctx, step.Target{Host: h, Facts: someFacts()}); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "manifest-fresh", steptest.Report(op, ch, nil), steptest.Section("transcript", h.Transcript()))
}

// TestManifestDirectory: a directory's files in path order, namespaces
// and CRDs applied (and the CRDs established) before the rest; no wait.
func TestManifestDirectory(t *testing.T) {
	ctx := context.Background()
	dir := specDir(t, map[string]string{
		"apps/b-app.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: shop}\ndata: {a: b}\n",
		"apps/a-ns.yml":     "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
		"apps/crd.json":     crdDir,
		"apps/widget.yaml":  "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: shop}\n",
		"apps/README.md":    "not a manifest",
		"apps/sub/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sub, namespace: shop}\n",
		"apps/empty.yaml":   "---\n# nothing\n",
		"other/ignored.yml": "kind: Nope",
	})
	op := addons.Manifest{Name: "shop", Path: "apps", SpecDir: dir}
	h := hosttest.NewFake(t, "h1")
	// The namespace and CRD are new: the rest cannot be diffed yet.
	h.ExpectFunc("kubectl diff", isDiff).Stdout("diff -u -N /tmp/LIVE-1/v1.Namespace..shop /tmp/MERGED-1/v1.Namespace..shop\n@@ -0,0 +1,5 @@\n" +
		"diff -u -N /tmp/LIVE-1/apiextensions.k8s.io.v1.CustomResourceDefinition..widgets.example.com /tmp/MERGED-1/apiextensions.k8s.io.v1.CustomResourceDefinition..widgets.example.com\n@@ -0,0 +1,5 @@\n").Exit(1)
	ch, err := op.Check(ctx, step.Target{Host: h, Facts: someFacts()})
	if err != nil || ch.Action != step.ActionCreate {
		t.Fatalf("Check: %s", steptest.Report(op, ch, err))
	}
	h.ExpectFunc("apply", isApply).Times(2)
	h.Expect("kubectl --kubeconfig=/etc/kubernetes/admin.conf wait --for=condition=established --timeout=60s crd/widgets.example.com")
	if err := op.Apply(ctx, step.Target{Host: h, Facts: someFacts()}); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "manifest-directory", steptest.Report(op, ch, nil), steptest.Section("transcript", h.Transcript()))
}

func TestManifestConverged(t *testing.T) {
	dir := specDir(t, map[string]string{"hello.yaml": helloYAML})
	op := addons.Manifest{Name: "hello", Path: "hello.yaml", SpecDir: dir, Namespace: "default", Wait: true}
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("kubectl diff", isDiff)
	ch, err := op.Check(context.Background(), step.Target{Host: h, Facts: someFacts()})
	if err != nil || ch.Action != step.ActionNone {
		t.Errorf("Check: %s", steptest.Report(op, ch, err))
	}
}

func TestManifestErrors(t *testing.T) {
	dir := specDir(t, map[string]string{
		"nokind.yaml":  "apiVersion: v1\nmetadata: {name: x}\n",
		"bad.yaml":     "kind: [",
		"empty.yaml":   "# nothing here\n",
		"scalar.yaml":  "just a string\n",
		"hello.yaml":   helloYAML,
		"noname.yaml":  "apiVersion: v1\nkind: ConfigMap\n",
		"second.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: ConfigMap\n",
		"dir/sub.json": "{",
	})
	for _, tc := range []struct {
		op   addons.Manifest
		want string
	}{
		{addons.Manifest{Name: "m", Path: "missing.yaml"}, "manifest m: stat"},
		{addons.Manifest{Name: "m", Path: "nokind.yaml"}, "nokind.yaml: document 1: not a Kubernetes object"},
		{addons.Manifest{Name: "m", Path: "bad.yaml"}, "bad.yaml: document 1"},
		{addons.Manifest{Name: "m", Path: "empty.yaml"}, "manifest m: empty.yaml holds no Kubernetes objects"},
		{addons.Manifest{Name: "m", Path: "scalar.yaml"}, "scalar.yaml: document 1: not a Kubernetes object"},
		{addons.Manifest{Name: "m", Path: "noname.yaml"}, "noname.yaml: document 1: not a Kubernetes object (no kind or metadata.name)"},
		{addons.Manifest{Name: "m", Path: "second.yaml"}, "second.yaml: document 2"},
		{addons.Manifest{Name: "m", Path: "dir"}, "sub.json: document 1"},
		{addons.Manifest{Name: "m", Path: "hello.yaml", Namespace: "Bad NS"}, `namespace "Bad NS" is not a DNS label`},
		{addons.Manifest{Name: "m", Path: "hello.yaml", Timeout: "soon"}, `timeout "soon"`},
	} {
		tc.op.SpecDir = dir
		if _, err := tc.op.Check(context.Background(), step.Target{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.op.Path, err, tc.want)
		}
	}
}

// TestManifestRolloutFailure: a rollout that does not finish is the
// step's error, naming the manifest.
func TestManifestRolloutFailure(t *testing.T) {
	dir := specDir(t, map[string]string{"hello.yaml": helloYAML})
	op := addons.Manifest{Name: "hello", Path: "hello.yaml", SpecDir: dir, Wait: true, Timeout: "1s"}
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("apply", isApply)
	h.ExpectFunc("rollout", func(l string) bool { return strings.Contains(l, "rollout status deployment/hello --timeout 1s") }).
		Stderr("error: timed out waiting for the condition\n").Exit(1)
	// The error says why: the pods that are not ready and the latest warnings.
	h.ExpectFunc("diagnosis", func(l string) bool { return strings.Contains(l, "get pods -A --no-headers -o wide") }).
		Stdout("default   hello-69fddc7797-ck4vm   0/1   ContainerCreating   0   5m   <none>   h3\n--\n" +
			"2m   Warning   FailedCreatePodSandBox   pod/hello-69fddc7797-ck4vm   failed to get sandbox image \"registry.local/k8s/pause:3.10.1\"\n")
	err := op.Apply(context.Background(), step.Target{Host: h, Facts: someFacts()})
	if err == nil || !strings.Contains(err.Error(), "manifest hello: wait for the rollout") || !strings.Contains(err.Error(), "timed out") ||
		!strings.Contains(err.Error(), "pods not ready:\ndefault   hello-69fddc7797-ck4vm   0/1   ContainerCreating") ||
		!strings.Contains(err.Error(), "latest warnings:\n2m   Warning   FailedCreatePodSandBox") {
		t.Errorf("error %v", err)
	}
	var _ host.Host = h
}
