package testhosts

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// InventoryOptions shape the cluster spec that WriteInventory writes.
type InventoryOptions struct {
	Name          string // cluster name; default "local"
	User          string // SSH user; default "root" (tester and tester-pw also accept the key)
	ControlPlanes int    // the first ControlPlanes hosts are control planes, the others workers; default 1
}

// Inventory defaults for the Kubernetes section of the spec.
const (
	KubernetesVersion      = "1.37.2"
	KubernetesDistribution = "kubeadm"
)

// WriteInventory writes a CUE cluster spec (package clusterctl) for the hosts to path, with the test key and
// known_hosts, so clusterctl can be pointed at the running hosts.
func (c *Cluster) WriteInventory(path string, opt InventoryOptions) error {
	b, err := c.Inventory(opt)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	return nil
}

// Inventory returns the CUE cluster spec that WriteInventory writes.
func (c *Cluster) Inventory(opt InventoryOptions) ([]byte, error) {
	if opt.Name == "" {
		opt.Name = "local"
	}
	if opt.User == "" {
		opt.User = "root"
	}
	if opt.ControlPlanes == 0 {
		opt.ControlPlanes = 1
	}
	if opt.ControlPlanes < 0 || opt.ControlPlanes > len(c.Hosts) {
		return nil, fmt.Errorf("inventory: %d control planes for %d hosts", opt.ControlPlanes, len(c.Hosts))
	}
	var b strings.Builder
	b.WriteString("package clusterctl\n\ncluster: {\n")
	fmt.Fprintf(&b, "\tname: %s\n", strconv.Quote(opt.Name))
	endpoint := ""
	if opt.ControlPlanes > 1 {
		// Several control planes need one endpoint; node-local needs no VIP.
		endpoint = `, controlPlaneEndpoint: mode: "node-local"`
	}
	fmt.Fprintf(&b, "\tkubernetes: {version: %s, distribution: %s%s}\n",
		strconv.Quote(KubernetesVersion), strconv.Quote(KubernetesDistribution), endpoint)
	fmt.Fprintf(&b, "\tssh: {user: %s, identityFile: %s, knownHostsFile: %s}\n",
		strconv.Quote(opt.User), strconv.Quote(c.KeyFile), strconv.Quote(c.KnownHosts))
	b.WriteString("\thosts: {\n")
	for k, h := range c.Hosts {
		role := "worker"
		if k < opt.ControlPlanes {
			role = "control-plane"
		}
		fmt.Fprintf(&b, "\t\t%s: {address: %s, roles: [%s]}\n", h.Name, strconv.Quote(h.Addr), strconv.Quote(role))
	}
	b.WriteString("\t}\n}\n")
	return []byte(b.String()), nil
}
