package state

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Save writes the record at the end of an apply. It runs on the first
// control plane after every other step succeeded, and like the kubeconfig
// merge it is not counted as a change: a re-apply that changes nothing
// still refreshes who applied, when and from which commit.
type Save struct {
	Record Record `json:"record"`
	// Kubectl runs kubectl as the cluster admin on the control plane.
	Kubectl string `json:"kubectl"`
}

var _ step.Recurring = Save{}

func (Save) Kind() string         { return "state/record" }
func (Save) RunsEveryApply() bool { return true }

func (o Save) Describe() []step.DiffLine {
	d := []step.DiffLine{{Key: Namespace + "/" + ConfigMapName, To: fmt.Sprintf("spec %.12s, %d hosts", o.Record.SpecDigest, len(o.Record.Hosts))}}
	if g := o.Record.Git; g != nil {
		d = append(d, step.DiffLine{Key: "git", To: gitText(g)})
	}
	return d
}

func gitText(g *Git) string {
	c := g.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if g.Dirty {
		return c + " (dirty)"
	}
	return c
}

func (o Save) Check(_ context.Context, _ step.Target) (step.Change, error) {
	return step.Change{Action: step.ActionRead, Diff: o.Describe()}, nil
}

// Apply writes the ConfigMap with server-side apply, fed on stdin.
func (o Save) Apply(ctx context.Context, t step.Target) error {
	r := o.Record
	r.Format = FormatVersion
	r.AppliedAt = time.Now().UTC().Truncate(time.Second)
	doc, err := ConfigMap(r)
	if err != nil {
		return err
	}
	line := o.Kubectl + " --request-timeout=30s apply --server-side --force-conflicts --field-manager=clusterctl -f -"
	if err := t.Host.Run(ctx, host.Cmd{Line: line, Stdin: bytes.NewReader(doc)}); err != nil {
		return fmt.Errorf("write %s/%s: %w", Namespace, ConfigMapName, err)
	}
	return nil
}

// ConfigMap is the record as the Kubernetes object that holds it.
func ConfigMap(r Record) ([]byte, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode the state record: %w", err)
	}
	cm := map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"name":      ConfigMapName,
			"namespace": Namespace,
			"labels":    map[string]string{"app.kubernetes.io/managed-by": "clusterctl"},
		},
		"data": map[string]string{DataKey: string(data) + "\n"},
	}
	return json.MarshalIndent(cm, "", "  ")
}
