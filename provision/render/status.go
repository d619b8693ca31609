package render

import (
	"encoding/json"
	"fmt"
	"github.com/clusterctl/clusterctl/provision/state"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/clusterctl/clusterctl/provision/steps/addons"
)

// StatusText writes a look at the cluster for people: a headline, the API
// server and etcd, one row per node (the spec's, then any others the
// cluster has), what is not running or rolled out, the probes, and every
// problem.
func StatusText(w io.Writer, r *addons.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	verdict := "healthy"
	if !r.Healthy {
		verdict = "UNHEALTHY (" + plural(len(r.Problems), "problem") + ")"
	}
	from := "no control plane could be reached"
	if r.CheckedFrom != "" {
		from = "looked from " + r.CheckedFrom
	}
	fmt.Fprintf(tw, "Cluster %q: %s, %s.\n\n", r.Cluster, verdict, from)

	fmt.Fprintf(tw, "API server\t%s\n", check(r.APIServer))
	fmt.Fprintf(tw, "etcd\t%s\n", etcdLine(r.Etcd))
	for _, m := range r.Etcd.Members {
		state := "healthy"
		if !m.Healthy {
			state = "UNHEALTHY: " + orDash(m.Error)
		}
		fmt.Fprintf(tw, "\t  member %s %s: %s\n", orDash(m.Node), m.Endpoint, state)
	}
	fmt.Fprintln(tw)

	listed := r.Objects.OK()
	fmt.Fprintf(tw, "NODE\tROLES\tSSH\tREGISTERED\tREADY\tKUBELET\tOK\n")
	for _, n := range r.Nodes {
		roles := strings.Join(n.SpecRoles, ",")
		if !n.InSpec {
			roles = "(not in spec) " + strings.Join(n.Roles, ",")
		}
		registered, ready := "?", "?"
		if listed {
			registered, ready = "no", "-"
			if n.Registered {
				registered, ready = "yes", n.Ready
				if n.Ready != "True" && n.ReadyReason != "" {
					ready += " (" + n.ReadyReason + ")"
				}
			}
		}
		ok := "yes"
		if !n.Healthy {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, orDash(strings.TrimSpace(roles)), orDash(n.SSH), registered, ready, orDash(n.KubeletVersion), ok)
	}
	if r.Version != "" {
		fmt.Fprintf(tw, "(kubelets should run %s)\n", r.Version)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch {
	case !listed:
		fmt.Fprintf(tw, "\nkube-system pods and workloads: not listed (%s)\n", orDash(r.Objects.Detail))
	default:
		if len(r.Pods) == 0 {
			fmt.Fprintf(tw, "\nkube-system pods: all running and ready\n")
		} else {
			fmt.Fprintf(tw, "\nkube-system pods not running and ready:\n  POD\tNODE\tPROBLEM\n")
			for _, p := range r.Pods {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", p.Name, orDash(p.Node), p.Problem)
			}
		}
		if len(r.Workloads) == 0 {
			fmt.Fprintf(tw, "Workloads: all rolled out\n")
		} else {
			fmt.Fprintf(tw, "Workloads not rolled out:\n  KIND\tNAME\tPROBLEM\n")
			for _, wl := range r.Workloads {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", wl.Kind, wl.Name, wl.Problem)
			}
		}
	}
	if len(r.Probes) > 0 {
		fmt.Fprintf(tw, "Probes:\n  PROBE\tURL\tWANT\tGOT\tOK\n")
		for _, p := range r.Probes {
			got, ok := "no answer", "NO"
			if p.Got != 0 {
				got = strconv.Itoa(p.Got)
			}
			if p.OK {
				ok = "yes"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", p.Name, p.URL, p.Want, got, ok)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	stateLines(w, r.State)
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nProblems:")
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  - "+p)
		}
	}
	return nil
}

// stateLines shows the cluster's record of its last apply and its lock.
func stateLines(w io.Writer, st *state.Status) {
	if st == nil {
		return
	}
	fmt.Fprintln(w)
	switch r := st.LastApply; {
	case r != nil && st.SpecChanged:
		fmt.Fprintf(w, "Last %s; the spec here differs from it (run plan).\n", r.Summary())
	case r != nil:
		fmt.Fprintf(w, "Last %s; the spec here is the one applied.\n", r.Summary())
	case st.Error == "":
		fmt.Fprintln(w, "No record of an apply in the cluster.")
	}
	if l := st.Lock; l != nil {
		stale := ""
		if st.LockStale {
			stale = " (STALE: its heartbeat stopped; see clusterctl force-unlock)"
		}
		fmt.Fprintf(w, "Locked by %s on %s, lock ID %s%s.\n", l, l.Host, l.ID, stale)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "Record or lock unreadable: %s\n", st.Error)
	}
}

// StatusJSON writes the report as one indented JSON document.
func StatusJSON(w io.Writer, r *addons.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func check(c addons.Check) string {
	if c.Detail == "" {
		return c.Status
	}
	return c.Status + ": " + c.Detail
}

func etcdLine(e addons.Etcd) string {
	s := check(e.Check)
	if len(e.Members) > 0 {
		healthy := 0
		for _, m := range e.Members {
			if m.Healthy {
				healthy++
			}
		}
		s += fmt.Sprintf(" (%d of %s healthy)", healthy, plural(len(e.Members), "member"))
	} else if e.MembersError != "" {
		s += " (members not listed: " + e.MembersError + ")"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
