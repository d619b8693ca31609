package kube

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
)

// clusterVersions is what the first control plane says about the versions
// the cluster runs, in one round trip.
type clusterVersions struct {
	// exists: the control plane has an admin.conf (a cluster was made).
	exists bool
	// kubelets are the nodes' reported kubelet versions (no "v").
	kubelets map[string]string
	// unschedulable nodes, and the value of CordonAnnotation on nodes
	// clusterctl cordoned.
	unschedulable map[string]bool
	cordoned      map[string]string
	// apiServers are the versions of each control plane's kube-apiserver
	// pod (its image tag), by node.
	apiServers map[string]string
	// config is kubeadm-config's kubernetesVersion, which `kubeadm upgrade
	// apply` moves and `kubeadm upgrade node` follows.
	config string
}

const (
	noCluster       = "@@no-cluster"
	nodesJSONPath   = `{range .items[*]}node|{.metadata.name}|{.status.nodeInfo.kubeletVersion}|{.spec.unschedulable}|{.metadata.annotations.clusterctl\.dev/upgrade-cordoned}{"\n"}{end}`
	apiPodsJSONPath = `{range .items[*]}apiserver|{.spec.nodeName}|{.spec.containers[0].image}{"\n"}{end}`
)

// clusterVersionsLine asks through admin.conf, after waiting up to 30
// seconds for the API server (it restarts during control-plane upgrades).
func clusterVersionsLine() string {
	k := Kubectl + " --request-timeout=10s"
	return "if [ ! -e " + AdminConf + " ]; then echo " + noCluster + "; exit 0; fi; " +
		"i=0; until " + k + " get --raw=/readyz >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge 15 ]; then break; fi; sleep 2; done; " +
		k + " get nodes -o jsonpath=" + host.Quote(nodesJSONPath) + " && " +
		k + " -n kube-system get pods -l component=kube-apiserver -o jsonpath=" + host.Quote(apiPodsJSONPath) + " && " +
		"echo \"config|$(" + k + " -n kube-system get configmap kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' | sed -n 's/^kubernetesVersion: *//p')\""
}

func probeCluster(ctx context.Context, cp host.Host) (clusterVersions, error) {
	out, err := runOut(ctx, cp, clusterVersionsLine())
	if err != nil {
		return clusterVersions{}, fmt.Errorf("ask %s for the cluster's versions: %w", cp.Name(), err)
	}
	return parseClusterVersions(out), nil
}

func parseClusterVersions(out string) clusterVersions {
	cv := clusterVersions{kubelets: map[string]string{}, unschedulable: map[string]bool{}, cordoned: map[string]string{}, apiServers: map[string]string{}}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(l), "|")
		switch {
		case f[0] == noCluster:
			return cv
		case f[0] == "node" && len(f) == 5:
			cv.exists = true
			cv.kubelets[f[1]] = strings.TrimPrefix(f[2], "v")
			cv.unschedulable[f[1]] = f[3] == "true"
			if f[4] != "" {
				cv.cordoned[f[1]] = f[4]
			}
		case f[0] == "apiserver" && len(f) == 3:
			cv.apiServers[f[1]] = imageTag(f[2])
		case f[0] == "config" && len(f) == 2:
			cv.exists = true
			cv.config = strings.Trim(strings.TrimPrefix(strings.TrimSpace(f[1]), "v"), `"'`)
		}
	}
	return cv
}

// imageTag is an image reference's tag without "v" ("" without one).
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	base := path.Base(ref)
	i := strings.LastIndexByte(base, ':')
	if i < 0 {
		return ""
	}
	return strings.TrimPrefix(base[i+1:], "v")
}

// oldestAPIServer is the lowest API server version (kubeadm-config's when
// no kube-apiserver pod is listed).
func (cv clusterVersions) oldestAPIServer() string {
	vs := make([]string, 0, len(cv.apiServers))
	for _, v := range cv.apiServers {
		vs = append(vs, v)
	}
	if o := oldest(vs...); o != "" {
		return o
	}
	return cv.config
}

// all lists every version the cluster runs (API servers and kubelets).
func (cv clusterVersions) all() []string {
	var vs []string
	for _, m := range []map[string]string{cv.apiServers, cv.kubelets} {
		for _, k := range sortedKeys(m) {
			vs = append(vs, m[k])
		}
	}
	return vs
}

// nodeVersions is what a node says about its own binaries and static pods.
type nodeVersions struct {
	kubelet, kubeadm, kubectl string // installed binaries (no "v"; "" absent)
	member                    bool   // kubelet.conf: the node joined a cluster
	apiServer                 string // its kube-apiserver manifest's image tag
}

const nodeVersionsLine = "echo \"kubelet=$(kubelet --version 2>/dev/null | awk '{print $2}')\"; " +
	"echo \"kubeadm=$(kubeadm version -o short 2>/dev/null)\"; " +
	"echo \"kubectl=$(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: *//p')\"; " +
	"if [ -e " + KubeletConf + " ]; then echo member=yes; fi; " +
	"if [ -e " + ManifestsDir + "/kube-apiserver.yaml ]; then echo \"apiserver=$(sed -n 's/^ *image: *//p' " + ManifestsDir + "/kube-apiserver.yaml | head -n 1)\"; fi; true"

func probeNodeVersions(ctx context.Context, h host.Host) (nodeVersions, error) {
	out, err := runOut(ctx, h, nodeVersionsLine)
	if err != nil {
		return nodeVersions{}, fmt.Errorf("ask for the installed Kubernetes versions: %w", err)
	}
	var nv nodeVersions
	for _, l := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		v = strings.TrimSpace(v)
		switch k {
		case "kubelet":
			nv.kubelet = strings.TrimPrefix(v, "v")
		case "kubeadm":
			nv.kubeadm = strings.TrimPrefix(v, "v")
		case "kubectl":
			nv.kubectl = strings.TrimPrefix(v, "v")
		case "member":
			nv.member = v == "yes"
		case "apiserver":
			nv.apiServer = imageTag(v)
		}
	}
	return nv, nil
}
