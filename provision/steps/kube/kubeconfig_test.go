package kube_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
			out, dropped, err := kube.MergeKubeconfig([]byte(tc.existing), []byte(adminConf), "e2e", "https://172.31.10.11:6443")
			if err != nil {
				t.Fatal(err)
			}
			if len(dropped) > 0 {
				t.Errorf("dropped %v from kubeadm's own admin.conf", dropped)
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
			again, _, err := kube.MergeKubeconfig(out, []byte(adminConf), "e2e", "https://172.31.10.11:6443")
			if err != nil || string(again) != string(out) {
				t.Errorf("second merge differs (%v):\n%s\n---\n%s", err, out, again)
			}
		})
	}
	for _, bad := range []string{"- a list", "just text", "clusters: {a: b}"} {
		if _, _, err := kube.MergeKubeconfig([]byte(bad), []byte(adminConf), "e2e", "https://x:6443"); err == nil {
			t.Errorf("merged into %q", bad)
		}
	}
	if _, _, err := kube.MergeKubeconfig(nil, []byte("clusters: []"), "e2e", "https://x:6443"); err == nil {
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
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
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

// hostileAdminConf is an admin.conf from a control plane an attacker owns:
// every field kubectl would act on beyond the CA, client certificate, key
// and token (credential plugins, proxies, local files, extensions).
const hostileAdminConf = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EgREFUQQ==
    certificate-authority: /etc/passwd
    server: https://evil.example.net:6443
    proxy-url: socks5://evil.example.net:1080
    insecure-skip-tls-verify: true
    tls-server-name: evil.example.net
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: evil}
  name: e2e
contexts:
- context: {cluster: e2e, user: kubernetes-admin, namespace: evil}
  name: kubernetes-admin@e2e
current-context: kubernetes-admin@e2e
kind: Config
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
    token: c2VjcmV0LXRva2Vu
    client-certificate: /home/op/.ssh/id_ed25519
    client-key: /home/op/.ssh/id_ed25519
    tokenFile: /home/op/.aws/credentials
    username: admin
    password: hunter2
    as: system:admin
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: sh
      args: ["-c", "touch /tmp/pwned"]
    auth-provider:
      name: oidc
      config: {cmd-path: /bin/sh}
    extensions:
    - name: evil
      extension: {x: y}
`

// TestMergeKubeconfigAllowlist: only the CA data, client certificate, key
// and token of a host's admin.conf reach the operator's kubeconfig; every
// other field is dropped and named, without its value.
func TestMergeKubeconfigAllowlist(t *testing.T) {
	out, dropped, err := kube.MergeKubeconfig(nil, []byte(hostileAdminConf), "e2e", "https://172.31.10.11:6443")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Clusters []struct {
			Cluster map[string]any `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			User map[string]any `yaml:"user"`
		} `yaml:"users"`
	}
	if err := yaml.Unmarshal(out, &k); err != nil {
		t.Fatal(err)
	}
	cluster, user := k.Clusters[0].Cluster, k.Users[0].User
	if len(cluster) != 2 || cluster["server"] != "https://172.31.10.11:6443" || cluster["certificate-authority-data"] != "Q0EgREFUQQ==" {
		t.Errorf("cluster %v, want only server and certificate-authority-data", cluster)
	}
	if len(user) != 3 || user["client-certificate-data"] != "Q0VSVA==" || user["client-key-data"] != "S0VZ" || user["token"] != "c2VjcmV0LXRva2Vu" {
		t.Errorf("user %v, want only client-certificate-data, client-key-data, token", user)
	}
	for _, bad := range []string{"exec", "touch", "auth-provider", "cmd-path", "proxy-url", "socks5", "tokenFile", "client-certificate:", "client-key:",
		"certificate-authority:", "insecure", "tls-server-name", "extensions", "password", "hunter2", "username", "as:", "evil", "namespace"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("merged kubeconfig holds %q:\n%s", bad, out)
		}
	}
	want := []string{"cluster.certificate-authority", "cluster.extensions", "cluster.insecure-skip-tls-verify", "cluster.proxy-url", "cluster.tls-server-name",
		"user.as", "user.auth-provider", "user.client-certificate", "user.client-key", "user.exec", "user.extensions", "user.password", "user.tokenFile", "user.username"}
	if strings.Join(dropped, " ") != strings.Join(want, " ") {
		t.Errorf("dropped %v\nwant    %v", dropped, want)
	}
	// The warning names fields, never values.
	w := kube.DroppedFieldsWarning("/etc/kubernetes/admin.conf on h1", dropped)
	for _, f := range []string{"user.exec", "user.auth-provider", "user.tokenFile", "cluster.proxy-url", "/etc/kubernetes/admin.conf on h1"} {
		if !strings.Contains(w, f) {
			t.Errorf("warning does not name %s: %s", f, w)
		}
	}
	for _, secret := range []string{"hunter2", "S0VZ", "c2VjcmV0LXRva2Vu", "touch", "evil"} {
		if strings.Contains(w, secret) {
			t.Errorf("warning shows %q: %s", secret, w)
		}
	}
	// Allowed names with values of the wrong type are dropped too, and a
	// user left without credentials is refused.
	odd := strings.Replace(hostileAdminConf, "client-key-data: S0VZ", "client-key-data: {a: b}", 1)
	if _, dropped, err := kube.MergeKubeconfig(nil, []byte(odd), "e2e", "https://x:6443"); err != nil || !slices.Contains(dropped, "user.client-key-data") {
		t.Errorf("a mapping as client-key-data: dropped %v, %v", dropped, err)
	}
	if _, _, err := kube.MergeKubeconfig(nil, []byte("clusters: [{cluster: {server: x}}]\nusers: [{user: {exec: {command: sh}}}]\n"), "e2e", "https://x:6443"); err == nil {
		t.Error("merged a user with nothing but an exec plugin")
	}
	// Hostile key names are shown quoted (no terminal escapes), and a flood
	// of them is cut short.
	many := "clusters: [{cluster: {certificate-authority-data: Q0E=}}]\nusers:\n- user:\n    token: dG9r\n    \"\\e[2Jx\": 1\n"
	for i := range 50 {
		many += fmt.Sprintf("    k%02d: 1\n", i)
	}
	_, dropped, err = kube.MergeKubeconfig(nil, []byte(many), "e2e", "https://x:6443")
	if err != nil {
		t.Fatal(err)
	}
	w = kube.DroppedFieldsWarning("admin.conf", dropped)
	if strings.Contains(w, "\x1b") || !strings.Contains(w, `user."\x1b[2Jx"`) || !strings.Contains(w, "and 31 more") {
		t.Errorf("warning: %q", w)
	}
}

// TestKubeconfigApplyDropsHostFields: the apply step merges only the
// allowed fields and hands the names of the others to Target.Warn.
func TestKubeconfigApplyDropsHostFields(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config")
	t.Setenv("KUBECONFIG", p)
	h := hosttest.NewFake(t, "h1")
	h.SetFile(kube.AdminConf, []byte(hostileAdminConf), 0o600)
	var warnings []string
	op := kube.Kubeconfig{Cluster: "e2e", Endpoint: "172.31.10.11:6443"}
	if err := op.Apply(context.Background(), step.Target{Host: h, Warn: func(m string) { warnings = append(warnings, m) }}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "exec") || strings.Contains(string(b), "auth-provider") || !strings.Contains(string(b), "client-key-data: S0VZ") {
		t.Errorf("merged:\n%s", b)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "user.exec, ") || !strings.Contains(warnings[0], kube.AdminConf) {
		t.Errorf("warnings %q", warnings)
	}
}
