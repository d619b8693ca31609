package kube

import (
	"errors"
	"fmt"
	"github.com/clusterctl/clusterctl/provision/versions"
	"strings"

	version "github.com/hashicorp/go-version"
)

// ErrSkew: a version change the Kubernetes version-skew policy forbids
// (a downgrade, a skipped minor, a kubelet newer than its API server).
var ErrSkew = errors.New("version skew policy")

// parseVersion reads a Kubernetes version with or without its "v".
func parseVersion(v string) (*version.Version, error) {
	p, err := version.NewSemver(strings.TrimPrefix(strings.TrimSpace(v), "v"))
	if err != nil {
		return nil, fmt.Errorf("%q is not a Kubernetes version", v)
	}
	return p, nil
}

// minorOf is "MAJOR.MINOR" of v.
func minorOf(v *version.Version) string {
	s := v.Segments()
	return fmt.Sprintf("%d.%d", s[0], s[1])
}

// CheckUpgrade applies the skew policy to moving something (the cluster, a
// node) from version from to version to: the same version is no upgrade
// (false, nil); a patch or the next minor is one (true, nil); a downgrade,
// a skipped minor or another major is an error wrapping ErrSkew that names
// what is allowed instead.
func CheckUpgrade(from, to string) (bool, error) {
	f, err := parseVersion(from)
	if err != nil {
		return false, fmt.Errorf("current version: %w", err)
	}
	t, err := parseVersion(to)
	if err != nil {
		return false, fmt.Errorf("wanted version: %w", err)
	}
	fs, ts := f.Segments(), t.Segments()
	next := fmt.Sprintf("%d.%d.x", fs[0], fs[1]+1)
	switch {
	case t.Equal(f):
		return false, nil
	case t.LessThan(f):
		return false, fmt.Errorf("downgrade %s -> %s is not supported: Kubernetes only moves forward (keep %s, a later %s.x patch or %s; to go back, restore an etcd snapshot taken before the upgrade): %w",
			f, t, f, minorOf(f), next, ErrSkew)
	case ts[0] != fs[0]:
		return false, fmt.Errorf("upgrade %s -> %s changes the major version: upgrade within %d.x, one minor at a time: %w", f, t, fs[0], ErrSkew)
	case ts[1] > fs[1]+1:
		return false, fmt.Errorf("upgrade %s -> %s skips a minor: upgrade to %s first: %w", f, t, next, ErrSkew)
	}
	return true, nil
}

// CheckKubelet enforces that a kubelet is never newer than the oldest API
// server it talks to.
func CheckKubelet(kubelet, apiServer string) error {
	k, err := parseVersion(kubelet)
	if err != nil {
		return fmt.Errorf("kubelet version: %w", err)
	}
	a, err := parseVersion(apiServer)
	if err != nil {
		return fmt.Errorf("API server version: %w", err)
	}
	if k.GreaterThan(a) {
		return fmt.Errorf("kubelet %s would be newer than the API server %s: upgrade the control planes to %s first: %w", k, a, k, ErrSkew)
	}
	return nil
}

// oldest returns the lowest of the versions ("" when none parses).
func oldest(vs ...string) string {
	var low *version.Version
	out := ""
	for _, v := range vs {
		p, err := parseVersion(v)
		if err != nil {
			continue
		}
		if low == nil || p.LessThan(low) {
			low, out = p, strings.TrimPrefix(v, "v")
		}
	}
	return out
}

// sameVersion compares two versions with or without their "v".
func sameVersion(a, b string) bool {
	return a != "" && strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
}

// PauseVersion is the pause (sandbox) image tag kubeadm of a Kubernetes
// version deploys, from the version table (provision/versions), so
// containerd's sandbox image is one the version's bundle holds. A version
// the table lacks gets the newest minor's.
func PauseVersion(k8s string) string {
	if m, ok := versions.Lookup(k8s); ok {
		return m.Pause
	}
	return versions.Newest().Pause
}
