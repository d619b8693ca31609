package addons

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// FieldManager owns every field clusterctl applies (server-side apply).
const FieldManager = "clusterctl"

// noCluster is what the diff script prints when the control plane has no
// admin.conf yet (the cluster is still to be made).
const noCluster = "clusterctl: no cluster yet"

// object is one document of a manifest.
type object struct {
	Kind, Name, Namespace string
	Doc                   []byte // the document, re-encoded
}

// ID names the object as people read it: Kind/namespace/name.
func (o object) ID() string {
	if o.Namespace != "" {
		return o.Kind + "/" + o.Namespace + "/" + o.Name
	}
	return o.Kind + "/" + o.Name
}

// first are the kinds other objects may need to exist before they can be
// applied, or even diffed: namespaces, and the CRDs of custom resources.
func (o object) first() bool {
	return o.Kind == "Namespace" || o.Kind == "CustomResourceDefinition"
}

// splitDocs reads every YAML (or JSON) document of src; empty documents
// are skipped, and a document without kind or metadata.name is an error
// naming it.
func splitDocs(name string, src []byte) ([]object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var out []object
	for i := 1; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if len(n.Content) == 0 || n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null" {
			continue
		}
		var meta struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		if err := n.Decode(&meta); err != nil {
			return nil, fmt.Errorf("%s: document %d: not a Kubernetes object: %w", name, i, err)
		}
		if meta.Kind == "" || meta.Metadata.Name == "" && meta.Kind != "List" {
			return nil, fmt.Errorf("%s: document %d: not a Kubernetes object (no kind or metadata.name)", name, i)
		}
		var doc bytes.Buffer
		enc := yaml.NewEncoder(&doc)
		enc.SetIndent(2)
		if err := enc.Encode(&n); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		out = append(out, object{Kind: meta.Kind, Name: meta.Metadata.Name, Namespace: meta.Metadata.Namespace, Doc: doc.Bytes()})
	}
}

// batches orders objects: namespaces and CRDs, then everything else.
func batches(objs []object) [][]object {
	var first, rest []object
	for _, o := range objs {
		if o.first() {
			first = append(first, o)
		} else {
			rest = append(rest, o)
		}
	}
	var out [][]object
	for _, b := range [][]object{first, rest} {
		if len(b) > 0 {
			out = append(out, b)
		}
	}
	return out
}

func join(objs []object) []byte {
	var b bytes.Buffer
	for i, o := range objs {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(o.Doc)
	}
	return b.Bytes()
}

// kubectlArgs are the flags every apply and diff shares; namespace is the
// default for objects that name none.
func kubectlArgs(a kube.Admin, verb, namespace string) string {
	line := a.Kubectl + " " + verb + " --server-side --field-manager=" + FieldManager + " --force-conflicts"
	if namespace != "" {
		line += " -n " + host.Quote(namespace)
	}
	return line + " -f -"
}

// diffObjects asks the API server what a server-side apply of objs would
// change (a dry run): the changed objects' IDs, or noCluster=true when the
// control plane has no cluster yet. Batches are diffed in order; once one
// has changes the next is not asked (its namespace or CRD may not exist
// yet) and counts as all new.
func diffObjects(ctx context.Context, h host.Host, a kube.Admin, objs []object, namespace string) (diff []step.DiffLine, fresh bool, err error) {
	bs := batches(objs)
	for i, b := range bs {
		var out bytes.Buffer
		line := "if [ ! -e " + host.Quote(a.Kubeconfig) + " ]; then echo " + host.Quote(noCluster) + "; exit 0; fi; " + kubectlArgs(a, "diff", namespace)
		err := h.Run(ctx, host.Cmd{Line: line, Stdin: bytes.NewReader(join(b)), Stdout: &out})
		var ee *host.ExitError
		switch {
		case err == nil && strings.TrimSpace(out.String()) == noCluster:
			return nil, true, nil
		case err == nil:
			continue // no differences
		case errors.As(err, &ee) && ee.Code == 1:
			diff = append(diff, parseDiff(out.String())...)
		default:
			return nil, false, fmt.Errorf("kubectl diff: %w", err)
		}
		for _, later := range bs[i+1:] {
			for _, o := range later {
				diff = append(diff, step.DiffLine{Key: o.ID(), To: "applied after its namespace or CRD"})
			}
		}
		break
	}
	return diff, false, nil
}

// parseDiff turns kubectl diff's unified diff into one line per object:
// "diff -u -N /tmp/LIVE-1/apps.v1.Deployment.default.hello /tmp/MERGED-1/...".
func parseDiff(out string) []step.DiffLine {
	var lines []step.DiffLine
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "diff "):
			f := strings.Fields(l)
			lines = append(lines, step.DiffLine{Key: objectName(path.Base(f[len(f)-1])), From: "live", To: "changed"})
		case strings.HasPrefix(l, "@@ -0,0 ") && len(lines) > 0 && lines[len(lines)-1].From == "live":
			lines[len(lines)-1].From, lines[len(lines)-1].To = "(absent)", "created"
		}
	}
	return lines
}

// objectName reads kubectl diff's file names, "GROUP.VERSION.KIND[.NS].NAME"
// (core objects: "v1.KIND..."), as KIND/[NS/]NAME.
func objectName(file string) string {
	parts := strings.Split(file, ".")
	for i, p := range parts {
		if p != "" && p[0] >= 'A' && p[0] <= 'Z' {
			// Cluster-scoped objects have an empty namespace part; names
			// may hold dots themselves.
			rest := strings.TrimPrefix(strings.Join(parts[i+1:], "."), ".")
			if ns, name, ok := strings.Cut(rest, "."); ok && i+2 < len(parts) && parts[i+1] != "" {
				return p + "/" + ns + "/" + name
			}
			return p + "/" + rest
		}
	}
	return file
}

// applyObjects server-side applies objs batch by batch (namespaces and CRDs
// first, waiting until the CRDs are established).
func applyObjects(ctx context.Context, h host.Host, a kube.Admin, objs []object, namespace string) error {
	for _, b := range batches(objs) {
		if err := h.Run(ctx, host.Cmd{Line: kubectlArgs(a, "apply", namespace), Stdin: bytes.NewReader(join(b))}); err != nil {
			return fmt.Errorf("kubectl apply: %w", err)
		}
		var crds []string
		for _, o := range b {
			if o.Kind == "CustomResourceDefinition" {
				crds = append(crds, "crd/"+o.Name)
			}
		}
		if len(crds) > 0 {
			line := a.Kubectl + " wait --for=condition=established --timeout=60s " + host.Join(crds...)
			if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
				return fmt.Errorf("wait for CRDs: %w", err)
			}
		}
	}
	return nil
}

// rollable are the kinds `kubectl rollout status` follows.
var rollable = map[string]string{"Deployment": "deployment", "DaemonSet": "daemonset", "StatefulSet": "statefulset"}

// waitRollouts waits, within timeout, until every Deployment, DaemonSet
// and StatefulSet of objs has rolled out.
func waitRollouts(ctx context.Context, h host.Host, a kube.Admin, objs []object, namespace, timeout string) error {
	var cmds []string
	for _, o := range objs {
		kind, ok := rollable[o.Kind]
		if !ok {
			continue
		}
		ns := o.Namespace
		if ns == "" {
			ns = namespace
		}
		args := []string{"rollout", "status", kind + "/" + o.Name, "--timeout", timeout}
		if ns != "" {
			args = append(args, "-n", ns)
		}
		cmds = append(cmds, a.Kubectl+" "+host.Join(args...))
	}
	if len(cmds) == 0 {
		return nil
	}
	if err := h.Run(ctx, host.Cmd{Line: strings.Join(cmds, " && ")}); err != nil {
		if why := rolloutDiagnosis(ctx, h, a, namespace); why != "" {
			return fmt.Errorf("wait for the rollout: %w; %s", err, why)
		}
		return fmt.Errorf("wait for the rollout: %w", err)
	}
	return nil
}

// rolloutDiagnosis says why a rollout may be stuck: the pods of namespace
// (all namespaces when empty) that are not ready, and the latest warning
// events. Best effort: "" when the cluster does not answer.
func rolloutDiagnosis(ctx context.Context, h host.Host, a kube.Admin, namespace string) string {
	ns, col := "-A", 3 // READY is the third column with NAMESPACE first
	if namespace != "" {
		ns, col = "-n "+host.Quote(namespace), 2
	}
	notReady := fmt.Sprintf(`awk '{ split($%d, r, "/"); if (r[1] != r[2] && $%d != "Completed") print }'`, col, col+1)
	line := a.Kubectl + " get pods " + ns + " --no-headers -o wide 2>&1 | " + notReady + " | head -n 10; " +
		"echo '--'; " + a.Kubectl + " get events " + ns + " --field-selector=type=Warning --sort-by=.lastTimestamp --no-headers 2>&1 | tail -n 8"
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
		return ""
	}
	pods, events, _ := strings.Cut(strings.TrimSpace(out.String()), "--")
	pods, events = strings.TrimSpace(pods), strings.TrimSpace(events)
	var why []string
	if pods != "" {
		why = append(why, "pods not ready:\n"+pods)
	}
	if events != "" {
		why = append(why, "latest warnings:\n"+events)
	}
	return host.Tail(strings.Join(why, "\n"), 2048)
}
