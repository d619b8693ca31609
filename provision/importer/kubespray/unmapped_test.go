package kubespray

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func convertYAML(t *testing.T, inventory string, gv GroupVars) *Result {
	t.Helper()
	inv, err := ParseYAML([]byte(inventory))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(inv, gv, Options{Name: "t", Source: "hosts.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

const oneCP = "all:\n  children:\n    kube_control_plane:\n      hosts:\n        cp1: {ip: 10.0.0.1}\n    etcd:\n      hosts:\n        cp1:\n        e1: {ip: 10.0.0.9}\n    kube_node:\n      hosts:\n        w1: {ip: 10.0.0.2}\n"

// What the spec cannot say is listed, with the reason, and the spec written
// still passes the loader.
func TestConvertUnmapped(t *testing.T) {
	res := convertYAML(t, oneCP, GroupVars{"k8s_cluster": {
		"kube_version":             "v1.28.2",
		"kube_proxy_mode":          "userspace",
		"kube_pods_subnet":         "{{ my_subnet }}",
		"container_manager":        "crio",
		"etcd_deployment_type":     "kubeadm",
		"ansible_become_password":  "hunter2",
		"containerd_registry_auth": []any{map[string]any{"registry": "r", "password": "s3cret"}},
	}})
	got := unmappedText(res)
	for _, want := range []string{
		`kube_version: v1.28.2 is outside the versions clusterctl supports for kubeadm`,
		`kube_network_plugin: "calico" (kube_network_plugin unset: kubespray's default): clusterctl installs flannel only`,
		`kube_proxy_mode: "userspace"`,
		`kube_pods_subnet: "{{ my_subnet }}" is a Jinja template`,
		`container_manager: "crio"`,
		`group etcd: e1 is not in kube_control_plane: clusterctl has stacked etcd only`,
		`ansible_become_password: a secret`,
		`containerd_registry_auth: no equivalent`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("unmapped list lacks %q:\n%s", want, got)
		}
	}
	for _, secret := range []string{"hunter2", "s3cret"} {
		if strings.Contains(got, secret) || strings.Contains(string(res.Spec), secret) {
			t.Errorf("secret %q shown", secret)
		}
	}
	if strings.Contains(got, "etcd_deployment_type") {
		t.Errorf("etcd_deployment_type kubeadm is stacked etcd, reported anyway:\n%s", got)
	}
	if strings.Contains(string(res.Spec), `"e1"`) || strings.Contains(string(res.Spec), "e1:") {
		t.Errorf("etcd-only host in the spec:\n%s", res.Spec)
	}
	c := loadSpec(t, res.Spec)
	if c.Kubernetes.Version != DefaultKubernetesVersion || c.Network.CNI != "none" || c.Network.PodCIDR != "10.244.0.0/16" {
		t.Errorf("version %s cni %s podCIDR %s", c.Kubernetes.Version, c.Network.CNI, c.Network.PodCIDR)
	}
}

// Hostile values are quoted into the spec verbatim or reported, never
// interpreted: the loader reads back exactly what the inventory said.
func TestConvertHostileValues(t *testing.T) {
	key := "~/.ssh/a\"b\\c\n\\(evil)\"}\nhosts: x: {"
	inv := "all:\n  vars:\n    ansible_ssh_private_key_file: " + yamlQuote(key) + "\n" +
		"  children:\n    kube_control_plane:\n      hosts:\n        cp1:\n          ip: 10.0.0.1\n" +
		"          ansible_ssh_private_key_file: " + yamlQuote(key+"2") + "\n"
	res := convertYAML(t, inv, GroupVars{"all": {
		"cluster_name": "evil\"\n}",
		"kube_version": "1.33.4\"\nx: \"",
		"ansible_user": "root\"; rm -rf /",
		"containerd_registries_mirrors": []any{map[string]any{"prefix": "docker.io", "mirrors": []any{
			map[string]any{"host": "https://m.example\"\\(x)"}, map[string]any{"host": "https://ok.example"}}}},
	}})
	c := loadSpec(t, res.Spec)
	if c.SSH.IdentityFile != key {
		t.Errorf("identityFile %q, want %q", c.SSH.IdentityFile, key)
	}
	if got := c.Hosts["cp1"].SSH.IdentityFile; got != key+"2" {
		t.Errorf("cp1 identityFile %q", got)
	}
	if c.Kubernetes.ClusterDomain != "cluster.local" || c.SSH.User != "root" || strings.Join(c.Runtime.Mirrors["docker.io"], ",") != "https://ok.example" {
		t.Errorf("hostile values written: domain %q user %q mirrors %v", c.Kubernetes.ClusterDomain, c.SSH.User, c.Runtime.Mirrors)
	}
	got := unmappedText(res)
	for _, want := range []string{"cluster_name: \"evil\\\"\\n}\"", "kube_version: \"1.33.4\\\"\\nx: \\\"\"", "ansible_user: \"root\\\"; rm -rf /\"", "mirrors[0]: host"} {
		if !strings.Contains(got, want) {
			t.Errorf("unmapped list lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "\n") != len(res.Unmapped) {
		t.Errorf("a value broke a line of the list:\n%s", got)
	}
}

func yamlQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// An inventory no faithful spec can come from is an error naming the host.
func TestConvertErrors(t *testing.T) {
	for _, tc := range []struct{ inv, want string }{
		{"all:\n  children:\n    kube_control_plane:\n      hosts:\n        cp1: {ansible_host: cp1.example.org}\n", "host cp1: no IP address"},
		{"all:\n  children:\n    kube_control_plane:\n      hosts:\n        Node_1: {ip: 10.0.0.1}\n", `host "Node_1": the spec names hosts`},
		{"all:\n  children:\n    kube_control_plane:\n      hosts:\n        \"node[1:3]\": {ip: 10.0.0.1}\n", "expand host ranges"},
		{"all:\n  hosts:\n    h1: {ip: 10.0.0.1}\n", "no hosts in groups kube_control_plane or kube_node"},
	} {
		inv, err := ParseYAML([]byte(tc.inv))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Convert(inv, nil, Options{Name: "t"}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.inv, err, tc.want)
		}
	}
}
