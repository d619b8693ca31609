package cli

import (
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/backup"
	"github.com/clusterctl/clusterctl/provision/spec"
)

func TestBackupFits(t *testing.T) {
	c := &spec.Cluster{Name: "e2e", Digest: "d2", Kubernetes: spec.Kubernetes{Distribution: "kubeadm", Version: "1.37.2"}}
	base := backup.Metadata{Cluster: "e2e", SpecDigest: "d2", Distribution: "kubeadm", KubernetesVersion: "1.37.2"}
	for _, tc := range []struct {
		name   string
		mod    func(m *backup.Metadata)
		force  bool
		err    string
		warned string
	}{
		{name: "same"},
		{name: "spec changed", mod: func(m *backup.Metadata) { m.SpecDigest = "d1" }, warned: "the spec changed since the backup"},
		{name: "patch", mod: func(m *backup.Metadata) { m.KubernetesVersion = "1.37.1" }, warned: "the backup is of Kubernetes 1.37.1, the spec wants 1.37.2"},
		{name: "minor", mod: func(m *backup.Metadata) { m.KubernetesVersion = "1.33.13" }, err: "another minor version"},
		{name: "other cluster", mod: func(m *backup.Metadata) { m.Cluster = "prod" }, err: `restore refused: the backup is of cluster "prod", the spec describes "e2e"; pass --force`},
		{name: "other cluster forced", mod: func(m *backup.Metadata) { m.Cluster = "prod" }, force: true, warned: `the backup is of cluster "prod"`},
		{name: "distribution", mod: func(m *backup.Metadata) { m.Distribution = "k3s" }, err: "the backup is of a k3s cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base
			if tc.mod != nil {
				tc.mod(&m)
			}
			warnings, err := backupFits(c, m, tc.force)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(warnings, "\n")
			if (tc.warned == "") != (all == "") || !strings.Contains(all, tc.warned) {
				t.Errorf("warnings %q, want %q", all, tc.warned)
			}
		})
	}
}
