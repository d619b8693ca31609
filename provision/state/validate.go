package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"unicode"

	"github.com/clusterctl/clusterctl/provision/spec"
)

// decode reads a record's JSON and checks every field: the record is
// written by whoever can write a ConfigMap in kube-system, and its hosts
// are dialled with the operator's keys, so it is held to the spec's rules.
func decode(body, cluster string) (*Record, error) {
	if len(body) > MaxRecordBytes {
		return nil, fmt.Errorf("%d bytes, more than a record may hold (%d)", len(body), MaxRecordBytes)
	}
	// The format first, so a newer record says "upgrade" instead of
	// failing on the fields this version does not know.
	var probe struct {
		Format int `json:"format"`
	}
	if err := json.NewDecoder(strings.NewReader(body)).Decode(&probe); err != nil {
		return nil, err
	}
	if probe.Format != FormatVersion {
		return nil, fmt.Errorf("format %d, this clusterctl reads format %d (upgrade clusterctl)", probe.Format, FormatVersion)
	}
	var r Record
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the record")
	}
	if err := r.validate(cluster); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(body))
	r.Digest = hex.EncodeToString(sum[:])
	return &r, nil
}

var (
	commitRE  = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`) // SHA-1 or SHA-256 object names
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)
)

// maxUserName is useradd's limit on a POSIX user name.
const maxUserName = 32

func (r *Record) validate(cluster string) error {
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if r.Cluster != cluster {
		fail("cluster", "%q is not this spec's cluster %q", r.Cluster, cluster)
	}
	if !schema("#SHA256", r.SpecDigest) {
		fail("specDigest", "%.80q is not a sha256 digest", r.SpecDigest)
	}
	if r.Git != nil && !commitRE.MatchString(r.Git.Commit) {
		fail("git.commit", "%.80q is not a commit ID", r.Git.Commit)
	}
	if !versionRE.MatchString(r.Clusterctl) {
		fail("clusterctl", "%.80q is not a version", r.Clusterctl)
	}
	if spec.SupportedVersions(r.Distribution) == "" {
		fail("distribution", "%.80q is not a distribution clusterctl knows", r.Distribution)
	}
	if !schema("#K8sVersion", r.KubernetesVersion) {
		fail("kubernetesVersion", "%.80q is not a Kubernetes version", r.KubernetesVersion)
	}
	if len(r.AppliedBy) > 256 || strings.IndexFunc(r.AppliedBy, notPrintable) >= 0 {
		fail("appliedBy", "%.80q is not a short printable text", r.AppliedBy)
	}
	switch {
	case len(r.Hosts) == 0:
		fail("hosts", "none: a cluster has at least one host")
	case len(r.Hosts) > MaxHosts:
		fail("hosts", "%d, more than a record may list (%d)", len(r.Hosts), MaxHosts)
	default:
		errs = append(errs, r.validateHosts()...)
	}
	return joinErrors(errs)
}

// joinErrors keeps several problems on one line: they end up in a warning.
func joinErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

func (r *Record) validateHosts() []error {
	var errs []error
	names := map[string]bool{}
	addrs := map[netip.Addr]string{}
	for i, h := range r.Hosts {
		fail := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("hosts[%d].%s: %s", i, field, fmt.Sprintf(format, args...)))
		}
		switch {
		case !schema("#DNSLabel", h.Name):
			fail("name", "%.80q is not a host name (a DNS label)", h.Name)
		case names[h.Name]:
			fail("name", "%q is listed twice", h.Name)
		}
		names[h.Name] = true
		// As in the spec, a host's address is an IP address.
		switch a, err := netip.ParseAddr(h.Address); {
		case err != nil:
			fail("address", "%.80q is not an IP address", h.Address)
		case a.IsUnspecified() || a.IsMulticast():
			fail("address", "%s cannot be a host address", h.Address)
		case addrs[a.Unmap()] != "":
			fail("address", "%s is already host %s's", h.Address, addrs[a.Unmap()])
		default:
			addrs[a.Unmap()] = h.Name
		}
		if h.Port < 0 || h.Port > 65535 {
			fail("port", "%d is not a TCP port", h.Port)
		}
		if h.User != "" && (len(h.User) > maxUserName || !schema("#UserName", h.User)) {
			fail("user", "%.80q is not a user name", h.User)
		}
		if err := validRoles(h.Roles); err != "" {
			fail("roles", "%s", err)
		}
	}
	return errs
}

func validRoles(roles []string) string {
	if len(roles) == 0 {
		return "none: a host has at least one role"
	}
	seen := map[string]bool{}
	for _, r := range roles {
		if r != spec.RoleControlPlane && r != spec.RoleWorker {
			return fmt.Sprintf("%.80q is not a role (want %q or %q)", r, spec.RoleControlPlane, spec.RoleWorker)
		}
		if seen[r] {
			return fmt.Sprintf("%q is listed twice", r)
		}
		seen[r] = true
	}
	return ""
}

// schema matches s against the spec schema's pattern def.
func schema(def, s string) bool {
	ok, err := spec.MatchesSchema(def, s)
	if err != nil {
		panic(err) // the definitions named here are the schema's own
	}
	return ok
}

func notPrintable(r rune) bool { return !unicode.IsPrint(r) }
