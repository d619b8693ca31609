package kube_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// adminConf is kubeadm's admin.conf, shortened.
const adminConf = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EgREFUQQ==
    server: https://172.31.10.11:6443
  name: e2e
contexts:
- context:
    cluster: e2e
    user: kubernetes-admin
  name: kubernetes-admin@e2e
current-context: kubernetes-admin@e2e
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
`

// kubeconfig is what the merge output says, read back.
type kubeconfig struct {
	Clusters []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server string `yaml:"server"`
			CA     string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Contexts []struct {
		Name    string            `yaml:"name"`
		Context map[string]string `yaml:"context"`
	} `yaml:"contexts"`
	Users []struct {
		Name string         `yaml:"name"`
		User map[string]any `yaml:"user"`
	} `yaml:"users"`
	Current string `yaml:"current-context"`
	Prefs   any    `yaml:"preferences"`
}

func readKubeconfig(t *testing.T, b []byte) kubeconfig {
	t.Helper()
	var k kubeconfig
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return k
}

func TestMergeKubeconfig(t *testing.T) {
	mine := `apiVersion: v1
kind: Config
# my own clusters
clusters:
- name: prod
  cluster: {server: "https://prod.example.net:6443"}
- name: e2e
  cluster: {server: "https://old.example.net:6443"}
contexts:
- name: prod
  context: {cluster: prod, user: me}
current-context: prod
preferences: {colors: true}
users:
- name: me
  user: {token: secret}
`
	for _, tc := range []struct {
		name, existing string
		current        string
		clusters       []string
	}{
		{name: "empty", existing: "", current: "e2e", clusters: []string{"e2e"}},
		{name: "blank", existing: "\n\n", current: "e2e", clusters: []string{"e2e"}},
		{name: "null sections", existing: "apiVersion: v1\nkind: Config\nclusters: null\ncurrent-context: \"\"\n", current: "e2e", clusters: []string{"e2e"}},
		{name: "others kept, same name replaced", existing: mine, current: "prod", clusters: []string{"prod", "e2e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := kube.MergeKubeconfig([]byte(tc.existing), []byte(adminConf), "e2e", "https://172.31.10.11:6443")
			if err != nil {
				t.Fatal(err)
			}
			k := readKubeconfig(t, out)
			var names []string
			for _, c := range k.Clusters {
				names = append(names, c.Name)
				if c.Name == "e2e" && (c.Cluster.Server != "https://172.31.10.11:6443" || c.Cluster.CA != "Q0EgREFUQQ==") {
					t.Errorf("cluster e2e: %+v", c.Cluster)
				}
			}
			if strings.Join(names, " ") != strings.Join(tc.clusters, " ") {
				t.Errorf("clusters %v, want %v", names, tc.clusters)
			}
			if k.Current != tc.current {
				t.Errorf("current context %q, want %q", k.Current, tc.current)
			}
			found := false
			for _, c := range k.Contexts {
				if c.Name == "e2e" {
					found = c.Context["cluster"] == "e2e" && c.Context["user"] == "e2e-admin"
				}
			}
			if !found {
				t.Errorf("no context e2e -> e2e-admin:\n%s", out)
			}
			if tc.existing == mine {
				if !strings.Contains(string(out), "# my own clusters") || !strings.Contains(string(out), "token: secret") || k.Prefs == nil {
					t.Errorf("the operator's own entries were not kept:\n%s", out)
				}
				steptest.Golden(t, "kubeconfig-merged", string(out))
			}
			// Merging again changes nothing.
			again, err := kube.MergeKubeconfig(out, []byte(adminConf), "e2e", "https://172.31.10.11:6443")
			if err != nil || string(again) != string(out) {
				t.Errorf("second merge differs (%v):\n%s\n---\n%s", err, out, again)
			}
		})
	}
	for _, bad := range []string{"- a list", "just text", "clusters: {a: b}"} {
		if _, err := kube.MergeKubeconfig([]byte(bad), []byte(adminConf), "e2e", "https://x:6443"); err == nil {
			t.Errorf("merged into %q", bad)
		}
	}
	if _, err := kube.MergeKubeconfig(nil, []byte("clusters: []"), "e2e", "https://x:6443"); err == nil {
		t.Error("merged an admin.conf without a cluster")
	}
}

func TestKubeconfigApply(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "config")
	t.Setenv("KUBECONFIG", p+string(os.PathListSeparator)+filepath.Join(dir, "other"))
	op := kube.Kubeconfig{Cluster: "e2e", Endpoint: "172.31.10.11:6443"}
	ch, err := op.Check(context.Background(), step.Target{})
	if err != nil || ch.Action != step.ActionRead || ch.Note != "merged into "+p {
		t.Fatalf("Check: %+v %v", ch, err)
	}
	h := hosttest.NewFake(t, "h1")
	h.SetFile(kube.AdminConf, []byte(adminConf), 0o600)
	if err := op.Apply(context.Background(), step.Target{Host: h}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %v, %v: want mode 0600", st, err)
	}
	if d, _ := os.Stat(filepath.Dir(p)); d.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %o, want 700", d.Mode().Perm())
	}
	// Unchanged content is not rewritten.
	old := time.Unix(1, 0)
	os.Chtimes(p, old, old)
	if err := op.Apply(context.Background(), step.Target{Host: h}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); !st.ModTime().Equal(old) {
		t.Error("an unchanged kubeconfig was rewritten")
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if bad := (kube.Kubeconfig{Cluster: "e2e", Endpoint: "no-port"}); bad.Apply(context.Background(), step.Target{Host: h}) == nil {
		t.Error("an endpoint without port was accepted")
	}
}
