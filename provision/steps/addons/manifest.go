package addons

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/step"
)

// defaultRollout bounds rollouts when the spec gives no timeout.
const defaultRollout = "5m"

var namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (o Manifest) timeout() (string, error) {
	if o.Timeout == "" {
		return defaultRollout, nil
	}
	if _, err := time.ParseDuration(o.Timeout); err != nil {
		return "", fmt.Errorf("manifest %s: timeout %q: %w", o.Name, o.Timeout, err)
	}
	return o.Timeout, nil
}

// objects reads the manifest from the operator's machine: one file, or
// every *.yaml, *.yml and *.json under a directory, in path order.
func (o Manifest) objects() ([]object, error) {
	if o.Namespace != "" && !namespaceRE.MatchString(o.Namespace) {
		return nil, fmt.Errorf("manifest %s: namespace %q is not a DNS label", o.Name, o.Namespace)
	}
	p := o.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(o.SpecDir, p)
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", o.Name, err)
	}
	files := []string{p}
	if st.IsDir() {
		files = nil
		err := filepath.WalkDir(p, func(f string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(f)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					files = append(files, f)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", o.Name, err)
		}
		sort.Strings(files)
	}
	var objs []object
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", o.Name, err)
		}
		name, err := filepath.Rel(o.SpecDir, f)
		if err != nil || strings.HasPrefix(name, "..") {
			name = f
		}
		docs, err := splitDocs(name, src)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", o.Name, err)
		}
		objs = append(objs, docs...)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("manifest %s: %s holds no Kubernetes objects", o.Name, o.Path)
	}
	return objs, nil
}

// Check asks the API server (server-side dry run, kubectl diff) what
// applying the manifest would change; before the cluster exists, all of it.
func (o Manifest) Check(ctx context.Context, t step.Target) (step.Change, error) {
	objs, err := o.objects()
	if err != nil {
		return step.Change{}, err
	}
	if _, err := o.timeout(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	return diffChange(ctx, t, o.Admin.OrKubeadm(), objs, o.Namespace, o.Describe())
}

// Apply server-side applies the manifest (namespaces and CRDs first) and,
// with wait, follows every Deployment, DaemonSet and StatefulSet of it
// until rolled out, within the timeout.
func (o Manifest) Apply(ctx context.Context, t step.Target) error {
	objs, err := o.objects()
	if err != nil {
		return err
	}
	timeout, err := o.timeout()
	if err != nil {
		return err
	}
	a := o.Admin.OrKubeadm()
	if err := applyObjects(ctx, t.Host, a, objs, o.Namespace); err != nil {
		return fmt.Errorf("manifest %s: %w", o.Name, err)
	}
	if !o.Wait {
		return nil
	}
	if err := waitRollouts(ctx, t.Host, a, objs, o.Namespace, timeout); err != nil {
		return fmt.Errorf("manifest %s: %w", o.Name, err)
	}
	return nil
}
