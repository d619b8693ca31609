package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// workerFiles are what kubeadm join leaves on a worker; kubelet.conf is
// written last, once the kubelet has its client certificate.
var workerFiles = []string{KubeletConf, BootstrapKubeletConf, CACert, "/var/lib/kubelet/config.yaml"}

// joiner is what worker and control-plane joins share.
type joiner struct {
	cluster      Cluster
	node         Node
	via          string // the control plane that issues the credentials
	controlPlane bool
}

func (j joiner) validate() error {
	if j.via == "" {
		return errors.New("join: no control plane to join through (via)")
	}
	return errors.Join(j.cluster.validate(), j.node.validate())
}

func (j joiner) files() []string {
	if j.controlPlane {
		return append([]string{KubeletConf}, controlPlaneFiles...)
	}
	return workerFiles
}

// joinState is what a node's files and the cluster say about its join.
type joinState int

const (
	joinFresh  joinState = iota // nothing of kubeadm: join
	joinMember                  // joined: nothing to do
	joinHalf                    // a worker of this cluster whose join stopped midway: reset, then join
)

// joined says whether the node is fresh, a member, or a worker left
// half-joined by an earlier join of this cluster (why says what was
// found). A half-joined control plane, or a host whose CA is another
// cluster's, is an error saying how to recover: clusterctl resets only a
// worker it can prove was joining this cluster. Membership is asked of
// the first control plane only when the node's files say it joined.
func (j joiner) joined(ctx context.Context, t step.Target) (state joinState, why string, err error) {
	name := j.node.Name
	st, err := probeNode(ctx, t.Host, j.files(), false)
	if err != nil {
		return joinFresh, "", err
	}
	if st.fresh() {
		return joinFresh, "", nil
	}
	present, missing := st.lists(j.files())
	if !st.present[KubeletConf] || (j.controlPlane && len(missing) > 0) {
		why = fmt.Sprintf("present: %s; missing: %s", strings.Join(present, ", "), strings.Join(missing, ", "))
		if j.controlPlane {
			return joinFresh, "", fmt.Errorf("%s is half-joined (%s): an earlier kubeadm join stopped midway; %s: %w",
				name, why, resetHint(name), ErrHalfInitialised)
		}
		return j.ownHalfJoin(ctx, t, st, why)
	}
	cp, err := peer(t, j.via)
	if err != nil {
		return joinFresh, "", err
	}
	out, err := runOut(ctx, cp, Kubectl+" --request-timeout=10s get nodes -o name")
	if err != nil {
		return joinFresh, "", fmt.Errorf("ask %s for the cluster's nodes: %w", j.via, err)
	}
	for _, l := range strings.Fields(out) {
		if l == "node/"+name {
			return joinMember, "", nil
		}
	}
	if j.controlPlane {
		return joinFresh, "", fmt.Errorf("%s has a kubelet.conf, but the cluster has no node %s (joined another cluster, or the node was deleted); %s: %w",
			name, name, resetHint(name), ErrHalfInitialised)
	}
	return j.ownHalfJoin(ctx, t, st, "a kubelet.conf, but the cluster has no node "+name)
}

// ownHalfJoin: a worker's leftovers are this cluster's when it has no CA
// yet or the same CA as the control plane it joins through; a different
// CA means another cluster's node, which is never reset.
func (j joiner) ownHalfJoin(ctx context.Context, t step.Target, st nodeState, why string) (joinState, string, error) {
	name := j.node.Name
	if !st.present[CACert] {
		return joinHalf, why, nil
	}
	cp, err := peer(t, j.via)
	if err != nil {
		return joinFresh, "", err
	}
	theirs, err := t.Host.ReadFile(ctx, CACert)
	if err != nil {
		return joinFresh, "", fmt.Errorf("read %s on %s: %w", CACert, name, err)
	}
	ours, err := cp.ReadFile(ctx, CACert)
	if err != nil {
		return joinFresh, "", fmt.Errorf("read the cluster CA on %s: %w", j.via, err)
	}
	if !bytes.Equal(bytes.TrimSpace(theirs), bytes.TrimSpace(ours)) {
		return joinFresh, "", fmt.Errorf("%s has kubeadm files of another cluster (%s; its %s is not %s's): %s: %w",
			name, why, CACert, j.via, resetHint(name), ErrHalfInitialised)
	}
	return joinHalf, why, nil
}

// repairDiff is how the plan shows a half-joined worker's repair.
func repairDiff(why string) []step.DiffLine {
	return []step.DiffLine{{Key: "kubeadm join", From: "half-joined (" + why + ")",
		To: "reset (kubeadm reset, CNI and kubelet state), then joined again"}}
}

func (j joiner) check(ctx context.Context, t step.Target, describe []step.DiffLine) (step.Change, error) {
	if err := j.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: describe}, nil
	}
	state, why, err := j.joined(ctx, t)
	switch {
	case err != nil:
		return step.Change{}, err
	case state == joinMember:
		return step.Change{Action: step.ActionNone}, nil
	case state == joinHalf:
		return step.Change{Action: step.ActionUpdate, Diff: repairDiff(why),
			Note: "an earlier join of this worker stopped midway; only this host is reset"}, nil
	}
	return step.Change{Action: step.ActionCreate, Diff: describe}, nil
}

// apply joins the node: a bootstrap token made for this join on the first
// control plane (15 minutes, deleted afterwards), the CA hash computed here
// from its CA certificate, for a control plane fresh uploaded certificates
// and their key; every secret is registered for redaction as soon as it
// exists and travels only inside the uploaded config (mode 0600, removed
// after the join), never on a command line.
func (j joiner) apply(ctx context.Context, t step.Target) error {
	if err := j.validate(); err != nil {
		return err
	}
	state, _, err := j.joined(ctx, t)
	if err != nil || state == joinMember {
		return err
	}
	if state == joinHalf {
		if err := repairHalfJoin(ctx, t); err != nil {
			return err
		}
	}
	cp, err := peer(t, j.via)
	if err != nil {
		return err
	}
	// The description starts with ownTokenPrefix: kube/join-secrets
	// deletes the token if the deferred delete below does not.
	out, err := runOut(ctx, cp, host.Join("kubeadm", "token", "create", "--ttl", TokenTTL, "--description", ownTokenPrefix+"join of "+j.node.Name))
	token := strings.TrimSpace(out)
	t.Redactor.Add(token)
	if err != nil {
		return fmt.Errorf("create a bootstrap token on %s: %w", j.via, err)
	}
	if !tokenRE.MatchString(token) {
		return fmt.Errorf("create a bootstrap token on %s: kubeadm token create printed no token (%d bytes)", j.via, len(out))
	}
	defer func() {
		// The token's ID is its public half: deleting it shows no secret.
		_ = cp.Run(context.WithoutCancel(ctx), host.Cmd{Line: host.Join("kubeadm", "token", "delete", token[:6]) + " >/dev/null 2>&1"})
	}()
	ca, err := cp.ReadFile(ctx, CACert)
	if err != nil {
		return fmt.Errorf("read the cluster CA on %s: %w", j.via, err)
	}
	hash, err := CACertHash(ca)
	if err != nil {
		return err
	}
	t.Redactor.Add(hash)
	certKey := ""
	if j.controlPlane {
		// Uploaded certificates expire after 2 hours: upload them again
		// for this join, under a key kubeadm makes and prints.
		out, err := runOut(ctx, cp, "kubeadm init phase upload-certs --upload-certs")
		lines := strings.Fields(out)
		if len(lines) > 0 {
			certKey = lines[len(lines)-1]
			t.Redactor.Add(certKey)
		}
		if err != nil {
			return fmt.Errorf("upload the control-plane certificates on %s: %w", j.via, err)
		}
		if !certKeyRE.MatchString(certKey) {
			return fmt.Errorf("upload the control-plane certificates on %s: kubeadm printed no certificate key", j.via)
		}
	}
	cfg, err := renderJoin(j.cluster, j.node, t.Bundle != nil, t.Facts != nil && t.Facts.CgroupV == 1, token, hash, certKey)
	if err != nil {
		return err
	}
	if err := runKubeadm(ctx, t.Host, "join", cfg, j.cluster.Timeouts.deadline(joinTimeout)); err != nil {
		return err
	}
	return waitNode(ctx, cp, j.node.Name, j.cluster.Timeouts.apiSeconds())
}

func (o JoinWorker) joiner() joiner {
	return joiner{cluster: o.Cluster, node: o.Node, via: o.Via}
}

// Check: a fresh host joins; a member (kubelet.conf, and the cluster lists
// the node) is left alone; anything in between is an error with the
// recovery step.
func (o JoinWorker) Check(ctx context.Context, t step.Target) (step.Change, error) {
	return o.joiner().check(ctx, t, o.Describe())
}

// Apply joins the worker through the first control plane.
func (o JoinWorker) Apply(ctx context.Context, t step.Target) error { return o.joiner().apply(ctx, t) }

func (o JoinControlPlane) joiner() joiner {
	return joiner{cluster: o.Cluster, node: o.Node, via: o.Via, controlPlane: true}
}

// Check: as a worker's, with the control plane's own files as well.
func (o JoinControlPlane) Check(ctx context.Context, t step.Target) (step.Change, error) {
	return o.joiner().check(ctx, t, o.Describe())
}

// Apply joins the control plane (and etcd member) through the first one;
// the planner runs control-plane joins one at a time.
func (o JoinControlPlane) Apply(ctx context.Context, t step.Target) error {
	return o.joiner().apply(ctx, t)
}

// repairHalfJoin resets a half-joined worker (Reset's script: kubeadm
// reset, CNI and kubelet state) and enables its kubelet again, which the
// reset disables and kubeadm join only starts.
func repairHalfJoin(ctx context.Context, t step.Target) error {
	if err := (Reset{}).Apply(ctx, t); err != nil {
		return fmt.Errorf("repair the half-joined %s: %w", t.Host.Name(), err)
	}
	if err := t.Host.Run(ctx, host.Cmd{Line: "systemctl enable kubelet"}); err != nil {
		return fmt.Errorf("repair the half-joined %s: enable the kubelet: %w", t.Host.Name(), err)
	}
	return nil
}
