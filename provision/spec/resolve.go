package spec

import "sort"

// ControlPlanes returns control-plane host names in spec order; the first
// initialises the cluster.
func (c *Cluster) ControlPlanes() []string { return c.withRole(RoleControlPlane) }

// Workers returns worker host names (hosts with the worker role and no
// control-plane role) in spec order.
func (c *Cluster) Workers() []string {
	var out []string
	for _, n := range c.order() {
		h := c.Hosts[n]
		if h.Has(RoleWorker) && !h.Has(RoleControlPlane) {
			out = append(out, n)
		}
	}
	return out
}

func (c *Cluster) withRole(r string) []string {
	var out []string
	for _, n := range c.order() {
		if c.Hosts[n].Has(r) {
			out = append(out, n)
		}
	}
	return out
}

// order is HostOrder, or sorted names for a Cluster built in code.
func (c *Cluster) order() []string {
	if len(c.HostOrder) == len(c.Hosts) {
		return c.HostOrder
	}
	names := make([]string, 0, len(c.Hosts))
	for n := range c.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Names returns every host name in spec order.
func (c *Cluster) Names() []string { return c.order() }

// HostPrepFor merges the host's overrides over the cluster's hostPrep.
func (c *Cluster) HostPrepFor(name string) HostPrep {
	hp := c.HostPrep
	hp.Sysctl = make(map[string]string, len(c.HostPrep.Sysctl))
	for k, v := range c.HostPrep.Sysctl {
		hp.Sysctl[k] = v
	}
	o := c.Hosts[name].HostPrep
	if o == nil {
		return hp
	}
	if o.Swap != nil {
		hp.Swap = *o.Swap
	}
	if o.SELinux != nil {
		hp.SELinux = *o.SELinux
	}
	for k, v := range o.Sysctl {
		hp.Sysctl[k] = v
	}
	if o.KernelModules != nil {
		hp.KernelModules = o.KernelModules
	}
	if o.Firewall != nil {
		hp.Firewall = *o.Firewall
	}
	if o.TimeSync != nil {
		if o.TimeSync.Enabled != nil {
			hp.TimeSync.Enabled = *o.TimeSync.Enabled
		}
		if o.TimeSync.Servers != nil {
			hp.TimeSync.Servers = o.TimeSync.Servers
		}
	}
	if o.EtcHosts != nil {
		hp.EtcHosts = *o.EtcHosts
	}
	if o.IgnorePreflight != nil {
		hp.IgnorePreflight = o.IgnorePreflight
	}
	return hp
}

// HostSSHConfig is the effective SSH setting for one host.
type HostSSHConfig struct {
	Address        string
	User           string
	Port           int
	IdentityFile   string
	PassphraseEnv  string
	KnownHostsFile string
	HostKeyPolicy  string
	Bastion        *Bastion
	Sudo           bool
	// SudoPasswordEnv names the variable with the sudo password ("" = none).
	SudoPasswordEnv string
	ConnectTimeout  string
	// ConfigFile is the OpenSSH client config to honour ("" = none).
	ConfigFile string
	// Written names the settings the spec wrote for this host (user,
	// port, identityFile, knownHostsFile, hostKeyPolicy, bastion), as
	// opposed to schema defaults: those win over ConfigFile. "sudo" means
	// sudo.enabled was written; otherwise Sudo follows the final user.
	Written map[string]bool
}

// SSHFor merges the host's overrides over the cluster's ssh defaults.
func (c *Cluster) SSHFor(name string) HostSSHConfig {
	s := c.SSH
	out := HostSSHConfig{
		Address:        c.Hosts[name].Address,
		User:           s.User,
		Port:           s.Port,
		IdentityFile:   s.IdentityFile,
		PassphraseEnv:  s.PassphraseEnv,
		KnownHostsFile: s.KnownHostsFile,
		HostKeyPolicy:  s.HostKeyPolicy,
		Bastion:        s.Bastion,
		ConnectTimeout: s.ConnectTimeout,
		ConfigFile:     s.Config,
		Written:        map[string]bool{},
	}
	for f, ok := range c.SSHWritten {
		out.Written[f] = ok
	}
	sudo := s.Sudo
	if o := c.Hosts[name].SSH; o != nil {
		if o.User != "" {
			out.User = o.User
		}
		if o.Port != 0 {
			out.Port = o.Port
		}
		if o.IdentityFile != "" {
			out.IdentityFile = o.IdentityFile
		}
		if o.PassphraseEnv != "" {
			out.PassphraseEnv = o.PassphraseEnv
		}
		if o.Bastion != nil {
			out.Bastion = o.Bastion
		}
		if o.Sudo != nil {
			if o.Sudo.Enabled != nil {
				sudo.Enabled = o.Sudo.Enabled
			}
			if o.Sudo.PasswordEnv != "" {
				sudo.PasswordEnv = o.Sudo.PasswordEnv
			}
		}
	}
	out.Sudo = out.User != "root"
	if sudo.Enabled != nil {
		out.Sudo = *sudo.Enabled
		out.Written["sudo"] = true
	}
	out.SudoPasswordEnv = sudo.PasswordEnv
	if o := c.Hosts[name].SSH; o != nil {
		out.Written["user"] = out.Written["user"] || o.User != ""
		out.Written["port"] = out.Written["port"] || o.Port != 0
	}
	out.Written["identityFile"] = out.IdentityFile != ""
	out.Written["bastion"] = out.Bastion != nil
	return out
}
