package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

func newKubeconfigCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubeconfig [PATH...]",
		Short: "Fetch the cluster's admin kubeconfig and merge it into yours (or print it)",
		Long: `Kubeconfig reads the admin kubeconfig from the first control plane that
answers over SSH, points it at the API server as this machine reaches it
(the spec's external controlPlaneEndpoint, else that control plane's
address) and, by default (--merge), merges it into the first file of
$KUBECONFIG, or ~/.kube/config: cluster and context NAME, user NAME-admin
(NAME is --context, default the cluster's name). Entries of other names are
kept as they are; the current context is set only when there is none; the
file is written atomically with mode 0600.

Only the CA data and the client certificate, key or token are taken from
the host: any other field (exec plugins, auth providers, proxy-url, file
paths) would act on this machine, so it is dropped and named on stderr.

--print writes a kubeconfig holding only this cluster to stdout instead:
it carries the admin credentials, so keep it as you keep ~/.kube/config.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			toStdout, merge := d.v.GetBool("print"), d.v.GetBool("merge")
			switch {
			case toStdout && cmd.Flags().Changed("merge") && merge:
				return errors.New("--print and --merge exclude each other")
			case !toStdout && !merge:
				return errors.New("nothing to do: --merge=false without --print")
			}
			c, err := loadSpec(args)
			if err != nil {
				return err
			}
			red := host.NewRedactor()
			f, err := connect(c, red)
			if err != nil {
				return err
			}
			defer f.Close()
			o := kubeconfigOptions{Print: toStdout, Context: d.v.GetString("context")}
			return runKubeconfig(cmd.Context(), c, f.hosts, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.Bool("print", false, "write the kubeconfig to stdout instead of merging it")
	f.Bool("merge", true, "merge into $KUBECONFIG's first file or ~/.kube/config")
	f.String("context", "", "name of the context, cluster and user (NAME-admin) (default: the cluster's name)")
	return cmd
}

type kubeconfigOptions struct {
	Print   bool   // to stdout instead of merging
	Context string // default: the cluster's name
}

// runKubeconfig fetches admin.conf and prints or merges it, either way
// with only the host fields kube.MergeKubeconfig allows (the others are
// named on stderr); only the printed kubeconfig (which the user asked for)
// ever holds its secrets.
func runKubeconfig(ctx context.Context, c *spec.Cluster, hosts map[string]host.Host, o kubeconfigOptions, stdout, stderr io.Writer) error {
	name := o.Context
	if name == "" {
		name = c.Name
	}
	admin, from, err := fetchAdminConf(ctx, c, hosts, stderr)
	if err != nil {
		return err
	}
	server := "https://" + operatorEndpoint(c, from)
	warnDropped := func(dropped []string) {
		if len(dropped) > 0 {
			fmt.Fprintln(stderr, "warning:", kube.DroppedFieldsWarning(plan.Admin(c).Kubeconfig+" on "+from, dropped))
		}
	}
	if o.Print {
		b, dropped, err := kube.MergeKubeconfig(nil, admin, name, server)
		warnDropped(dropped)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	path, changed, dropped, err := kube.MergeKubeconfigFile(admin, name, server)
	warnDropped(dropped)
	if err != nil {
		return err
	}
	verb := "Merged"
	if !changed {
		verb = "Already up to date:"
	}
	fmt.Fprintf(stderr, "%s context %q (%s, from %s) in %s.\n", verb, name, server, from, path)
	return nil
}

// fetchAdminConf reads the admin kubeconfig (kubeadm's admin.conf, k3s's
// k3s.yaml) from the first control plane
// (in spec order) that gives it, saying on w which ones did not.
func fetchAdminConf(ctx context.Context, c *spec.Cluster, hosts map[string]host.Host, w io.Writer) ([]byte, string, error) {
	var errs []error
	src := plan.Admin(c).Kubeconfig
	for _, cp := range c.ControlPlanes() {
		b, err := hosts[cp].ReadFile(ctx, src)
		if err == nil {
			return b, cp, nil
		}
		err = fmt.Errorf("fetch %s from %s: %w", src, cp, err)
		fmt.Fprintf(w, "%v; trying the next control plane\n", err)
		errs = append(errs, err)
	}
	return nil, "", errors.Join(errs...)
}

// operatorEndpoint is where this machine's kubectl reaches the API server:
// the spec's external endpoint, else the control plane the kubeconfig came
// from (a node-local endpoint is loopback on the nodes only).
func operatorEndpoint(c *spec.Cluster, from string) string {
	if ep := c.Kubernetes.ControlPlaneEndpoint; ep != nil && ep.Mode == "external" {
		return net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port))
	}
	return net.JoinHostPort(c.Hosts[from].Address, "6443")
}
