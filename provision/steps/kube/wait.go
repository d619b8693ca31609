package kube

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
)

// waitUntil runs check on h every 2 seconds until it succeeds or secs
// pass; then show runs once more, so the error says what was awaited and
// the last answer. Every wait of a kubeadm step goes through here, its
// deadline from the cluster's timeouts (health.timeout by default).
func waitUntil(ctx context.Context, h host.Host, what, check, show string, secs int) error {
	line := host.PollLine(check, show, time.Duration(secs)*time.Second, 2*time.Second)
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("wait %ds for %s: %w", secs, what, err)
	}
	return nil
}

// WaitAPI waits up to secs for the API server to answer /readyz through
// admin.conf on the control plane h.
func WaitAPI(ctx context.Context, h host.Host, secs int) error {
	get := Kubectl + " --request-timeout=5s get --raw=/readyz"
	return waitUntil(ctx, h, "the API server on "+h.Name()+" ("+get+")", get+" >/dev/null 2>&1", get+" >&2", secs)
}

// waitNode waits up to secs until the cluster lists the node: the kubelet
// registers it right after kubeadm join returns, later on a loaded host.
func waitNode(ctx context.Context, cp host.Host, name string, secs int) error {
	get := Kubectl + " --request-timeout=5s get node " + host.Quote(name) + " -o name"
	return waitUntil(ctx, cp, "node "+name+" to register after kubeadm join", get+" >/dev/null 2>&1", get+" >&2", secs)
}
