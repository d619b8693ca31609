package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostPrep.etcHosts: the default keeps today's block of every host; the
// older boolean form keeps its meaning; a host may override the cluster.
func TestEtcHostsMode(t *testing.T) {
	for _, tc := range []struct {
		name, cluster, host string
		want, wantHost      EtcHostsMode
	}{
		{name: "default", want: EtcHostsAll, wantHost: EtcHostsAll},
		{name: "all", cluster: `"all"`, want: EtcHostsAll, wantHost: EtcHostsAll},
		{name: "control-planes", cluster: `"control-planes"`, want: EtcHostsControlPlanes, wantHost: EtcHostsControlPlanes},
		{name: "none", cluster: `"none"`, want: EtcHostsNone, wantHost: EtcHostsNone},
		{name: "unmanaged", cluster: `"unmanaged"`, want: EtcHostsUnmanaged, wantHost: EtcHostsUnmanaged},
		{name: "true is all", cluster: `true`, want: EtcHostsAll, wantHost: EtcHostsAll},
		{name: "false is unmanaged", cluster: `false`, want: EtcHostsUnmanaged, wantHost: EtcHostsUnmanaged},
		{name: "host override", cluster: `"control-planes"`, host: `"none"`, want: EtcHostsControlPlanes, wantHost: EtcHostsNone},
		{name: "host override bool", host: `false`, want: EtcHostsAll, wantHost: EtcHostsUnmanaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "package clusterctl\n\ncluster: {\n\tname: \"t\"\n\tkubernetes: version: \"1.37.2\"\n"
			if tc.cluster != "" {
				src += "\thostPrep: etcHosts: " + tc.cluster + "\n"
			}
			w1 := `w1: {address: "192.168.1.11", roles: ["worker"]`
			if tc.host != "" {
				w1 += ", hostPrep: etcHosts: " + tc.host
			}
			src += "\thosts: {\n\t\tcp1: {address: \"192.168.1.10\", roles: [\"control-plane\"]}\n\t\t" + w1 + "}\n\t}\n}\n"
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "cluster.cue"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load([]string{dir}, LoadOptions{})
			if err != nil {
				t.Fatalf("load:\n%s\n%v", src, err)
			}
			if got := c.HostPrepFor("cp1").EtcHosts; got != tc.want {
				t.Errorf("cp1 etcHosts = %q, want %q", got, tc.want)
			}
			if got := c.HostPrepFor("w1").EtcHosts; got != tc.wantHost {
				t.Errorf("w1 etcHosts = %q, want %q", got, tc.wantHost)
			}
		})
	}
}

// The modes the boolean had keep its canonical JSON, so upgrading clusterctl
// does not change the digest of an existing spec; every mode reads back.
func TestEtcHostsModeJSON(t *testing.T) {
	for _, m := range []EtcHostsMode{EtcHostsAll, EtcHostsControlPlanes, EtcHostsNone, EtcHostsUnmanaged} {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back EtcHostsMode
		if err := json.Unmarshal(b, &back); err != nil || back != m {
			t.Errorf("%q -> %s -> %q, %v", m, b, back, err)
		}
	}
	if b, _ := json.Marshal(HostPrep{EtcHosts: EtcHostsAll}); !strings.Contains(string(b), `"etcHosts":true`) {
		t.Errorf("all encodes as %s, want the boolean it was", b)
	}
}
