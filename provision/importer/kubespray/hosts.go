package kubespray

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// specHost is one cluster host as the spec will say it.
type specHost struct {
	name                 string
	address              string
	addressFrom          string
	controlPlane, worker bool
	ssh                  [][2]string // per-host overrides of cluster ssh
}

func (h specHost) write(w *cueWriter) {
	var roles []string
	if h.controlPlane {
		roles = append(roles, cueString("control-plane"))
	}
	if h.worker {
		roles = append(roles, cueString("worker"))
	}
	fields := [][2]string{{"address", cueString(h.address)}, {"roles", "[" + strings.Join(roles, ", ") + "]"}}
	if len(h.ssh) > 0 {
		var parts []string
		for _, f := range h.ssh {
			parts = append(parts, f[0]+": "+f[1])
		}
		fields = append(fields, [2]string{"ssh", "{" + strings.Join(parts, ", ") + "}"})
	}
	w.inline(cueString(h.name), h.addressFrom, fields...)
}

// hosts maps the members of kube_control_plane and kube_node, in inventory
// order, and reports etcd placement and hosts outside the cluster.
func (c *converter) hosts() ([]specHost, error) {
	var out []specHost
	var errs []error
	for _, name := range c.inv.HostOrder {
		cp, worker := c.in(groupControlPlane, name), c.in(groupNode, name)
		if !cp && !worker {
			continue
		}
		h, err := c.host(name, cp, worker)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, h)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, errNoHosts
	}
	c.etcd(c.inv.Members(groupControlPlane))
	for _, name := range c.inv.HostOrder {
		if !c.in(groupControlPlane, name) && !c.in(groupNode, name) && !c.in(groupEtcd, name) && !c.in(groupBastion, name) {
			c.report("host "+name, "in neither kube_control_plane nor kube_node: not a cluster node, left out")
		}
	}
	return out, nil
}

// etcd reports what stacked etcd cannot express: members off the control
// planes, control planes without a member, and a host-deployed etcd.
func (c *converter) etcd(cps []string) {
	members := c.inv.Members(groupEtcd)
	for _, m := range members {
		if !c.in(groupControlPlane, m) {
			c.report("group etcd", "%s is not in kube_control_plane: clusterctl has stacked etcd only (one member on each control plane)", m)
		}
	}
	for _, cp := range cps {
		if len(members) > 0 && !c.in(groupEtcd, cp) {
			c.report("group etcd", "control plane %s is not in etcd: clusterctl runs an etcd member on every control plane", cp)
		}
	}
	if t, set := c.strOrDefault("etcd_deployment_type"); t != "kubeadm" && t != "" {
		c.report("etcd_deployment_type", "%q (%s): kubespray runs etcd outside kubeadm; clusterctl runs it stacked on the control planes as kubeadm static pods", t, source(set, "etcd_deployment_type"))
	}
}

// hostVars merges what one host sees, in Ansible's order: cluster-wide
// variables, then its other groups (parents before children, by name), then
// its own host vars.
func (c *converter) hostVars(name string) map[string]any {
	out := map[string]any{}
	merge(out, c.vars)
	for _, g := range c.groupsOf(name) {
		if grp := c.inv.Groups[g]; grp != nil {
			merge(out, grp.Vars)
		}
		merge(out, c.gv[g])
	}
	merge(out, c.inv.Hosts[name])
	return out
}

// groupsOf lists the groups (other than all and k8s_cluster) that hold host
// directly or through children, shallowest first.
func (c *converter) groupsOf(host string) []string {
	depth := map[string]int{}
	var visit func(g string, d int)
	visit = func(g string, d int) {
		if old, ok := depth[g]; (ok && old >= d) || d > 64 {
			return
		}
		depth[g] = d
		grp := c.inv.Groups[g]
		if grp == nil {
			return
		}
		for _, ch := range grp.Children {
			visit(ch, d+1)
		}
	}
	for _, top := range []string{"all", groupCluster} {
		if c.inv.Groups[top] != nil {
			visit(top, 0)
		}
	}
	var out []string
	for _, g := range sortedKeys(c.inv.Groups) {
		if g == "all" || g == groupCluster || !c.in(g, host) {
			continue
		}
		out = append(out, g)
	}
	sort.SliceStable(out, func(i, j int) bool { return depth[out[i]] < depth[out[j]] })
	return out
}

func (c *converter) host(name string, cp, worker bool) (specHost, error) {
	h := specHost{name: name, controlPlane: cp, worker: worker}
	if !matches("#DNSLabel", name) {
		hint := ""
		if strings.ContainsAny(name, "[]") {
			hint = "; expand host ranges such as node[1:3]"
		}
		return h, fmt.Errorf("host %q: the spec names hosts (and Kubernetes its nodes) with DNS labels: lowercase letters, digits and '-'%s", name, hint)
	}
	vars := c.hostVars(name)
	get := func(k string) (string, bool) {
		s, ok := scalar(vars[k])
		if !ok || s == "" {
			return "", false
		}
		if isTemplate(s) {
			c.report(name+": "+k, "%q is a Jinja template: clusterctl does not evaluate templates", s)
			return "", false
		}
		return s, true
	}
	// kubespray: ip is the node's own address, access_ip how others reach
	// it, ansible_host where Ansible connects. The spec has one address.
	for _, k := range []string{"ip", "access_ip", "ansible_host"} {
		if s, ok := get(k); ok && isIP(s) {
			h.address, h.addressFrom = s, k
			break
		}
	}
	if h.address == "" && isIP(name) {
		h.address, h.addressFrom = name, "the inventory host name"
	}
	if h.address == "" {
		return h, fmt.Errorf("host %s: no IP address in ip, access_ip or ansible_host: the spec needs one", name)
	}
	for _, k := range []string{"ip", "access_ip", "ansible_host"} {
		if s, ok := get(k); ok && k != h.addressFrom && s != h.address {
			c.report(name+": "+k, "%q differs from the address %s (from %s): clusterctl has one address per host, for SSH and for the node, reachable from where it runs (or through ssh.bastion)", s, h.address, h.addressFrom)
		}
	}
	c.hostSSH(&h, get)
	return h, nil
}

// hostSSH keeps the SSH settings that differ from the cluster-wide ones.
func (c *converter) hostSSH(h *specHost, get func(string) (string, bool)) {
	cluster := func(k string) string { s, _ := scalar(c.vars[k]); return s }
	if u, ok := get("ansible_user"); ok && u != cluster("ansible_user") {
		if matches("#UserName", u) {
			h.ssh = append(h.ssh, [2]string{"user", cueString(u)})
		} else {
			c.report(h.name+": ansible_user", "%q is not a user name the spec accepts", u)
		}
	}
	if p, ok := get("ansible_port"); ok && p != cluster("ansible_port") {
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
			h.ssh = append(h.ssh, [2]string{"port", strconv.Itoa(n)})
		} else {
			c.report(h.name+": ansible_port", "%q is not a port", p)
		}
	}
	if k, ok := get("ansible_ssh_private_key_file"); ok && k != cluster("ansible_ssh_private_key_file") {
		h.ssh = append(h.ssh, [2]string{"identityFile", cueString(k)})
	}
	for _, k := range sortedKeys(c.inv.Hosts[h.name]) {
		if !contains(hostVarNames, k) {
			c.report(h.name+": "+k, "%s", genericReason(k))
		}
	}
}

// in reports whether host is a member of group, directly or through
// children; memberships are computed once per group (inventories run to
// thousands of hosts).
func (c *converter) in(group, host string) bool {
	set, ok := c.members[group]
	if !ok {
		set = map[string]bool{}
		for _, h := range c.inv.Members(group) {
			set[h] = true
		}
		c.members[group] = set
	}
	return set[host]
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil && matches("#IP", s)
}
