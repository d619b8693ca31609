package plan_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/spec"
)

// A node-local endpoint: haproxy on every node (control planes too), up
// before kubeadm touches the node, balancing to all three API servers from
// the start; kubeadm's endpoint is the proxy; the operator's kubeconfig
// names the first control plane (loopback is no address from outside).
func TestNodeLocalPlan(t *testing.T) {
	c, err := spec.Load([]string{filepath.Join("testdata", "node-local")}, spec.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, p := offline(t, c)
	var txt, js, md bytes.Buffer
	if err := render.PlanText(&txt, p); err != nil {
		t.Fatal(err)
	}
	if err := render.PlanJSON(&js, p); err != nil {
		t.Fatal(err)
	}
	if err := render.PlanMarkdown(&md, p); err != nil {
		t.Fatal(err)
	}
	hosttest.AssertGolden(t, filepath.Join("testdata", "node-local.plan.txt"), txt.String())
	hosttest.AssertGolden(t, filepath.Join("testdata", "node-local.plan.json"), js.String())
	hosttest.AssertGolden(t, filepath.Join("testdata", "node-local.plan.md"), md.String())

	before, _ := ordering(t, g)
	before("cp1/hostprep/packages", "cp1/kube/apiserver-proxy")
	before("cp1/kube/apiserver-proxy", "cp1/kube/init")
	before("cp2/kube/apiserver-proxy", "cp2/kube/join-control-plane")
	before("w1/kube/apiserver-proxy", "w1/kube/join-worker")

	params := map[string]string{}
	for _, s := range p.Steps {
		b, err := json.Marshal(s.Params)
		if err != nil {
			t.Fatal(err)
		}
		params[s.ID] = string(b)
	}
	backends := `"backends":[{"name":"cp1","address":"10.30.0.11:6443"},{"name":"cp2","address":"10.30.0.12:6443"},{"name":"cp3","address":"10.30.0.13:6443"}]`
	for _, n := range []string{"cp1", "cp2", "cp3", "w1"} {
		if got := params[n+"/kube/apiserver-proxy"]; !strings.Contains(got, `"listen":"127.0.0.1:7443"`) || !strings.Contains(got, backends) {
			t.Errorf("%s/kube/apiserver-proxy: %s", n, got)
		}
		if got := params[n+"/hostprep/packages"]; !strings.Contains(got, `"haproxy"`) {
			t.Errorf("%s/hostprep/packages lacks haproxy: %s", n, got)
		}
	}
	for id, want := range map[string]string{
		"cp1/kube/init":               `"endpoint":"127.0.0.1:7443","endpointMode":"node-local"`,
		"cp2/kube/join-control-plane": `"endpoint":"127.0.0.1:7443"`,
		"w1/kube/join-worker":         `"endpoint":"127.0.0.1:7443"`,
		"cluster/kube/kubeconfig":     `"endpoint":"10.30.0.11:6443"`,
		"cp1/hostprep/firewall":       `"port":"6443"`,
	} {
		if !strings.Contains(params[id], want) {
			t.Errorf("%s lacks %s: %s", id, want, params[id])
		}
	}
	// Without node-local, no haproxy anywhere.
	_, local := offline(t, load(t, "local"))
	for _, s := range local.Steps {
		if b, _ := json.Marshal(s.Params); strings.Contains(string(b), "haproxy") || strings.HasSuffix(s.ID, "/kube/apiserver-proxy") {
			t.Errorf("local inventory (no node-local endpoint) plans haproxy: %s %s", s.ID, b)
		}
	}
}
