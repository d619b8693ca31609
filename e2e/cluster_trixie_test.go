//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClusterTrixie: the TestCluster bring-up on Debian 13 (trixie) hosts:
// the bundle's containerd 2 and systemd 257 (on this machine's cgroup v1),
// Kubernetes 1.37.2 with kube-proxy in nftables mode; nodes Ready, NodePort
// on every node, pod to pod across nodes, a second apply changes nothing.
// Budget: about 6 min under load.
func TestClusterTrixie(t *testing.T) {
	skipWithoutKubernetes(t)
	t.Parallel()
	c := startClusterOn(t, "trixie", 3, 1, "172.31.25", "ct25", "root", nil)
	if got := c.e.sh(2, ". /etc/os-release && echo $VERSION_ID $(containerd --version | cut -d' ' -f3)"); got != "13 "+containerdVersion {
		t.Fatalf("h2 runs %q, want Debian 13 with containerd %s", got, containerdVersion)
	}
	c.verify(1, 3)
	c.checkPodToPod()
	c.checkProxyMode("nftables")
	c.secondApply()
}

// withoutDebs is the build's binaries, CNI plugins, images and versions.env
// without its (bookworm) packages, hard-linked into a temporary directory.
func withoutDebs(t *testing.T, art string) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"bin", "cni", "images"} {
		entries, err := os.ReadDir(filepath.Join(art, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			linkOrCopy(t, filepath.Join(art, sub, e.Name()), filepath.Join(dir, sub, e.Name()))
		}
	}
	linkOrCopy(t, filepath.Join(art, "versions.env"), filepath.Join(dir, "versions.env"))
	return dir
}
