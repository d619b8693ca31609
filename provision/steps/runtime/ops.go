// Package runtime installs and configures the container runtime.
package runtime

import (
	"sort"
	"strings"

	"github.com/clusterctl/clusterctl/provision/step"
)

// Containerd installs containerd, renders config.toml and keeps the service
// running; it restarts only when the config changed.
type Containerd struct {
	Version            string              `json:"version,omitempty"`
	Source             string              `json:"source"`       // online | bundle
	CgroupDriver       string              `json:"cgroupDriver"` // systemd | cgroupfs
	SandboxImage       string              `json:"sandboxImage,omitempty"`
	Mirrors            map[string][]string `json:"mirrors,omitempty"`
	InsecureRegistries []string            `json:"insecureRegistries,omitempty"`
	// RestrictOOMScoreAdj forces containerd's restrict_oom_score_adj on.
	// Without it the step still turns it on where the host's root lacks
	// CAP_SYS_RESOURCE (detected on the host: the planner cannot know).
	RestrictOOMScoreAdj bool `json:"restrictOOMScoreAdj,omitempty"`
}

func (Containerd) Kind() string { return "runtime/containerd" }
func (o Containerd) Describe() []step.DiffLine {
	v := o.Version
	if v == "" {
		v = "distribution package"
	}
	d := []step.DiffLine{
		{Key: "containerd", To: v + " (" + o.Source + ")"},
		{Key: "cgroup driver", To: o.CgroupDriver},
	}
	if o.SandboxImage != "" {
		d = append(d, step.DiffLine{Key: "sandbox image", To: o.SandboxImage})
	}
	regs := make([]string, 0, len(o.Mirrors))
	for r := range o.Mirrors {
		regs = append(regs, r)
	}
	sort.Strings(regs)
	for _, r := range regs {
		d = append(d, step.DiffLine{Key: "mirror " + r, To: strings.Join(o.Mirrors[r], ", ")})
	}
	return d
}
