package addons

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

// Health's pacing: the first retry after a second, doubling up to ten;
// each probe gets five seconds.
const (
	healthFirstRetry = time.Second
	healthMaxRetry   = 10 * time.Second
	probeTimeout     = 5 * time.Second
	defaultHealth    = "5m"
)

// ErrUnhealthy: the cluster did not become healthy within the timeout.
var ErrUnhealthy = errors.New("cluster unhealthy")

func (o Health) timeout() (time.Duration, error) {
	s := o.Timeout
	if s == "" {
		s = defaultHealth
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("health timeout %q is not a duration", o.Timeout)
	}
	return d, nil
}

func (o Health) validate() error {
	if _, err := o.timeout(); err != nil {
		return err
	}
	for _, p := range o.Probes {
		u, err := url.Parse(p.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("probe %s: %q is not an http(s) URL", p.Name, p.URL)
		}
	}
	return nil
}

// Check: health is read-only and runs on every apply.
func (o Health) Check(_ context.Context, _ step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	return step.Change{Action: step.ActionRead, Diff: o.Describe()}, nil
}

// Apply looks at the cluster from the first control plane until it is
// healthy or the timeout ends, backing off between looks: the API server
// ready, every node of the spec registered, Ready and at the spec's
// version, every kube-system pod running and ready, every Deployment,
// DaemonSet and StatefulSet rolled out, every probe answering its status.
// The error lists everything still unhealthy at the end.
func (o Health) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	timeout, _ := o.timeout()
	deadline := time.Now().Add(timeout)
	wait := healthFirstRetry
	for attempt := 1; ; attempt++ {
		problems, err := o.look(ctx, t.Host)
		if err != nil {
			return err
		}
		if len(problems) == 0 {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w after %s (%d checks): %s", ErrUnhealthy, timeout, attempt, strings.Join(problems, "; "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (interrupted): %s", ErrUnhealthy, strings.Join(problems, "; "))
		case <-time.After(min(wait, left)): // the last look at the deadline
		}
		wait = min(2*wait, healthMaxRetry)
	}
}

const (
	markReadyz  = "@@readyz"
	markObjects = "@@objects"
	markProbes  = "@@probes"
	noCurl      = "no curl"
)

// look is one round trip: readyz, the objects, the probes (with curl on
// the control plane; from here when it has none).
func (o Health) look(ctx context.Context, h host.Host) ([]string, error) {
	var b strings.Builder
	kubectl := o.Admin.OrKubeadm().Kubectl
	b.WriteString("echo " + markReadyz + "; " + kubectl + " --request-timeout=10s get --raw=/readyz 2>&1; echo; ")
	b.WriteString("echo " + markObjects + "; " + kubectl + " --request-timeout=20s get nodes,pods,deployments,daemonsets,statefulsets -A -o json 2>&1; ")
	b.WriteString("echo " + markProbes + "; ")
	if len(o.Probes) > 0 {
		b.WriteString("if command -v curl >/dev/null 2>&1; then ")
		for i, p := range o.Probes {
			fmt.Fprintf(&b, "printf '%d '; curl -s -o /dev/null -m %d -w '%%{http_code}\\n' -- %s || echo 000; ", i, int(probeTimeout.Seconds()), host.Quote(p.URL))
		}
		b.WriteString("else echo " + host.Quote(noCurl) + "; fi; ")
	}
	b.WriteString("true")
	var out strings.Builder
	if err := h.Run(ctx, host.Cmd{Line: b.String(), Stdout: &out}); err != nil {
		return nil, fmt.Errorf("look at the cluster: %w", err)
	}
	sections := map[string]string{}
	cur := ""
	for _, l := range strings.SplitAfter(out.String(), "\n") {
		switch strings.TrimSpace(l) {
		case markReadyz, markObjects, markProbes:
			cur = strings.TrimSpace(l)
			continue
		}
		sections[cur] += l
	}
	var problems []string
	if r := strings.TrimSpace(sections[markReadyz]); r != "ok" {
		problems = append(problems, "API server /readyz: "+firstLine(r))
	}
	problems = append(problems, o.objectProblems(sections[markObjects])...)
	problems = append(problems, o.probeProblems(ctx, sections[markProbes])...)
	return problems, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if s == "" {
		return "no answer"
	}
	return s
}

// item is what health reads of any object of the list.
type item struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name       string `json:"name"`
		Namespace  string `json:"namespace"`
		Generation int64  `json:"generation"`
	} `json:"metadata"`
	Spec struct {
		Replicas *int32 `json:"replicas"`
	} `json:"spec"`
	Status struct {
		// nodes
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"conditions"`
		NodeInfo struct {
			KubeletVersion string `json:"kubeletVersion"`
		} `json:"nodeInfo"`
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

// objectProblems reads the nodes, pods and workloads.
func (o Health) objectProblems(raw string) []string {
	var list struct {
		Items []item `json:"items"`
	}
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		return []string{"list the cluster's objects: " + firstLine(raw)}
	}
	var problems []string
	seen := map[string]bool{}
	want := kube.GitVersion(o.Version)
	for _, it := range list.Items {
		switch it.Kind {
		case "Node":
			seen[it.Metadata.Name] = true
			if st, reason := it.condition("Ready"); st != "True" {
				problems = append(problems, fmt.Sprintf("node %s: not Ready (%s)", it.Metadata.Name, orUnknown(reason)))
			}
			if v := it.Status.NodeInfo.KubeletVersion; o.Version != "" && v != want {
				problems = append(problems, fmt.Sprintf("node %s: kubelet %s, want %s", it.Metadata.Name, v, want))
			}
		case "Pod":
			if it.Metadata.Namespace == "kube-system" {
				if p := podProblem(it); p != "" {
					problems = append(problems, "pod "+it.name()+": "+p)
				}
			}
		case "Deployment", "DaemonSet", "StatefulSet":
			if p := workloadProblem(it); p != "" {
				problems = append(problems, strings.ToLower(it.Kind)+" "+it.name()+": "+p)
			}
		}
	}
	for _, n := range o.Nodes {
		if !seen[n] {
			problems = append(problems, "node "+n+": not registered")
		}
	}
	return problems
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
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
	return ""
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

// probeProblems reads curl's answers ("INDEX STATUS"); without curl on the
// control plane, clusterctl probes from here.
func (o Health) probeProblems(ctx context.Context, raw string) []string {
	got := make([]int, len(o.Probes))
	if strings.TrimSpace(raw) == noCurl {
		for i, p := range o.Probes {
			got[i] = httpStatus(ctx, p.URL)
		}
	} else {
		for _, l := range strings.Split(raw, "\n") {
			f := strings.Fields(l)
			if len(f) != 2 {
				continue
			}
			i, err1 := strconv.Atoi(f[0])
			code, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && i >= 0 && i < len(got) {
				got[i] = code
			}
		}
	}
	var problems []string
	for i, p := range o.Probes {
		want := p.Status
		if want == 0 {
			want = http.StatusOK
		}
		if got[i] != want {
			answer := "no answer"
			if got[i] != 0 {
				answer = "status " + strconv.Itoa(got[i])
			}
			problems = append(problems, fmt.Sprintf("probe %s (%s): %s, want %d", p.Name, p.URL, answer, want))
		}
	}
	return problems
}

// httpStatus GETs u from this machine; 0 when nothing answers.
func httpStatus(ctx context.Context, u string) int {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
