package k3s

import (
	"context"

	"github.com/clusterctl/clusterctl/manifests"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// Where k3s lives on a node: the paths k3s documents and its install
// script uses, so k3s's own tools and documentation apply unchanged. The
// binary is always called by its full path: sudo's secure_path on RHEL
// lacks /usr/local/bin.
const (
	BinPath = "/usr/local/bin/k3s"
	// LinkDir holds the kubectl, crictl and ctr links to k3s that the
	// install script would make (only where no such command exists).
	LinkDir = "/usr/local/bin"

	ConfigDir      = "/etc/rancher/k3s"
	ConfigFile     = ConfigDir + "/config.yaml"
	RegistriesFile = ConfigDir + "/registries.yaml"
	// TokenFile holds the join token of a joining server or agent (mode
	// 0600): config.yaml names it (token-file), so config.yaml holds no
	// secret and can be shown in plans.
	TokenFile = ConfigDir + "/token"
	// KubeconfigFile is the admin kubeconfig k3s writes on every server.
	KubeconfigFile = ConfigDir + "/k3s.yaml"

	DataDir = "/var/lib/rancher/k3s"
	// ImagesDir is where k3s imports image archives from at every start
	// (air-gapped installs need no registry).
	ImagesDir = DataDir + "/agent/images"
	// ServerTokenFile is the server token (secure format), written by the
	// first server; AgentTokenFile the agent token (a link to the server
	// token when no agent token is configured). See the k3s docs, cli/token.md.
	ServerTokenFile = DataDir + "/server/token"
	AgentTokenFile  = DataDir + "/server/agent-token"

	UnitDir = "/etc/systemd/system"
	// LogDir is clusterctl's log directory on hosts (as the kubeadm driver's).
	LogDir = kube.LogDir

	// Kubectl runs kubectl as the cluster admin on a server.
	Kubectl = BinPath + " kubectl --kubeconfig=" + KubeconfigFile
)

// Roles a k3s node runs as.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
)

// Admin is how cluster-wide steps (manifests, health) run kubectl on the
// first server.
func Admin() kube.Admin { return kube.Admin{Kubectl: Kubectl, Kubeconfig: KubeconfigFile} }

// unit is the systemd unit of a role: k3s.service for servers,
// k3s-agent.service for agents (the install script's names).
func unit(role string) string {
	if role == RoleAgent {
		return "k3s-agent.service"
	}
	return "k3s.service"
}

func unitFile(role string) string { return UnitDir + "/" + unit(role) }

// yamlString quotes s as a YAML double-quoted scalar, so no spec value can
// change the shape of a rendered file.
var yamlString = manifests.Quote

// runOut runs line on h and returns its stdout.
func runOut(ctx context.Context, h host.Host, line string) (string, error) {
	return host.Output(ctx, h, line)
}
