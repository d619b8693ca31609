//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKubeadmConfigValidate: every kubeadm config clusterctl renders (init
// and joins; node-local, external and first-control-plane endpoints;
// nftables, ipvs and iptables; cgroup v1 and v2) passes `kubeadm config
// validate` of each Kubernetes version the e2e tier builds. It runs the
// provision/steps/kube test of that name with those binaries, and fails if
// that test skipped or checked fewer configs than it renders. Budget: under
// a minute with the artifacts cached (they are shared with the other
// scenarios).
func TestKubeadmConfigValidate(t *testing.T) {
	skipWithoutKubernetes(t)
	var bins []string
	for _, v := range []string{"", "v1.36.3"} {
		bins = append(bins, filepath.Join(BuildArtifactsVersion(t, v), "bin", "kubeadm"))
	}
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestKubeadmConfigValidate$", "-v", "./provision/steps/kube/")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CLUSTERCTL_KUBEADM_BINARIES="+strings.Join(bins, " "))
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("go test ./provision/steps/kube -run TestKubeadmConfigValidate: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestKubeadmConfigValidate") {
		t.Fatal("TestKubeadmConfigValidate did not pass (skipped?)")
	}
	for _, v := range []string{"v1.37.2", "v1.36.3"} {
		if n := strings.Count(string(out), "kubeadm "+v+" config validate: "); n < 7 {
			t.Errorf("kubeadm %s validated %d configs, want every rendered variant (7)", v, n)
		}
	}
}
