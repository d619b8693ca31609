package addons

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// Markers between the sections of the look's output.
const (
	markReadyz  = "@@readyz"
	markEtcd    = "@@etcd"
	markMembers = "@@members"
	markObjects = "@@objects"
	markProbes  = "@@probes"
	noCurl      = "no curl"
)

// kubeadm's etcd pod mounts its certificates at the host's path; the
// health-check client certificate is made for exactly this.
const etcdctl = "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt" +
	" --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key" +
	" --dial-timeout=3s --command-timeout=5s endpoint health --cluster -w json"

// lookScript is the one command of a look, run on control plane node:
// /readyz (and /readyz/etcd when it fails), every etcd member's health
// through the node's etcd pod, every node, pod and workload in one list,
// and the probes with curl (or a note that there is none).
func lookScript(node string, probes []Probe) string {
	var b strings.Builder
	b.WriteString("echo " + markReadyz + "; r=$(" + kube.Kubectl + " --request-timeout=10s get --raw=/readyz 2>&1); echo \"$r\"; ")
	// /readyz covers etcd: ask etcd's own check only to say why it failed.
	b.WriteString("echo " + markEtcd + "; if [ \"$r\" = ok ]; then echo ok; else " + kube.Kubectl + " --request-timeout=10s get --raw=/readyz/etcd 2>&1; echo; fi; ")
	b.WriteString("echo " + markMembers + "; timeout 20 " + kube.Kubectl + " --request-timeout=15s -n kube-system exec " +
		host.Quote("etcd-"+node) + " -- " + etcdctl + " 2>&1; echo; ")
	b.WriteString("echo " + markObjects + "; " + kube.Kubectl + " --request-timeout=20s get nodes,pods,deployments,daemonsets,statefulsets -A -o json 2>&1; ")
	b.WriteString("echo " + markProbes + "; ")
	if len(probes) > 0 {
		b.WriteString("if command -v curl >/dev/null 2>&1; then ")
		for i, p := range probes {
			fmt.Fprintf(&b, "printf '%d '; curl -s -o /dev/null -m %d -w '%%{http_code}\\n' -- %s || echo 000; ", i, int(probeTimeout.Seconds()), host.Quote(p.URL))
		}
		b.WriteString("else echo " + host.Quote(noCurl) + "; fi; ")
	}
	b.WriteString("true")
	return b.String()
}

// Look takes one look at the cluster from control plane h, in one round
// trip, and judges it against e. The error is for a look that could not
// run (the host did not answer); everything the cluster says is in the
// report.
func Look(ctx context.Context, h host.Host, e Expect) (*Report, error) {
	var out strings.Builder
	if err := h.Run(ctx, host.Cmd{Line: lookScript(h.Name(), e.Probes), Stdout: &out}); err != nil {
		return nil, fmt.Errorf("look at the cluster: %w", err)
	}
	sections := map[string]string{}
	cur := ""
	for _, l := range strings.SplitAfter(out.String(), "\n") {
		switch t := strings.TrimSpace(l); t {
		case markReadyz, markEtcd, markMembers, markObjects, markProbes:
			cur = t
			continue
		}
		sections[cur] += l
	}
	r := NewReport(e, "")
	r.CheckedFrom = h.Name()
	r.APIServer = readCheck(sections[markReadyz])
	r.Etcd.Check = readCheck(sections[markEtcd])
	addresses := r.readObjects(sections[markObjects])
	r.readMembers(sections[markMembers], addresses)
	r.readProbes(ctx, sections[markProbes])
	r.Judge()
	return r, nil
}

// readCheck reads a /readyz answer: "ok", or what went wrong.
func readCheck(raw string) Check {
	if s := strings.TrimSpace(raw); s == "ok" {
		return Check{Status: StatusOK}
	}
	return Check{Status: StatusFailed, Detail: firstLine(raw)}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if s == "" {
		return "no answer"
	}
	return s
}

// item is what a look reads of any object of the list.
type item struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name       string            `json:"name"`
		Namespace  string            `json:"namespace"`
		Generation int64             `json:"generation"`
		Labels     map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Replicas *int32 `json:"replicas"`
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		// nodes and pods
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"conditions"`
		// nodes
		NodeInfo struct {
			KubeletVersion string `json:"kubeletVersion"`
		} `json:"nodeInfo"`
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
		// pods
		Phase             string `json:"phase"`
		ContainerStatuses []struct {
			Name  string `json:"name"`
			Ready bool   `json:"ready"`
			State struct {
				Waiting *struct {
					Reason string `json:"reason"`
				} `json:"waiting"`
			} `json:"state"`
		} `json:"containerStatuses"`
		// workloads
		ObservedGeneration     int64 `json:"observedGeneration"`
		Replicas               int32 `json:"replicas"`
		ReadyReplicas          int32 `json:"readyReplicas"`
		UpdatedReplicas        int32 `json:"updatedReplicas"`
		AvailableReplicas      int32 `json:"availableReplicas"`
		DesiredNumberScheduled int32 `json:"desiredNumberScheduled"`
		UpdatedNumberScheduled int32 `json:"updatedNumberScheduled"`
		NumberAvailable        int32 `json:"numberAvailable"`
	} `json:"status"`
}

func (it item) condition(t string) (status, reason string) {
	for _, c := range it.Status.Conditions {
		if c.Type == t {
			return c.Status, c.Reason
		}
	}
	return "Unknown", ""
}

func (it item) name() string {
	if it.Metadata.Namespace != "" {
		return it.Metadata.Namespace + "/" + it.Metadata.Name
	}
	return it.Metadata.Name
}

// roles are the node's node-role.kubernetes.io/ROLE labels.
func (it item) roles() []string {
	roles := []string{}
	for k := range it.Metadata.Labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			roles = append(roles, r)
		}
	}
	slices.Sort(roles)
	return roles
}

// readObjects reads the nodes, pods and workloads into r and returns the
// nodes' addresses (address -> node name).
func (r *Report) readObjects(raw string) map[string]string {
	var list struct {
		Items []item `json:"items"`
	}
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		r.Objects = Check{Status: StatusFailed, Detail: firstLine(raw)}
		return nil
	}
	r.Objects = Check{Status: StatusOK}
	addresses := map[string]string{}
	for _, it := range list.Items {
		switch it.Kind {
		case "Node":
			n := r.Node(it.Metadata.Name)
			if n == nil {
				r.Nodes = append(r.Nodes, Node{Name: it.Metadata.Name})
				n = &r.Nodes[len(r.Nodes)-1]
			}
			n.Registered = true
			n.Roles = it.roles()
			n.Ready, n.ReadyReason = it.condition("Ready")
			n.KubeletVersion = it.Status.NodeInfo.KubeletVersion
			for _, a := range it.Status.Addresses {
				if a.Type == "InternalIP" {
					addresses[a.Address] = it.Metadata.Name
				}
			}
		case "Pod":
			if it.Metadata.Namespace == "kube-system" {
				if p := podProblem(it); p != "" {
					r.Pods = append(r.Pods, Pod{Name: it.name(), Node: it.Spec.NodeName, Phase: it.Status.Phase, Problem: p})
				}
			}
		case "Deployment", "DaemonSet", "StatefulSet":
			if p := workloadProblem(it); p != "" {
				r.Workloads = append(r.Workloads, Workload{Kind: it.Kind, Name: it.name(), Problem: p})
			}
		}
	}
	return addresses
}

func podProblem(it item) string {
	switch it.Status.Phase {
	case "Succeeded":
		return ""
	case "Running":
	default:
		return orUnknown(it.Status.Phase)
	}
	for _, c := range it.Status.ContainerStatuses {
		if !c.Ready {
			if c.State.Waiting != nil && c.State.Waiting.Reason != "" {
				return "container " + c.Name + " " + c.State.Waiting.Reason
			}
			return "container " + c.Name + " not ready"
		}
	}
	// The node controller marks the pods of a node that stopped answering
	// not ready, leaving their containers as last reported.
	for _, c := range it.Status.Conditions {
		if c.Type == "Ready" && c.Status != "True" {
			if c.Reason != "" {
				return "not ready (" + c.Reason + ")"
			}
			return "not ready"
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

func workloadProblem(it item) string {
	s := it.Status
	if it.Metadata.Generation > s.ObservedGeneration {
		return "change not yet observed"
	}
	want := int32(1)
	if it.Spec.Replicas != nil {
		want = *it.Spec.Replicas
	}
	switch it.Kind {
	case "Deployment":
		if s.UpdatedReplicas < want || s.AvailableReplicas < want {
			return fmt.Sprintf("%d of %d replicas available (%d updated)", s.AvailableReplicas, want, s.UpdatedReplicas)
		}
	case "DaemonSet":
		if s.NumberAvailable < s.DesiredNumberScheduled || s.UpdatedNumberScheduled < s.DesiredNumberScheduled {
			return fmt.Sprintf("%d of %d pods available (%d updated)", s.NumberAvailable, s.DesiredNumberScheduled, s.UpdatedNumberScheduled)
		}
	case "StatefulSet":
		if s.ReadyReplicas < want || s.UpdatedReplicas < want {
			return fmt.Sprintf("%d of %d replicas ready (%d updated)", s.ReadyReplicas, want, s.UpdatedReplicas)
		}
	}
	return ""
}

// readMembers reads etcdctl's JSON answer (a list of endpoints, printed
// even when some are unhealthy, before etcdctl's own error line), naming
// each member by the node with its address.
func (r *Report) readMembers(raw string, addresses map[string]string) {
	var members []struct {
		Endpoint string `json:"endpoint"`
		Health   bool   `json:"health"`
		Error    string `json:"error"`
	}
	parsed := false
	for _, l := range strings.Split(raw, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "[") && json.Unmarshal([]byte(l), &members) == nil {
			parsed = true
			break
		}
	}
	if !parsed || len(members) == 0 {
		r.Etcd.MembersError = firstLine(raw)
		return
	}
	r.Etcd.Members = []EtcdMember{}
	for _, m := range members {
		em := EtcdMember{Endpoint: m.Endpoint, Healthy: m.Health, Error: m.Error}
		if u, err := url.Parse(m.Endpoint); err == nil {
			if h, _, err := net.SplitHostPort(u.Host); err == nil {
				em.Node = addresses[h]
			}
		}
		r.Etcd.Members = append(r.Etcd.Members, em)
	}
	slices.SortFunc(r.Etcd.Members, func(a, b EtcdMember) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.Endpoint, b.Endpoint)
	})
	if r.Etcd.Status == StatusOK {
		for _, m := range r.Etcd.Members {
			if !m.Healthy {
				r.Etcd.Check = Check{Status: StatusFailed}
				break
			}
		}
	}
}

// readProbes reads curl's answers ("INDEX STATUS"); without curl on the
// control plane, clusterctl probes from here.
func (r *Report) readProbes(ctx context.Context, raw string) {
	if strings.TrimSpace(raw) == noCurl {
		r.ProbeFromHere(ctx)
		return
	}
	for _, l := range strings.Split(raw, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		i, err1 := strconv.Atoi(f[0])
		code, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil && i >= 0 && i < len(r.Probes) {
			r.Probes[i].Got = code
			r.Probes[i].OK = code == r.Probes[i].Want
		}
	}
}

// ProbeFromHere answers the probes from the machine clusterctl runs on.
func (r *Report) ProbeFromHere(ctx context.Context) {
	for i := range r.Probes {
		r.Probes[i].Got = httpStatus(ctx, r.Probes[i].URL)
		r.Probes[i].OK = r.Probes[i].Got == r.Probes[i].Want
	}
}
