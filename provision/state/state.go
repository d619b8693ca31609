// Package state is the cluster's memory of its last successful apply: a
// ConfigMap in kube-system that any machine with the spec and SSH access
// can read, so plan knows which hosts left the spec and what changed.
package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/lock"
)

// Where the record lives.
const (
	Namespace     = "kube-system"
	ConfigMapName = "clusterctl-state"
	DataKey       = "state.json"
	// FormatVersion changes whenever Record's JSON changes, additions
	// included: a reader refuses fields it does not know, so an older
	// clusterctl says "upgrade" rather than ignoring a newer record's parts.
	FormatVersion = 1
	// MaxRecordBytes bounds the record read (a ConfigMap holds 1 MiB).
	MaxRecordBytes = 1 << 20
	// MaxHosts bounds the hosts a record may list.
	MaxHosts = 1000
)

// Record is what the cluster remembers of its last successful apply.
type Record struct {
	Format            int       `json:"format"`
	Cluster           string    `json:"cluster"`
	SpecDigest        string    `json:"specDigest"`
	Git               *Git      `json:"git,omitempty"`
	Clusterctl        string    `json:"clusterctl"`
	Distribution      string    `json:"distribution"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	Hosts             []Host    `json:"hosts"`
	AppliedAt         time.Time `json:"appliedAt,omitzero"`
	AppliedBy         string    `json:"appliedBy,omitempty"`
	// Digest is the sha256 of the record's JSON as read from the cluster
	// (not stored in it): the lock names the record its holder planned
	// against.
	Digest string `json:"-"`
}

// Git is the spec's repository at apply time.
type Git struct {
	Commit string `json:"commit"`
	Dirty  bool   `json:"dirty"`
}

// Host is one host as it was applied: enough to reach it again over SSH
// once it has left the spec (the spec's SSH defaults fill in the rest).
type Host struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	Roles   []string `json:"roles"`
	User    string   `json:"user,omitempty"`
	Port    int      `json:"port,omitempty"`
}

// Has reports whether the host had role r.
func (h Host) Has(r string) bool { return slices.Contains(h.Roles, r) }

// Removed lists the recorded hosts that are not in names (the spec's hosts
// now), in recorded order.
func (r *Record) Removed(names []string) []Host {
	if r == nil {
		return nil
	}
	var out []Host
	for _, h := range r.Hosts {
		if !slices.Contains(names, h.Name) {
			out = append(out, h)
		}
	}
	return out
}

// Summary is one line for people: when, by whom, from which commit.
func (r *Record) Summary() string {
	if r == nil {
		return "never applied"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "applied %s", r.AppliedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	if r.AppliedBy != "" {
		b.WriteString(" by " + r.AppliedBy)
	}
	if r.Git != nil {
		c := r.Git.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		b.WriteString(" from commit " + c)
		if r.Git.Dirty {
			b.WriteString(" (with uncommitted changes)")
		}
	}
	fmt.Fprintf(&b, ", %s %s, %d hosts, clusterctl %s", r.Distribution, r.KubernetesVersion, len(r.Hosts), r.Clusterctl)
	return b.String()
}

// markers the read script prints around what it found.
const (
	markNoCluster = "@@clusterctl-no-cluster"
	markNoRecord  = "@@clusterctl-no-record"
	markRecord    = "@@clusterctl-record"
)

// ErrUnreadable: the cluster exists but its record could not be read.
var ErrUnreadable = errors.New("cannot read the cluster's state record")

// Read fetches the record through kubectl (a command line that runs
// kubectl as the cluster admin on h). It returns nil without error when h
// has no cluster yet (no kubeconfig at adminConf) or the cluster has no
// record (made before this version, or never applied to the end).
func Read(ctx context.Context, h host.Host, kubectl, adminConf, cluster string) (*Record, error) {
	line := "if [ ! -e " + host.Quote(adminConf) + " ]; then echo " + markNoCluster + "; exit 0; fi; " +
		"out=$(" + kubectl + " --request-timeout=15s -n " + Namespace + " get configmap " + ConfigMapName +
		" --ignore-not-found -o 'jsonpath={.data.state\\.json}' 2>&1) || { echo \"$out\" >&2; exit 3; }; " +
		"if [ -z \"$out\" ]; then echo " + markNoRecord + "; else echo " + markRecord + "; printf '%s\\n' \"$out\"; fi"
	var out, errb bytes.Buffer
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out, Stderr: &errb}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	return parse(out.String(), cluster)
}

func parse(out, cluster string) (*Record, error) {
	head, body, _ := strings.Cut(out, "\n")
	switch strings.TrimSpace(head) {
	case markNoCluster, markNoRecord:
		return nil, nil
	case markRecord:
	default:
		return nil, fmt.Errorf("%w: unexpected answer %.80q", ErrUnreadable, out)
	}
	body = strings.TrimRight(body, "\n")
	r, err := decode(body, cluster)
	if err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %w", ErrUnreadable, Namespace, ConfigMapName, err)
	}
	return r, nil
}

// Status is what `clusterctl status` shows of the record and the lock.
type Status struct {
	// LastApply is nil when the cluster has no record.
	LastApply *Record `json:"lastApply"`
	// SpecChanged: the spec here differs from the last applied one.
	SpecChanged bool `json:"specChanged"`
	// Lock is the lock's holder, nil when nobody holds it.
	Lock      *lock.Info `json:"lock,omitempty"`
	LockStale bool       `json:"lockStale,omitempty"`
	// Error says what could not be read.
	Error string `json:"error,omitempty"`
}
