package kube

import (
	"context"
	"fmt"
	"strings"

	"github.com/clusterctl/clusterctl/manifests"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
)

// Where Kubernetes lives on a node. Binaries go where distribution packages
// put them, so every PATH finds them (sudo's secure_path on RHEL lacks
// /usr/local/bin, and kubeadm's preflight runs `kubelet` by name).
const (
	BinDir       = "/usr/bin"
	UnitFile     = "/etc/systemd/system/kubelet.service"
	DropInFile   = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
	DefaultsFile = "/etc/default/kubelet"
	// KubeletResolvConf is the resolv.conf pods get on hosts whose own
	// names only loopback resolvers (see Install).
	KubeletResolvConf = "/etc/kubernetes/kubelet-resolv.conf"
	CNIBinDir         = "/opt/cni/bin"
	FlannelCNI        = CNIBinDir + "/flannel"

	AdminConf            = "/etc/kubernetes/admin.conf"
	KubeletConf          = "/etc/kubernetes/kubelet.conf"
	BootstrapKubeletConf = "/etc/kubernetes/bootstrap-kubelet.conf"
	CACert               = "/etc/kubernetes/pki/ca.crt"
	ManifestsDir         = "/etc/kubernetes/manifests"
	// ConfigDir holds the kubeadm configs clusterctl uploads; they carry
	// short-lived secrets and are removed once kubeadm has read them.
	ConfigDir = "/etc/kubernetes/clusterctl"
	// LogDir keeps the full output of kubeadm runs on the host (mode 0700:
	// kubeadm prints join commands).
	LogDir = "/var/log/clusterctl"

	CRISocket = "unix:///run/containerd/containerd.sock"
	// Kubectl runs kubectl as the cluster admin on a control plane.
	Kubectl = "kubectl --kubeconfig=" + AdminConf
)

// runOut runs line on h and returns its stdout.
func runOut(ctx context.Context, h host.Host, line string) (string, error) {
	return host.Output(ctx, h, line)
}

// yamlString quotes s as a YAML double-quoted scalar, so no spec value can
// change a rendered document's shape.
var yamlString = manifests.Quote

// GitVersion is the "v"-prefixed form of a version Kubernetes prints.
func GitVersion(v string) string {
	if strings.HasPrefix(v, "v") {
		return v
	}
	return "v" + v
}

// peer is the host named by a step's Via field.
func peer(t step.Target, name string) (host.Host, error) {
	if h, ok := t.Peers[name]; ok && h != nil {
		return h, nil
	}
	return nil, fmt.Errorf("host %s (the first control plane) is not connected", name)
}
