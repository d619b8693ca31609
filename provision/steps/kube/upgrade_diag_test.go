package kube

import (
	"context"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

// An API server that does not come back after the kubelet restart is
// reported with what the host says about its static pods.
func TestWaitAPIStableDiagnosis(t *testing.T) {
	h := hosttest.NewFake(t, "h1")
	h.ExpectFunc("wait", func(l string) bool { return strings.HasPrefix(l, "ok=0; end=") }).
		Stderr("The connection to the server 172.31.15.11:6443 was refused\n").Exit(1)
	h.ExpectFunc("diagnosis", func(l string) bool { return strings.Contains(l, "/var/log/pods/kube-system_${c}-*") }).
		Stdout("== /var/log/pods/kube-system_etcd-h1_x/etcd/0.log\netcd: mvcc: database space exceeded\n== kubelet\nE1204 kubelet: pod kube-apiserver-h1 CrashLoopBackOff\n")
	err := waitAPIStable(context.Background(), h, 300)
	if err == nil || !strings.Contains(err.Error(), "did not answer steadily") || !strings.Contains(err.Error(), "database space exceeded") ||
		!strings.Contains(err.Error(), "CrashLoopBackOff") {
		t.Errorf("error %v", err)
	}
}
