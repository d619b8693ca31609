package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/transport/ssh"
)

func newFactsCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "facts [PATH...]",
		Short: "Show what every host is right now",
		Long: `Facts connects to every host of the spec (one SSH round trip each, in
parallel) and shows what it found: OS, kernel, init system, cgroup version,
swap, SELinux, the sysctls, modules and packages the plan cares about,
firewall, time sync, container runtime and Kubernetes versions, free disk.
With -o json each host also lists its SSH settings and where each came from:
"spec", "default" or "ssh_config FILE:LINE" (spec field ssh.config).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := d.output()
			if err != nil {
				return err
			}
			c, err := loadSpec(args)
			if err != nil {
				return err
			}
			g, err := plan.BuildGraph(c)
			if err != nil {
				return err
			}
			red := host.NewRedactor()
			f, err := connect(c, red)
			if err != nil {
				return err
			}
			defer f.Close()
			start := time.Now()
			all, err := gatherAll(cmd.Context(), f, factsRequest(g), d.v.GetInt("parallel"))
			if err != nil {
				return red.Error(err)
			}
			if out == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(withConnections(all, f.conns))
			}
			printFactsTable(cmd, c, all)
			printSSHConfigOrigins(cmd.OutOrStdout(), c.Names(), f.conns)
			fmt.Fprintf(cmd.ErrOrStderr(), "facts from %d hosts in %.2fs\n", len(all), time.Since(start).Seconds())
			return nil
		},
	}
	cmd.Flags().Int("parallel", 20, "hosts probed at once")
	return cmd
}

// factsRequest is what the plan's steps on a host need to know about it.
func factsRequest(g *plan.Graph) func(name string) facts.Request {
	per := map[string]facts.Request{}
	for _, id := range g.IDs() {
		s, _ := g.Get(id)
		if n, ok := s.Op.(step.FactsNeeder); ok {
			per[s.Host] = per[s.Host].Merge(n.Needs())
		}
	}
	return func(name string) facts.Request { return per[name] }
}

func printFactsTable(cmd *cobra.Command, c *spec.Cluster, all map[string]*facts.Facts) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "HOST\tOS\tKERNEL\tINIT\tCGROUP\tSWAP\tSELINUX\tFIREWALL\tTIME SYNC\tCONTAINERD\tKUBELET\tFREE /var")
	for _, name := range c.Names() {
		f := all[name]
		if f == nil {
			continue
		}
		swap := "off"
		if len(f.SwapDevices) > 0 {
			swap = strings.Join(f.SwapDevices, ",")
		}
		if len(f.FstabSwap) > 0 {
			swap += " (fstab)"
		}
		fmt.Fprintf(w, "%s\t%s %s\t%s\t%s\tv%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, f.OSID, f.OSVersion, f.Kernel, f.Init, f.CgroupV,
			swap, f.SELinux, serviceState(f.Firewall, f.FirewallActive), serviceState(f.TimeSync, f.TimeSyncActive),
			orNone(f.Containerd), orNone(f.Kubelet), mb(f.DiskFreeMB["/var"]))
	}
	w.Flush()
}

// hostFacts is a host's facts and how clusterctl reaches it.
type hostFacts struct {
	*facts.Facts
	// Connection is each SSH setting's value and where it came from:
	// "spec", "default" or "ssh_config FILE:LINE".
	Connection map[string]connSetting `json:"connection"`
}

type connSetting struct {
	Value  string `json:"value"`
	Origin string `json:"origin"`
}

func withConnections(all map[string]*facts.Facts, conns map[string]resolvedConn) map[string]hostFacts {
	out := make(map[string]hostFacts, len(all))
	for name, f := range all {
		out[name] = hostFacts{Facts: f, Connection: connectionSettings(conns[name])}
	}
	return out
}

// connectionSettings lists the settings a user may want to trace.
func connectionSettings(rc resolvedConn) map[string]connSetting {
	cfg := rc.cfg
	keys := "default keys and agent"
	if len(cfg.IdentityFiles) > 0 {
		keys = strings.Join(cfg.IdentityFiles, ", ")
	}
	var route []string
	for b := cfg.Bastion; b != nil; b = b.Bastion {
		route = append([]string{fmt.Sprintf("%s@%s:%d", b.User, b.Address, b.Port)}, route...)
	}
	jump := "none"
	if len(route) > 0 {
		jump = strings.Join(route, ",")
	}
	values := map[string]string{
		ssh.SettingHostName: cfg.Address, ssh.SettingUser: cfg.User, ssh.SettingPort: fmt.Sprint(cfg.Port),
		ssh.SettingIdentityFile: keys, ssh.SettingKnownHostsFile: cfg.KnownHostsFile,
		ssh.SettingHostKeyPolicy: cfg.HostKeyPolicy, ssh.SettingProxyJump: jump,
	}
	out := make(map[string]connSetting, len(values))
	for k, v := range values {
		out[k] = connSetting{Value: v, Origin: rc.origins[k]}
	}
	return out
}

// printSSHConfigOrigins notes under the table the settings an ssh_config
// file supplied, one line per host that has any.
func printSSHConfigOrigins(w io.Writer, names []string, conns map[string]resolvedConn) {
	for _, name := range names {
		settings := connectionSettings(conns[name])
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(settings)) {
			if s := settings[k]; strings.HasPrefix(s.Origin, "ssh_config ") {
				parts = append(parts, fmt.Sprintf("%s %s (%s)", k, s.Value, strings.TrimPrefix(s.Origin, "ssh_config ")))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "%s: from ssh_config: %s\n", name, strings.Join(parts, "; "))
		}
	}
}

func serviceState(name string, active bool) string {
	if name == "" || name == "none" {
		return "none"
	}
	if active {
		return name + " (active)"
	}
	return name + " (inactive)"
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mb(n int64) string {
	if n >= 1024 {
		return fmt.Sprintf("%.1f GiB", float64(n)/1024)
	}
	return fmt.Sprintf("%d MiB", n)
}
