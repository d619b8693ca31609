package kube

import (
	"strconv"
	"time"
)

// DefaultTimeout is every kubeadm wait when the planner left one empty
// (health.timeout's default).
const DefaultTimeout = 5 * time.Minute

// timeoutsConfig is the `timeouts` block of kubeadm's Init- and
// JoinConfiguration, each value quoted as a YAML string.
type timeoutsConfig struct {
	ControlPlaneComponentHealthCheck, KubeletHealthCheck, KubernetesAPICall string
	EtcdAPICall, TLSBootstrap, Discovery                                    string
}

// fields are the waits in the order kubeadm documents them.
func (t Timeouts) fields() []*string {
	return []*string{&t.ControlPlaneComponentHealthCheck, &t.KubeletHealthCheck, &t.KubernetesAPICall,
		&t.EtcdAPICall, &t.TLSBootstrap, &t.Discovery}
}

// durations parses every wait; an empty or unreadable one is DefaultTimeout
// (the planner validated them, so that is only a plan from an older release).
func (t Timeouts) durations() []time.Duration {
	var out []time.Duration
	for _, f := range t.fields() {
		d, err := time.ParseDuration(*f)
		if err != nil || d <= 0 {
			d = DefaultTimeout
		}
		out = append(out, d)
	}
	return out
}

func (t Timeouts) config() timeoutsConfig {
	d := t.durations()
	q := func(i int) string { return yamlString(d[i].String()) }
	return timeoutsConfig{q(0), q(1), q(2), q(3), q(4), q(5)}
}

// deadline is the coreutils timeout (seconds) a whole kubeadm init or join
// runs under: room for three of its longest waits in a row (a join waits
// for discovery, the TLS bootstrap and etcd), and never under floor, so a
// kubeadm stuck outside its own waits is still stopped.
func (t Timeouts) deadline(floor time.Duration) string {
	longest := time.Duration(0)
	for _, d := range t.durations() {
		longest = max(longest, d)
	}
	return strconv.Itoa(int(max(3*longest, floor) / time.Second))
}

// apiSeconds is the API-call wait in whole seconds, for the polling loops
// on a host that wait for the API server or a Node.
func (t Timeouts) apiSeconds() int {
	return int(t.durations()[2] / time.Second)
}
