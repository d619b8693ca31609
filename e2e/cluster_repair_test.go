//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
)

// checkHalfJoinRepair breaks a worker's join on purpose and shows that the
// next apply repairs it (issue 15.2): worker i is reset out of the cluster,
// its kubelet made unable to start (a systemd drop-in clusterctl does not
// own), and an apply runs with short kubeadm waits: kubeadm join writes the
// CA and the kubelet's config, the kubelet never comes up, the step fails. With
// the kubelet able to start again, the plan shows the repair of that host
// only, and one apply converges: the node is back Ready, nothing else
// changed, and a further apply has nothing to do.
func (c *cluster) checkHalfJoinRepair(i int) {
	t, e := c.t, c.e
	name := e.hosts.Hosts[i-1].Name
	out := e.clusterctl(0, "reset", "--yes", "--hosts", name, e.spec)
	mustContain(t, out, "cluster/kube/delete-node/"+name, " 0 failed, ")
	c.phase("reset --hosts " + name)

	const dropIn = "/etc/systemd/system/kubelet.service.d/99-e2e-broken.conf"
	e.sh(i, "mkdir -p /etc/systemd/system/kubelet.service.d && printf '[Service]\\nExecStartPre=/bin/false\\n' > "+dropIn+" && systemctl daemon-reload")
	short := filepath.Join(e.spec, "timeouts.cue")
	e.writeSpec("timeouts.cue", `cluster: kubernetes: timeouts: {kubeletHealthCheck: "40s", tlsBootstrap: "40s"}`)
	out = e.clusterctl(1, "apply", "--yes", e.spec)
	mustContain(t, out, name+"/kube/join-worker", "1 failed")
	// kubeadm removes bootstrap-kubelet.conf when the wait fails; the CA
	// and the kubelet's config stay: half-joined.
	if got := e.sh(i, "for f in /etc/kubernetes/pki/ca.crt /etc/kubernetes/kubelet.conf; do [ -e $f ] && echo $f; done; true"); got != "/etc/kubernetes/pki/ca.crt" {
		t.Fatalf("after the broken join %s holds %q, want the CA and no kubelet.conf (a half-joined worker)", name, got)
	}
	c.phase("apply with " + name + "'s kubelet unable to start: join fails half-way")

	e.sh(i, "rm -f "+dropIn+" && systemctl daemon-reload")
	if err := os.Remove(short); err != nil {
		t.Fatal(err)
	}
	plan := e.clusterctl(2, "plan", "--detailed-exitcode", e.spec)
	mustContain(t, plan, name+"/kube/join-worker", "half-joined (present: ", "/etc/kubernetes/pki/ca.crt", "then joined again", "1 to change")
	for _, h := range e.hosts.Hosts {
		if h.Name != name && strings.Contains(plan, h.Name+"/kube/join") {
			t.Errorf("the plan repairs %s too:\n%s", h.Name, plan)
		}
	}
	out = e.clusterctl(0, "apply", "--yes", e.spec)
	mustContain(t, out, " 0 failed, ")
	c.phase("plan shows the repair; apply: " + name + " reset and joined again")
	c.verify(1, 3)
	out = e.clusterctl(0, "apply", "--yes", e.spec)
	mustContain(t, out, "No changes.", " 0 failed, ")
	c.phase("further apply (no changes)")
}
