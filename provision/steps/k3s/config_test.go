package k3s_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/k3s"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// The config.yaml keys clusterctl writes, and the k3s flags they are.
// Checked against k3s's documented configuration: every config.yaml key is
// the flag of the same name, repeatable flags as YAML lists (k3s-io/docs,
// docs/installation/configuration.md, "Configuration File"); server flags
// from docs/cli/server.md ("K3s Server CLI Help") and agent flags from
// docs/cli/agent.md ("K3s Agent CLI Help"), as defined in k3s-io/k3s
// pkg/cli/cmds/server.go and agent.go. Servers take agent flags too
// ("servers also run an agent"). No real k3s binary was available to
// check them against `k3s server --help` here.
var (
	// Flags of `k3s agent` (and so of servers) that clusterctl uses.
	agentFlags = map[string]bool{
		"server": true, "token-file": true, "node-name": true, "node-ip": true,
		"node-label": true, "node-taint": true, "kube-proxy-arg": true,
		"pause-image": true, "snapshotter": true,
	}
	// Flags only `k3s server` has.
	serverFlags = map[string]bool{
		"cluster-init": true, "write-kubeconfig-mode": true, "tls-san": true,
		"cluster-cidr": true, "service-cidr": true, "cluster-dns": true, "cluster-domain": true,
		"flannel-backend": true, "disable-network-policy": true, "disable": true,
	}
	// Repeatable flags (lists in config.yaml).
	listFlags = map[string]bool{"tls-san": true, "disable": true, "kube-proxy-arg": true, "node-label": true, "node-taint": true}
	// --disable's documented items and --flannel-backend's values.
	disableItems    = map[string]bool{"coredns": true, "servicelb": true, "traefik": true, "local-storage": true, "metrics-server": true}
	flannelBackends = map[string]bool{"none": true, "vxlan": true, "host-gw": true, "wireguard-native": true}
)

// checkKeys fails for a key k3s does not document for role, a list flag
// written as a scalar or the other way round, and values outside the
// documented sets.
func checkKeys(t *testing.T, role string, cfg []byte) map[string]yaml.Node {
	t.Helper()
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(cfg, &doc); err != nil {
		t.Fatalf("config.yaml is not YAML: %v\n%s", err, cfg)
	}
	for k, v := range doc {
		if !agentFlags[k] && !(role == k3s.RoleServer && serverFlags[k]) {
			t.Errorf("key %q is no documented k3s %s flag", k, role)
		}
		if listFlags[k] != (v.Kind == yaml.SequenceNode) {
			t.Errorf("key %q: list %v, want list %v", k, v.Kind == yaml.SequenceNode, listFlags[k])
		}
	}
	if fb, ok := doc["flannel-backend"]; ok && !flannelBackends[fb.Value] {
		t.Errorf("flannel-backend %q is not a documented backend", fb.Value)
	}
	if d, ok := doc["disable"]; ok {
		for _, it := range d.Content {
			if !disableItems[it.Value] {
				t.Errorf("disable item %q is not a documented component", it.Value)
			}
		}
	}
	return doc
}

func TestRenderedFiles(t *testing.T) {
	var parts []string
	for _, tc := range []struct {
		name        string
		op          any
		role        string
		conntrackRO bool
		overlay     bool
	}{
		{"first server", initOp, k3s.RoleServer, false, false},
		{"joining server (conntrack read-only, data on overlayfs)", joinS2, k3s.RoleServer, true, true},
		{"agent", agentOp, k3s.RoleAgent, false, false},
	} {
		cfg, err := k3s.RenderConfig(tc.op, tc.conntrackRO, tc.overlay)
		if err != nil {
			t.Fatal(err)
		}
		doc := checkKeys(t, tc.role, cfg)
		_, first := tc.op.(k3s.Init)
		_, ci := doc["cluster-init"]
		_, srv := doc["server"]
		_, tf := doc["token-file"]
		if ci != first || srv == first || tf == first {
			t.Errorf("%s: cluster-init only on the first server, server and token-file on every other node:\n%s", tc.name, cfg)
		}
		_, tok := doc["token"]
		_, atok := doc["agent-token"]
		if strings.Contains(string(cfg), "K10") || tok || atok {
			t.Errorf("%s: config.yaml holds a token:\n%s", tc.name, cfg)
		}
		parts = append(parts, steptest.Section("config.yaml, "+tc.name, string(cfg)))
	}
	reg, err := k3s.RenderRegistries(joinS2)
	if err != nil {
		t.Fatal(err)
	}
	var regs struct {
		Mirrors map[string]struct{ Endpoint []string } `yaml:"mirrors"`
		Configs map[string]struct {
			TLS struct {
				InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
			} `yaml:"tls"`
		} `yaml:"configs"`
	}
	if err := yaml.Unmarshal(reg, &regs); err != nil {
		t.Fatal(err)
	}
	if len(regs.Mirrors["quay.io"].Endpoint) != 2 || !regs.Configs["10.30.0.5:5000"].TLS.InsecureSkipVerify {
		t.Errorf("registries.yaml: %+v", regs)
	}
	empty, err := k3s.RenderRegistries(k3s.JoinAgent{Cluster: cluster, Node: agentOp2.Node, Via: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	parts = append(parts, steptest.Section("registries.yaml", string(reg)), steptest.Section("registries.yaml, no mirrors", string(empty)))
	for _, role := range []string{k3s.RoleServer, k3s.RoleAgent} {
		u, err := k3s.RenderUnit(role)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(u), "ExecStart="+k3s.BinPath+" "+role+"\n") {
			t.Errorf("%s unit runs no `k3s %s`:\n%s", role, role, u)
		}
		parts = append(parts, steptest.Section("unit, "+role, string(u)))
	}
	steptest.Golden(t, "rendered-files", parts...)
}

// Spec values are quoted: none can add a key or change the document
// (the ops' validation rejects such values before rendering as well).
func TestRenderHostileValues(t *testing.T) {
	op := agentOp
	hostile := "b\nserver: https://evil.example\n\"x"
	op.Node.Labels = map[string]string{"a": hostile}
	op.Runtime = k3s.Runtime{PauseImage: "reg.example/pause:3.10", Mirrors: map[string][]string{"docker.io": {"https://m.example\"\ninjected: true"}}}
	cfg, err := k3s.RenderConfig(op, false, false)
	if err != nil {
		t.Fatal(err)
	}
	doc := checkKeys(t, k3s.RoleAgent, cfg)
	if s := doc["server"].Value; s != "https://10.30.0.100:6443" {
		t.Errorf("server became %q", s)
	}
	if l := doc["node-label"].Content; len(l) != 1 || l[0].Value != "a="+hostile {
		t.Errorf("node-label did not round-trip: %+v", l)
	}
	reg, err := k3s.RenderRegistries(op)
	if err != nil {
		t.Fatal(err)
	}
	var regs map[string]any
	if err := yaml.Unmarshal(reg, &regs); err != nil || len(regs) != 1 {
		t.Errorf("registries.yaml changed shape: %v %v\n%s", err, regs, reg)
	}
}

func TestConfigDiff(t *testing.T) {
	old, _ := k3s.RenderConfig(agentOp, false, false)
	changed := agentOp
	changed.Cluster.ProxyMode = "ipvs"
	changed.Node.Labels = map[string]string{"tier": "web"}
	want, _ := k3s.RenderConfig(changed, true, false)
	hand := append(append([]byte{}, old...), "token: K10secret::server:abc\n"...)
	var b strings.Builder
	for _, c := range []struct {
		name       string
		have, want []byte
	}{
		{"changed", old, want},
		{"missing", nil, want},
		{"a hand-written token removed", hand, old},
		{"not YAML", []byte("\tno: [yaml"), old},
	} {
		b.WriteString(steptest.Report(k3s.JoinAgent{}, step.Change{Action: step.ActionUpdate, Diff: k3s.ConfigDiff(k3s.ConfigFile, c.have, c.want)}, nil))
		if strings.Contains(b.String(), "K10secret") {
			t.Errorf("%s: the diff shows a token", c.name)
		}
	}
	steptest.Golden(t, "config-diff", b.String())
}
