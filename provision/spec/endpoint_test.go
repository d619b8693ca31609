package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// specWith writes a spec with n control planes (and one worker) and the
// given kubernetes.controlPlaneEndpoint ("" for none), and loads it.
func specWith(t *testing.T, n int, endpoint string) (*Cluster, error) {
	t.Helper()
	var b strings.Builder
	b.WriteString("package clusterctl\n\ncluster: {\n\tname: \"t\"\n\tkubernetes: {\n\t\tversion: \"1.37.2\"\n")
	if endpoint != "" {
		fmt.Fprintf(&b, "\t\tcontrolPlaneEndpoint: %s\n", endpoint)
	}
	b.WriteString("\t}\n\thosts: {\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "\t\tcp%d: {address: \"192.168.1.%d\", roles: [\"control-plane\"]}\n", i, 10+i)
	}
	b.WriteString("\t\tw1: {address: \"192.168.1.50\", roles: [\"worker\"]}\n\t}\n}\n")
	p := filepath.Join(t.TempDir(), "cluster.cue")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load([]string{p}, LoadOptions{})
}

// Control-plane counts and endpoints: odd counts only, an endpoint from two
// control planes on, and each endpoint mode's default port (node-local
// cannot share the API servers' 6443 on control planes).
func TestControlPlaneEndpointRules(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cps      int
		endpoint string
		mode     string
		port     int
		err      string // substring of the error; "" = valid
	}{
		{name: "one control plane needs no endpoint", cps: 1},
		{name: "one control plane, node-local", cps: 1, endpoint: `mode: "node-local"`, mode: "node-local", port: 7443},
		{name: "three, node-local default port", cps: 3, endpoint: `mode: "node-local"`, mode: "node-local", port: 7443},
		{name: "three, node-local own port", cps: 3, endpoint: `{mode: "node-local", port: 16443}`, mode: "node-local", port: 16443},
		{name: "three, external default port", cps: 3, endpoint: `address: "192.168.1.100"`, mode: "external", port: 6443},
		{name: "five, external own port", cps: 5, endpoint: `{address: "lb.example.org", port: 443}`, mode: "external", port: 443},
		{name: "three without endpoint", cps: 3, err: "controlPlaneEndpoint: required with 3 control planes"},
		{name: "two", cps: 2, endpoint: `mode: "node-local"`, err: "2 control planes (cp1, cp2)"},
		{name: "four", cps: 4, endpoint: `mode: "node-local"`, err: "4 control planes (cp1, cp2, cp3, cp4)"},
		{name: "node-local on 6443", cps: 3, endpoint: `{mode: "node-local", port: 6443}`, err: "the API server holds port 6443"},
		{name: "external without address", cps: 3, endpoint: `mode: "external"`, err: "address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := specWith(t, tc.cps, tc.endpoint)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ep := c.Kubernetes.ControlPlaneEndpoint
			switch {
			case tc.mode == "" && ep != nil:
				t.Errorf("endpoint %+v, want none", ep)
			case tc.mode != "" && (ep == nil || ep.Mode != tc.mode || ep.Port != tc.port):
				t.Errorf("endpoint %+v, want mode %s port %d", ep, tc.mode, tc.port)
			}
		})
	}
}
