// Package versions is the table of Kubernetes minors clusterctl knows: the
// supported window, the end-of-life minors it still runs and upgrades, and
// what each minor's kubeadm deploys. The table is kubernetes.tsv, which
// e2e/artifacts/build.sh reads too.
package versions

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	version "github.com/hashicorp/go-version"
)

//go:embed kubernetes.tsv
var tableText string

// Minor is one Kubernetes minor as the table records it.
type Minor struct {
	Minor      int    // 37 for 1.37
	Patch      string // the newest patch built and tested, e.g. "1.37.2"
	Etcd       string // kubeadm's etcd image tag, e.g. "3.7.0-0"
	CoreDNS    string // e.g. "v1.14.6"
	Pause      string // e.g. "3.10.2"
	KubeadmAPI string // kubeadm config API version, e.g. "v1beta4"
	// Containerd1 is "fallback" while the kubelet still runs on containerd
	// 1.x (no CRI RuntimeConfig call), "refused" once it does not.
	Containerd1 string
	// CgroupV1 is "default", "optIn" (failCgroupV1: false needed) or "refused".
	CgroupV1 string
	// Supported is true inside the window; false for end-of-life minors.
	Supported bool
}

// Name is the minor as people write it: "1.37".
func (m Minor) Name() string { return fmt.Sprintf("1.%d", m.Minor) }

var table = mustParse(tableText)

func mustParse(text string) []Minor {
	ms, err := parse(text)
	if err != nil {
		panic(err) // the table is embedded and checked by a test
	}
	return ms
}

func parse(text string) ([]Minor, error) {
	var ms []Minor
	for i, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 9 {
			return nil, fmt.Errorf("kubernetes.tsv:%d: %d fields, want 9", i+1, len(f))
		}
		minor, ok := strings.CutPrefix(f[0], "1.")
		n, err := strconv.Atoi(minor)
		if !ok || err != nil || !strings.HasPrefix(f[1], f[0]+".") {
			return nil, fmt.Errorf("kubernetes.tsv:%d: minor %q, patch %q", i+1, f[0], f[1])
		}
		if f[8] != "supported" && f[8] != "eol" {
			return nil, fmt.Errorf("kubernetes.tsv:%d: status %q: want supported or eol", i+1, f[8])
		}
		ms = append(ms, Minor{Minor: n, Patch: f[1], Etcd: f[2], CoreDNS: f[3], Pause: f[4], KubeadmAPI: f[5],
			Containerd1: f[6], CgroupV1: f[7], Supported: f[8] == "supported"})
	}
	return ms, nil
}

// All returns every known minor, newest first.
func All() []Minor { return append([]Minor(nil), table...) }

// Lookup returns the row of v's minor (v as "1.37.2", "v1.37.2" or
// "1.37.2+k3s1").
func Lookup(v string) (Minor, bool) {
	sv, err := version.NewVersion(v)
	if err != nil || sv.Segments()[0] != 1 {
		return Minor{}, false
	}
	for _, m := range table {
		if m.Minor == sv.Segments()[1] {
			return m, true
		}
	}
	return Minor{}, false
}

// Window names the supported minors: "1.35, 1.36 and 1.37".
func Window() string {
	var names []string
	for i := len(table) - 1; i >= 0; i-- {
		if table[i].Supported {
			names = append(names, table[i].Name())
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// Oldest and Newest are the oldest and newest minors the table knows, supported
// or not: the range `validate` accepts.
func Oldest() Minor { return table[len(table)-1] }
func Newest() Minor { return table[0] }

// Default is the version a new spec gets: the newest patch of the newest minor.
func Default() string { return table[0].Patch }
