package kube

import (
	"context"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

// A wait that runs out names what it waited for, its deadline and the
// last answer (the show command's stderr).
func TestWaitNodeTimeoutSaysWhat(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("wait for the node", func(l string) bool {
		return strings.HasPrefix(l, "{ end=$(( $(date +%s) + 420 )); until kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=5s get node h3 -o name >/dev/null 2>&1;")
	}).Stderr(`Error from server (NotFound): nodes "h3" not found` + "\n").Exit(1)
	err := waitNode(context.Background(), h, "h3", Timeouts{KubernetesAPICall: "7m0s"}.apiSeconds())
	if err == nil {
		t.Fatal("waitNode succeeded on a node that never registered")
	}
	for _, want := range []string{"wait 420s for node h3 to register after kubeadm join", `nodes "h3" not found`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
