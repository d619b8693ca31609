// Package hostprep holds the host-preparation steps: what every node needs
// before a container runtime and Kubernetes can run on it.
package hostprep

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/clusterctl/clusterctl/provision/step"
)

// Hostname sets the host's name now and across reboots.
type Hostname struct {
	Name string `json:"name"`
}

func (Hostname) Kind() string { return "hostprep/hostname" }
func (o Hostname) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "hostname", To: o.Name}}
}

// HostEntry is one line of the managed /etc/hosts block.
type HostEntry struct {
	Address string `json:"address"`
	Name    string `json:"name"`
}

// EtcHosts manages one marked block in /etc/hosts listing the hosts the
// spec's hostPrep.etcHosts mode chose (none: the block is removed); lines
// outside the block are the user's and stay untouched.
type EtcHosts struct {
	Entries []HostEntry `json:"entries"`

	sum string // BlockSHA256, when NewEtcHosts computed it
}

// NewEtcHosts computes the block's sha256 once: the planner gives the same
// block to every host, and plans show it on each.
func NewEtcHosts(entries []HostEntry) EtcHosts {
	o := EtcHosts{Entries: entries}
	o.sum = o.BlockSHA256()
	return o
}

func (EtcHosts) Kind() string { return "hostprep/etc-hosts" }

// Past these many entries plans name the block by its size and sha256
// instead of listing it: in mode "all" every host lists every host, and a
// plan listing them would grow as the square of the cluster. Text shows
// fewer lines than JSON, which tools read.
const (
	describeEntries = 8
	paramsEntries   = 20
)

func (o EtcHosts) Describe() []step.DiffLine {
	if len(o.Entries) == 0 {
		return []step.DiffLine{{Key: "managed block", To: "none (a block written before is removed)"}}
	}
	if len(o.Entries) > describeEntries {
		return []step.DiffLine{{Key: "managed block", To: o.summary()}}
	}
	d := make([]step.DiffLine, len(o.Entries))
	for i, e := range o.Entries {
		d[i] = step.DiffLine{Key: e.Name, To: e.Address}
	}
	return d
}

// summary names a long block: its size, first and last host, and sha256.
func (o EtcHosts) summary() string {
	return fmt.Sprintf("%d hosts (%s … %s), sha256:%.12s", len(o.Entries), o.Entries[0].Name, o.Entries[len(o.Entries)-1].Name, o.BlockSHA256())
}

// CheckOffline: a blank host has no block, so mode "none" has nothing to
// remove.
func (o EtcHosts) CheckOffline() step.Change {
	if len(o.Entries) == 0 {
		return step.Change{Action: step.ActionNone}
	}
	return step.Change{Action: step.ActionCreate, Diff: o.Describe()}
}

// MarshalJSON lists a short block; a long one, derivable from the spec, is
// given by its size, ends and sha256 (see BlockSHA256).
func (o EtcHosts) MarshalJSON() ([]byte, error) {
	if len(o.Entries) <= paramsEntries {
		return json.Marshal(struct {
			Entries []HostEntry `json:"entries"`
		}{o.Entries})
	}
	return json.Marshal(struct {
		Count  int    `json:"count"`
		First  string `json:"first"`
		Last   string `json:"last"`
		SHA256 string `json:"sha256"`
	}{len(o.Entries), o.Entries[0].Name, o.Entries[len(o.Entries)-1].Name, o.BlockSHA256()})
}

// Swap turns swap off now and comments out swap lines in /etc/fstab.
type Swap struct{}

func (Swap) Kind() string { return "hostprep/swap" }
func (Swap) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "swap", To: "off (now and in /etc/fstab)"}}
}

// SELinux sets the mode now and in /etc/selinux/config (RHEL family).
type SELinux struct {
	Mode string `json:"mode"` // permissive | disabled
}

func (SELinux) Kind() string { return "hostprep/selinux" }
func (o SELinux) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "selinux", To: o.Mode}}
}

// Sysctl writes one file of kernel parameters and applies that file alone.
type Sysctl struct {
	File   string            `json:"file"`
	Values map[string]string `json:"values"`
}

func (Sysctl) Kind() string { return "hostprep/sysctl" }
func (o Sysctl) Describe() []step.DiffLine {
	keys := sortedKeys(o.Values)
	d := make([]step.DiffLine, len(keys))
	for i, k := range keys {
		d[i] = step.DiffLine{Key: k, To: o.Values[k]}
	}
	return d
}

// KernelModules loads modules now and at boot. Built-in modules count as
// present; Required maps a module to the spec setting that needs it, for
// the error when it is missing.
type KernelModules struct {
	File     string            `json:"file"`
	Modules  []string          `json:"modules"`
	Required map[string]string `json:"requiredBy,omitempty"`
	Ignore   []string          `json:"ignore,omitempty"` // modules whose absence is only a warning
}

func (KernelModules) Kind() string { return "hostprep/kernel-modules" }
func (o KernelModules) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "modules", To: strings.Join(o.Modules, ", ")}}
}

// Port is one port or range a firewall must open.
type Port struct {
	Proto string `json:"proto"`
	Port  string `json:"port"` // "6443" or "30000-32767"
	For   string `json:"for"`
}

// Firewall disables the host firewall or opens the ports Kubernetes needs.
type Firewall struct {
	Mode  string `json:"mode"` // disabled | open-ports
	Ports []Port `json:"ports,omitempty"`
}

func (Firewall) Kind() string { return "hostprep/firewall" }
func (o Firewall) Describe() []step.DiffLine {
	if o.Mode == "disabled" {
		return []step.DiffLine{{Key: "firewall", To: "disabled"}}
	}
	ports := make([]string, len(o.Ports))
	for i, p := range o.Ports {
		ports[i] = p.Port + "/" + p.Proto
	}
	return []step.DiffLine{{Key: "firewall", To: "open " + strings.Join(ports, " ")}}
}

// TimeSync runs chrony or systemd-timesyncd with the given servers.
type TimeSync struct {
	Servers []string `json:"servers,omitempty"`
}

func (TimeSync) Kind() string { return "hostprep/time-sync" }
func (o TimeSync) Describe() []step.DiffLine {
	s := "daemon's configured servers"
	if len(o.Servers) > 0 {
		s = strings.Join(o.Servers, ", ")
	}
	return []step.DiffLine{{Key: "time sync", To: s}}
}

// Packages installs what a node needs from the host's package manager or,
// air-gapped, from .debs/.rpms in the bundle.
type Packages struct {
	Names  []string `json:"names"`
	Source string   `json:"source"` // online | bundle
}

func (Packages) Kind() string { return "hostprep/packages" }
func (o Packages) Describe() []step.DiffLine {
	return []step.DiffLine{{Key: "packages", To: fmt.Sprintf("%s (%s)", strings.Join(o.Names, ", "), o.Source)}}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
