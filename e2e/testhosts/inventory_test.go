package testhosts

import (
	"path/filepath"
	"testing"

	"github.com/clusterctl/clusterctl/provision/spec"
)

func TestInventory(t *testing.T) {
	c := &Cluster{
		Hosts: []Host{
			{Name: "h1", Index: 1, Addr: "172.31.7.11"},
			{Name: "h2", Index: 2, Addr: "172.31.7.12"},
			{Name: "h3", Index: 3, Addr: "172.31.7.13"},
		},
		KeyFile:    "/c/keys/id_ed25519",
		KnownHosts: "/c/runs/ct3/known_hosts",
	}
	tests := []struct {
		name string
		opt  InventoryOptions
		want string
	}{
		{"defaults", InventoryOptions{}, `package clusterctl

cluster: {
	name: "local"
	kubernetes: {version: "1.37.2", distribution: "kubeadm"}
	ssh: {user: "root", identityFile: "/c/keys/id_ed25519", knownHostsFile: "/c/runs/ct3/known_hosts"}
	hosts: {
		h1: {address: "172.31.7.11", roles: ["control-plane"]}
		h2: {address: "172.31.7.12", roles: ["worker"]}
		h3: {address: "172.31.7.13", roles: ["worker"]}
	}
}
`},
		{"ha", InventoryOptions{Name: "ha \"x\"", User: "tester", ControlPlanes: 3}, `package clusterctl

cluster: {
	name: "ha \"x\""
	kubernetes: {version: "1.37.2", distribution: "kubeadm", controlPlaneEndpoint: mode: "node-local"}
	ssh: {user: "tester", identityFile: "/c/keys/id_ed25519", knownHostsFile: "/c/runs/ct3/known_hosts"}
	hosts: {
		h1: {address: "172.31.7.11", roles: ["control-plane"]}
		h2: {address: "172.31.7.12", roles: ["control-plane"]}
		h3: {address: "172.31.7.13", roles: ["control-plane"]}
	}
}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Inventory(tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	if _, err := c.Inventory(InventoryOptions{ControlPlanes: 4}); err == nil {
		t.Error("4 control planes for 3 hosts: want error")
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Setenv("TESTHOSTS_NET", "")
	t.Setenv("TESTHOSTS_PREFIX", "")
	t.Setenv("CLUSTERCTL_CACHE", "/x")
	o, err := Options{Count: 3}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Net != "172.31.0" || o.Prefix != "th" || o.CacheDir != "/x/testhosts" {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []Options{
		{Count: 1, Prefix: "toolongprefix"}, {Count: 1, Prefix: "ct-3"}, {Count: 1, Prefix: "3ct"},
		{Count: 1, Net: "172.31"}, {Count: 1, Net: "172.31.256"}, {Count: 100},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v: want error", bad)
		}
	}
}

// The spec the harness writes is one clusterctl accepts.
func TestInventoryLoads(t *testing.T) {
	c := &Cluster{KeyFile: "/k", KnownHosts: "/kh", Hosts: []Host{{Name: "h1", Index: 1, Addr: "172.31.7.11"}, {Name: "h2", Index: 2, Addr: "172.31.7.12"}, {Name: "h3", Index: 3, Addr: "172.31.7.13"}}}
	for _, cps := range []int{1, 3} {
		dir := t.TempDir()
		if err := c.WriteInventory(filepath.Join(dir, "cluster.cue"), InventoryOptions{ControlPlanes: cps}); err != nil {
			t.Fatal(err)
		}
		got, err := spec.Load([]string{dir}, spec.LoadOptions{})
		if err != nil {
			t.Fatalf("%d control planes: %v", cps, err)
		}
		if len(got.ControlPlanes()) != cps {
			t.Fatalf("%d control planes decoded, want %d", len(got.ControlPlanes()), cps)
		}
	}
}
