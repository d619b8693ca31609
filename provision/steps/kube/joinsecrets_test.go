package kube_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

// listSecrets is the command DeleteJoinSecrets reads kube-system's secrets
// with: names, types and token descriptions only, never a secret's value.
const listSecrets = `if [ ! -e /etc/kubernetes/admin.conf ]; then echo @@no-cluster; exit 0; fi; ` +
	`kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=10s -n kube-system get secrets -o ` +
	`'jsonpath={range .items[*]}{.metadata.name}{" "}{.type}{" "}{.data.description}{"\n"}{end}'`

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// kubeSystemSecrets is kube-system after an apply that initialised the
// cluster and joined h4 (its token's deletion failed), with tokens and
// secrets that are not clusterctl's.
var kubeSystemSecrets = strings.Join([]string{
	"bootstrap-token-x7k2qa bootstrap.kubernetes.io/token " + b64("clusterctl kube/init; every join gets its own token"),
	"bootstrap-token-h4join bootstrap.kubernetes.io/token " + b64("clusterctl join of h4"),
	"bootstrap-token-mine01 bootstrap.kubernetes.io/token " + b64("the operator's own token"),
	"bootstrap-token-proxy1 bootstrap.kubernetes.io/token " + b64("Proxy for managing TTL for the kubeadm-certs secret"),
	"bootstrap-token-nodesc bootstrap.kubernetes.io/token ",
	"kubeadm-certs Opaque ",
	"bootstrap-token-BAD;rm bootstrap.kubernetes.io/token " + b64("clusterctl join of $(reboot)"),
	"clusterctl-state-key Opaque ",
	"",
}, "\n")

func TestDeleteJoinSecrets(t *testing.T) {
	ctx := context.Background()
	op := kube.DeleteJoinSecrets{}
	if ch, err := op.Check(ctx, step.Target{}); err != nil || ch.Action != step.ActionDelete {
		t.Errorf("offline Check: %s", steptest.Report(op, ch, err))
	}

	// Before kubeadm init: the step will delete what init makes.
	h := newNode(t, "h1")
	h.Expect(listSecrets).Stdout("@@no-cluster\n")
	tg := step.Target{Host: h, Facts: freshFacts("h1"), Redactor: host.NewRedactor()}
	if ch, err := op.Check(ctx, tg); err != nil || ch.Action != step.ActionDelete {
		t.Errorf("Check before init: %s", steptest.Report(op, ch, err))
	}

	// After the joins: clusterctl's tokens and the uploaded certificates
	// go, by name, with --ignore-not-found so a re-run converges.
	h = newNode(t, "h1")
	tg.Host = h
	h.Expect(listSecrets).Stdout(kubeSystemSecrets).Times(2)
	h.Expect("kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=30s -n kube-system delete secret --ignore-not-found " +
		"bootstrap-token-h4join bootstrap-token-x7k2qa kubeadm-certs")
	ch, err := op.Check(ctx, tg)
	if err != nil || ch.Action != step.ActionDelete || len(ch.Diff) != 3 {
		t.Fatalf("Check after the joins: %s", steptest.Report(op, ch, err))
	}
	if err := op.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "join-secrets", steptest.Section("check", steptest.Report(op, ch, nil)), steptest.Section("transcript", h.Transcript()))

	// Nothing of clusterctl's left: no change.
	h = newNode(t, "h1")
	tg.Host = h
	h.Expect(listSecrets).Stdout("bootstrap-token-mine01 bootstrap.kubernetes.io/token " + b64("the operator's own token") + "\n").Times(2)
	if ch, err := op.Check(ctx, tg); err != nil || ch.Action != step.ActionNone {
		t.Errorf("Check when clean: %s", steptest.Report(op, ch, err))
	}
	if err := op.Apply(ctx, tg); err != nil {
		t.Errorf("Apply when clean: %v", err)
	}
}
