package addons

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/clusterctl/clusterctl/manifests"
	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// ErrOnlineCNIUnsupported: the CNI's images come only from a bundle in
// this version (no registry was reachable where it was developed).
var ErrOnlineCNIUnsupported = errors.New("the CNI's images come only from an air-gapped bundle in this version: set artifacts.mode to \"bundle\" with a flannel image in the bundle")

// flannelRollout bounds the wait for flannel on the nodes known when it is
// applied (workers joining later are covered by the health step).
const flannelRollout = "180s"

// flannelImage finds the bundle's flannel image (an image named .../flannel:TAG).
func flannelImage(b *bundle.Bundle) (string, error) {
	if b == nil {
		return "", ErrOnlineCNIUnsupported
	}
	for _, f := range b.Of(bundle.KindImage) {
		ref, _, _ := strings.Cut(f.Image, "@")
		if i := strings.LastIndexByte(ref, '/'); i >= 0 && strings.HasPrefix(ref[i+1:], "flannel:") {
			return f.Image, nil
		}
	}
	return "", fmt.Errorf("the bundle %s has no flannel image (images/*.tar named .../flannel:TAG)", b.Dir)
}

// objects renders the plugin's manifest for this cluster and splits it.
func (o CNI) objects(b *bundle.Bundle) ([]object, error) {
	if o.Plugin != "flannel" {
		return nil, fmt.Errorf("cni %q is not supported yet: use flannel (or \"none\" and a manifest of your own)", o.Plugin)
	}
	if _, err := netip.ParsePrefix(o.PodCIDR); err != nil {
		return nil, fmt.Errorf("pod CIDR %q is not a CIDR", o.PodCIDR)
	}
	img, err := flannelImage(b)
	if err != nil {
		return nil, err
	}
	version := img[strings.LastIndexByte(img, ':')+1:]
	src, err := manifests.Render("flannel.yaml.tmpl", map[string]any{
		"Version": version, "PodCIDR": o.PodCIDR, "Image": img,
		// From a bundle: never pulled, so a missing image fails at once.
		"PullPolicy": "Never",
	})
	if err != nil {
		return nil, err
	}
	return splitDocs("flannel.yaml", src)
}

// Check asks the API server (server-side dry run, kubectl diff) what
// applying the manifest would change; before the cluster exists, all of it.
func (o CNI) Check(ctx context.Context, t step.Target) (step.Change, error) {
	objs, err := o.objects(t.Bundle)
	if err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	return diffChange(ctx, t, o.Admin.OrKubeadm(), objs, "", o.Describe())
}

// diffChange is the Check of a manifest: create when the cluster is still
// to be made or every object is new, update when some change, else none.
func diffChange(ctx context.Context, t step.Target, a kube.Admin, objs []object, namespace string, describe []step.DiffLine) (step.Change, error) {
	diff, fresh, err := diffObjects(ctx, t.Host, a, objs, namespace)
	switch {
	case err != nil:
		return step.Change{}, err
	case fresh:
		return step.Change{Action: step.ActionCreate, Diff: describe}, nil
	case len(diff) == 0:
		return step.Change{Action: step.ActionNone}, nil
	}
	action := step.ActionCreate
	for _, d := range diff {
		if d.From == "live" {
			action = step.ActionUpdate
		}
	}
	return step.Change{Action: action, Diff: diff}, nil
}

// Apply server-side applies the manifest on the first control plane and
// waits until flannel runs on the nodes known now.
func (o CNI) Apply(ctx context.Context, t step.Target) error {
	objs, err := o.objects(t.Bundle)
	if err != nil {
		return err
	}
	a := o.Admin.OrKubeadm()
	if err := applyObjects(ctx, t.Host, a, objs, ""); err != nil {
		return err
	}
	return waitRollouts(ctx, t.Host, a, objs, "", flannelRollout)
}
