package kube

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// DeleteJoinSecrets deletes, once every node of an apply has joined, the
// join credentials clusterctl left in the cluster: its bootstrap tokens
// (kube/init's, and a join's whose own deletion failed) and the
// kubeadm-certs Secret (the control-plane certificates uploaded for
// joins). Each would expire by itself (15 minutes, 2 hours); until then
// it lets a new machine join, as a node or as a control plane.
type DeleteJoinSecrets struct{}

func (DeleteJoinSecrets) Kind() string { return "kube/join-secrets" }

func (DeleteJoinSecrets) Describe() []step.DiffLine {
	return []step.DiffLine{
		{Key: "bootstrap tokens", From: "clusterctl's (kube/init's, the joins'), once every node joined"},
		{Key: "join secret", From: "kube-system/" + kubeadmCertsSecret + " (uploaded control-plane certificates)"},
	}
}

// CheckOffline: a blank cluster gets a token from kube/init.
func (o DeleteJoinSecrets) CheckOffline() step.Change {
	return step.Change{Action: step.ActionDelete, Diff: o.Describe()}
}

const (
	kubeadmCertsSecret = "kubeadm-certs"
	bootstrapTokenType = "bootstrap.kubernetes.io/token"
	// ownTokenPrefix starts the description of every token clusterctl
	// makes (templates/kubeadm-init.yaml.tmpl, joiner.apply).
	ownTokenPrefix = "clusterctl "
)

var bootstrapSecretRE = regexp.MustCompile(`^bootstrap-token-[a-z0-9]{6}$`)

// Check lists what is left; before kubeadm init there is no cluster yet,
// and the step will delete what init makes.
func (o DeleteJoinSecrets) Check(ctx context.Context, t step.Target) (step.Change, error) {
	if t.Facts == nil {
		return o.CheckOffline(), nil
	}
	names, fresh, err := joinSecrets(ctx, t.Host)
	switch {
	case err != nil:
		return step.Change{}, err
	case fresh:
		return o.CheckOffline(), nil
	case len(names) == 0:
		return step.Change{Action: step.ActionNone}, nil
	}
	diff := make([]step.DiffLine, len(names))
	for i, n := range names {
		diff[i] = step.DiffLine{Key: "join secret", From: "kube-system/" + n}
	}
	return step.Change{Action: step.ActionDelete, Diff: diff}, nil
}

// Apply deletes the secrets by name: a token's name holds only its ID,
// the public half. --ignore-not-found lets a re-run converge.
func (DeleteJoinSecrets) Apply(ctx context.Context, t step.Target) error {
	names, _, err := joinSecrets(ctx, t.Host)
	if err != nil || len(names) == 0 {
		return err
	}
	line := Kubectl + " --request-timeout=30s -n kube-system delete secret --ignore-not-found " + host.Join(names...)
	if err := t.Host.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("delete the join secrets %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// joinSecrets names the secrets of kube-system DeleteJoinSecrets deletes,
// sorted; fresh when the host has no cluster yet. Only names, types and
// token descriptions are read: no secret value leaves the host.
func joinSecrets(ctx context.Context, h host.Host) (names []string, fresh bool, err error) {
	line := "if [ ! -e " + host.Quote(AdminConf) + " ]; then echo " + noCluster + "; exit 0; fi; " +
		Kubectl + " --request-timeout=10s -n kube-system get secrets -o " +
		host.Quote(`jsonpath={range .items[*]}{.metadata.name}{" "}{.type}{" "}{.data.description}{"\n"}{end}`)
	out, err := runOut(ctx, h, line)
	if err != nil {
		return nil, false, fmt.Errorf("list the secrets of kube-system: %w", err)
	}
	if strings.TrimSpace(out) == noCluster {
		return nil, true, nil
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && isJoinSecret(f[0], f[1], f[2:]) {
			names = append(names, f[0])
		}
	}
	sort.Strings(names)
	return names, false, nil
}

// isJoinSecret: kubeadm-certs, or a bootstrap token whose description
// (base64, as the API returns Secret data) says clusterctl made it.
func isJoinSecret(name, typ string, rest []string) bool {
	if name == kubeadmCertsSecret {
		return true
	}
	if typ != bootstrapTokenType || !bootstrapSecretRE.MatchString(name) || len(rest) != 1 {
		return false
	}
	desc, err := base64.StdEncoding.DecodeString(rest[0])
	return err == nil && strings.HasPrefix(string(desc), ownTokenPrefix)
}
