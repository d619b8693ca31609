package plan

import (
	"testing"

	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// Every kubeadm wait the spec leaves out is health.timeout; one the spec
// sets wins.
func TestKubeadmTimeouts(t *testing.T) {
	got := kubeadmTimeouts(spec.KubeadmTimeouts{EtcdAPICall: "12m", Discovery: "90s"}, "7m")
	want := kube.Timeouts{
		ControlPlaneComponentHealthCheck: "7m0s", KubeletHealthCheck: "7m0s", KubernetesAPICall: "7m0s",
		EtcdAPICall: "12m0s", TLSBootstrap: "7m0s", Discovery: "1m30s",
	}
	if got != want {
		t.Fatalf("kubeadmTimeouts = %+v, want %+v", got, want)
	}
}
