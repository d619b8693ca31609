package kubespray

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "node1 ansible_host=1.2.3.4", want: []string{"node1", "ansible_host=1.2.3.4"}},
		{in: "node1   ansible_host=1.2.3.4  # ip=10.3.0.1", want: []string{"node1", "ansible_host=1.2.3.4"}},
		{in: `n a="b c" d='e "f"' g=h\ i`, want: []string{"n", "a=b c", `d=e "f"`, "g=h i"}},
		{in: `n a="x#y" b=c#d`, want: []string{"n", "a=x#y", "b=c#d"}},
		{in: `n a="unterminated`, err: "unterminated"},
		{in: "# only a comment", want: nil},
	} {
		got, err := splitWords(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseINI(t *testing.T) {
	inv, err := ParseINI([]byte(`
ungrouped1 ansible_host=10.0.0.9
[kube_control_plane]
cp1 ansible_host=10.0.0.1 ip=10.3.0.1
; comment
[etcd:children]
kube_control_plane
[kube_node]
w1
[k8s_cluster:children]
kube_control_plane
kube_node
[k8s_cluster:vars]
kube_version = 1.33.4
note = "two words"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(inv.HostOrder, ","); got != "ungrouped1,cp1,w1" {
		t.Errorf("hosts %s", got)
	}
	if got := strings.Join(inv.Members("etcd"), ","); got != "cp1" {
		t.Errorf("etcd members %s", got)
	}
	if got := strings.Join(inv.Members("k8s_cluster"), ","); got != "cp1,w1" {
		t.Errorf("k8s_cluster members %s", got)
	}
	if got := inv.Hosts["cp1"]["ip"]; got != "10.3.0.1" {
		t.Errorf("cp1 ip %v", got)
	}
	if got := inv.Groups["k8s_cluster"].Vars; got["kube_version"] != "1.33.4" || got["note"] != "two words" {
		t.Errorf("k8s_cluster vars %v", got)
	}
	for _, bad := range []string{"[kube_node\nw1", "[g:weird]\n", "[g:vars]\nnovalue\n", "[g]\nh =x\n"} {
		if _, err := ParseINI([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: err %v, want one naming the line", bad, err)
		}
	}
}

func TestReadGroupVarsPrecedence(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "all/a.yml", "x: from-a\ny: from-a\n")
	write(t, dir, "all/b.yml", "y: from-b\n")
	write(t, dir, "kube_node.yml", "z: 1\n")
	write(t, dir, "README.md", "not: read\n")
	gv, err := ReadGroupVars(dir)
	if err != nil {
		t.Fatal(err)
	}
	if gv["all"]["x"] != "from-a" || gv["all"]["y"] != "from-b" || gv["kube_node"]["z"] != 1 || gv["README"] != nil {
		t.Errorf("group vars %v", gv)
	}
	if gv, err := ReadGroupVars(dir + "/missing"); err != nil || len(gv) != 0 {
		t.Errorf("missing dir: %v, %v", gv, err)
	}
	write(t, dir, "all/c.yml", "x: [unclosed\n")
	if _, err := ReadGroupVars(dir); err == nil || !strings.Contains(err.Error(), "c.yml") {
		t.Errorf("bad YAML: err %v, want one naming the file", err)
	}
}
