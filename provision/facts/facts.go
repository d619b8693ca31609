// Package facts learns what a host is right now, in one round trip: the probe
// script, its parser and the typed result.
package facts

// Facts is what one host reported. Zero values mean "not reported".
type Facts struct {
	Host string `json:"host"`

	OSID      string `json:"osID"`      // "debian", "rhel", ...
	OSVersion string `json:"osVersion"` // VERSION_ID
	OSFamily  string `json:"osFamily"`  // "debian" | "rhel" | "other"
	Arch      string `json:"arch"`      // uname -m
	Kernel    string `json:"kernel"`
	Init      string `json:"init"`          // "systemd" | "other"
	CgroupV   int    `json:"cgroupVersion"` // 1 or 2
	Hostname  string `json:"hostname"`

	SwapDevices []string `json:"swapDevices"`
	FstabSwap   []string `json:"fstabSwap"` // uncommented swap lines in /etc/fstab
	SELinux     string   `json:"selinux"`   // "enforcing" | "permissive" | "disabled" | "absent"

	Sysctl map[string]string `json:"sysctl"` // current value of each key asked for; missing key absent
	// SysctlUnknown lists keys asked for that are absent from a /proc/sys
	// directory that exists: this kernel has no such parameter (a typo, or
	// a feature it lacks). A key whose directory is absent too (net.bridge.*
	// before br_netfilter loads) is in neither map nor list.
	SysctlUnknown []string          `json:"sysctlUnknown,omitempty"`
	Modules       map[string]string `json:"modules"` // name -> "loaded" | "builtin" | "available" | "missing"

	PackageManager string            `json:"packageManager"` // "apt" | "dnf" | "yum" | ""
	Packages       map[string]string `json:"packages"`       // name -> installed version ("" = absent)
	Firewall       string            `json:"firewall"`       // "firewalld" | "ufw" | "none"
	FirewallActive bool              `json:"firewallActive"`
	TimeSync       string            `json:"timeSync"` // "chrony" | "systemd-timesyncd" | "none"
	TimeSyncActive bool              `json:"timeSyncActive"`

	Containerd       string `json:"containerd"`       // version, "" = absent
	ContainerdActive bool   `json:"containerdActive"` // service running
	Kubelet          string `json:"kubelet"`
	Kubeadm          string `json:"kubeadm"`
	K3s              string `json:"k3s"`

	// Files maps each requested path to its sha256, "missing" or "unreadable".
	Files map[string]string `json:"files"`
	// Services maps unit name -> "enabled/active" (systemctl is-enabled / is-active).
	Services map[string]string `json:"services"`

	DiskFreeMB map[string]int64 `json:"diskFreeMB"` // mount point -> free MiB
	EtcHosts   []string         `json:"etcHosts"`   // non-comment lines

	osLike string // ID_LIKE, only to derive OSFamily
}
