package spec

import (
	"encoding/json"
	"fmt"
)

// Cluster is a validated spec, decoded from CUE. Field names follow the
// schema in cue/schema.cue; defaults are already filled in.
type Cluster struct {
	Name       string              `json:"name"`
	Kubernetes Kubernetes          `json:"kubernetes"`
	Network    Network             `json:"network"`
	Runtime    Runtime             `json:"runtime"`
	SSH        SSH                 `json:"ssh"`
	Hosts      map[string]Host     `json:"hosts"`
	HostPrep   HostPrep            `json:"hostPrep"`
	Artifacts  Artifacts           `json:"artifacts"`
	Manifests  map[string]Manifest `json:"manifests"`
	Health     Health              `json:"health"`

	// Dir is the directory the spec was loaded from; relative paths in the
	// spec (manifests, bundleDir) are relative to it.
	Dir string `json:"-"`
	// Digest is the sha256 of the spec's canonical JSON: plans made from one
	// spec refuse to apply to another.
	Digest string `json:"-"`
	// HostOrder lists host names in the order the spec wrote them.
	HostOrder []string `json:"-"`
	// SSHWritten names the cluster-level ssh fields with a schema default
	// that the spec wrote itself (user, port, knownHostsFile,
	// hostKeyPolicy): only those win over an ssh_config file.
	SSHWritten map[string]bool `json:"-"`
}

type Kubernetes struct {
	Version              string          `json:"version"`
	AllowUnsupported     bool            `json:"allowUnsupported"`
	Distribution         string          `json:"distribution"`
	ControlPlaneEndpoint *Endpoint       `json:"controlPlaneEndpoint,omitempty"`
	ClusterDomain        string          `json:"clusterDomain"`
	APIServerSANs        []string        `json:"apiServerSANs"`
	ImageRepository      string          `json:"imageRepository"`
	Upgrade              Upgrade         `json:"upgrade"`
	Timeouts             KubeadmTimeouts `json:"timeouts"`
	Kubelet              Kubelet         `json:"kubelet"`
}

// Kubelet is what clusterctl writes into the cluster's kubelet configuration.
type Kubelet struct {
	EvictionHard                map[string]string `json:"evictionHard,omitempty"`
	ImageGCHighThresholdPercent int               `json:"imageGCHighThresholdPercent,omitempty"`
	ImageGCLowThresholdPercent  int               `json:"imageGCLowThresholdPercent,omitempty"`
}

// KubeadmTimeouts are kubeadm's own waits; an empty one is health.timeout.
type KubeadmTimeouts struct {
	ControlPlaneComponentHealthCheck string `json:"controlPlaneComponentHealthCheck,omitempty"`
	KubeletHealthCheck               string `json:"kubeletHealthCheck,omitempty"`
	KubernetesAPICall                string `json:"kubernetesAPICall,omitempty"`
	EtcdAPICall                      string `json:"etcdAPICall,omitempty"`
	TLSBootstrap                     string `json:"tlsBootstrap,omitempty"`
	Discovery                        string `json:"discovery,omitempty"`
}

// Upgrade shapes the roll of a version change through the nodes.
type Upgrade struct {
	MaxUnavailable int    `json:"maxUnavailable"`
	DrainTimeout   string `json:"drainTimeout"`
}

type Endpoint struct {
	Mode    string `json:"mode"`
	Address string `json:"address,omitempty"`
	Port    int    `json:"port"`
}

type Network struct {
	PodCIDR       string `json:"podCIDR"`
	ServiceCIDR   string `json:"serviceCIDR"`
	KubeProxyMode string `json:"kubeProxyMode"`
	CNI           string `json:"cni"`
}

type Runtime struct {
	Name               string              `json:"name"`
	Version            string              `json:"version,omitempty"`
	Mirrors            map[string][]string `json:"mirrors"`
	SandboxImage       string              `json:"sandboxImage"`
	InsecureRegistries []string            `json:"insecureRegistries"`
	CgroupDriver       string              `json:"cgroupDriver"`
}

type SSH struct {
	User           string   `json:"user"`
	Port           int      `json:"port"`
	IdentityFile   string   `json:"identityFile,omitempty"`
	PassphraseEnv  string   `json:"passphraseEnv,omitempty"`
	KnownHostsFile string   `json:"knownHostsFile"`
	HostKeyPolicy  string   `json:"hostKeyPolicy"`
	Bastion        *Bastion `json:"bastion,omitempty"`
	Sudo           Sudo     `json:"sudo"`
	ConnectTimeout string   `json:"connectTimeout"`
	// Config is an OpenSSH client config file to honour ("" = none).
	Config string `json:"config,omitempty"`
}

type Bastion struct {
	Address      string `json:"address"`
	Port         int    `json:"port"`
	User         string `json:"user,omitempty"`
	IdentityFile string `json:"identityFile,omitempty"`
}

type Sudo struct {
	Enabled     *bool  `json:"enabled,omitempty"`
	PasswordEnv string `json:"passwordEnv,omitempty"`
}

// HostSSH holds per-host overrides; nil/zero fields keep the cluster default.
type HostSSH struct {
	User          string   `json:"user,omitempty"`
	Port          int      `json:"port,omitempty"`
	IdentityFile  string   `json:"identityFile,omitempty"`
	PassphraseEnv string   `json:"passphraseEnv,omitempty"`
	Bastion       *Bastion `json:"bastion,omitempty"`
	Sudo          *Sudo    `json:"sudo,omitempty"`
}

type Host struct {
	Address  string            `json:"address"`
	Roles    []string          `json:"roles"`
	SSH      *HostSSH          `json:"ssh,omitempty"`
	Labels   map[string]string `json:"labels"`
	Taints   []Taint           `json:"taints"`
	HostPrep *HostPrepOverride `json:"hostPrep,omitempty"`
}

// Role names used in hosts.NAME.roles.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// Has reports whether the host has role r.
func (h Host) Has(r string) bool {
	for _, x := range h.Roles {
		if x == r {
			return true
		}
	}
	return false
}

type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

type HostPrep struct {
	Swap            string            `json:"swap"`
	SELinux         string            `json:"selinux"`
	Sysctl          map[string]string `json:"sysctl"`
	KernelModules   []string          `json:"kernelModules"`
	Firewall        string            `json:"firewall"`
	TimeSync        TimeSync          `json:"timeSync"`
	EtcHosts        EtcHostsMode      `json:"etcHosts"`
	IgnorePreflight []string          `json:"ignorePreflight"`
}

// EtcHostsMode says which hosts the managed block of /etc/hosts lists.
type EtcHostsMode string

const (
	EtcHostsAll           EtcHostsMode = "all"            // every cluster host: O(hosts) lines on every host
	EtcHostsControlPlanes EtcHostsMode = "control-planes" // the control planes and the host itself
	EtcHostsNone          EtcHostsMode = "none"           // no block: a block written before is removed
	EtcHostsUnmanaged     EtcHostsMode = "unmanaged"      // /etc/hosts is left alone
)

// MarshalJSON writes "all" and "unmanaged" in the boolean form the field
// had, so the canonical JSON, and so the digest, of a spec written before
// the modes existed does not change.
func (m EtcHostsMode) MarshalJSON() ([]byte, error) {
	switch m {
	case EtcHostsAll:
		return []byte("true"), nil
	case EtcHostsUnmanaged:
		return []byte("false"), nil
	}
	return json.Marshal(string(m))
}

// UnmarshalJSON also reads the boolean the field used to be: true is "all",
// false is "unmanaged", so older specs keep their meaning.
func (m *EtcHostsMode) UnmarshalJSON(b []byte) error {
	var on bool
	if err := json.Unmarshal(b, &on); err == nil {
		*m = EtcHostsAll
		if !on {
			*m = EtcHostsUnmanaged
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("decode etcHosts: %w", err)
	}
	*m = EtcHostsMode(s)
	return nil
}

type TimeSync struct {
	Enabled bool     `json:"enabled"`
	Servers []string `json:"servers"`
}

type HostPrepOverride struct {
	Swap          *string           `json:"swap,omitempty"`
	SELinux       *string           `json:"selinux,omitempty"`
	Sysctl        map[string]string `json:"sysctl,omitempty"`
	KernelModules []string          `json:"kernelModules,omitempty"`
	Firewall      *string           `json:"firewall,omitempty"`
	TimeSync      *struct {
		Enabled *bool    `json:"enabled,omitempty"`
		Servers []string `json:"servers,omitempty"`
	} `json:"timeSync,omitempty"`
	EtcHosts        *EtcHostsMode `json:"etcHosts,omitempty"`
	IgnorePreflight []string      `json:"ignorePreflight,omitempty"`
}

type Artifacts struct {
	Mode      string              `json:"mode"`
	BundleDir string              `json:"bundleDir,omitempty"`
	URLs      map[string]Artifact `json:"urls"`
}

type Artifact struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

type Manifest struct {
	Path      string `json:"path"`
	Namespace string `json:"namespace,omitempty"`
	Wait      bool   `json:"wait"`
}

type Health struct {
	Timeout string           `json:"timeout"`
	Probes  map[string]Probe `json:"probes"`
}

type Probe struct {
	URL    string `json:"url"`
	Status int    `json:"status"`
}
