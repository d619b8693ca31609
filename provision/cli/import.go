package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/provision/importer/kubespray"
	"github.com/clusterctl/clusterctl/provision/spec"
)

func newImportCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Write a cluster spec from another tool's inventory",
	}
	cmd.AddCommand(newImportKubesprayCommand(d))
	return cmd
}

func newImportKubesprayCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubespray INVENTORY",
		Short: "Write a cluster spec from a kubespray inventory and its group_vars",
		Long: `Import kubespray reads an Ansible inventory (INI, or YAML for .yml/.yaml)
with the groups kube_control_plane, kube_node, etcd and k8s_cluster, and the
group_vars beside it (or --group-vars DIR), and writes a spec (default
cluster.cue) that validate accepts. Every variable it could not map is
listed on stderr with the reason; Jinja templates are never evaluated.
The cluster is named after the inventory's directory (inventory/NAME/).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			gvDir, _ := f.GetString("group-vars")
			out, _ := f.GetString("out")
			force, _ := f.GetBool("force")
			return importKubespray(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], gvDir, out, force)
		},
	}
	f := cmd.Flags()
	f.String("group-vars", "", "group_vars directory (default: group_vars beside the inventory)")
	f.String("out", "cluster.cue", "spec file to write")
	f.Bool("force", false, "overwrite the spec file if it exists")
	return cmd
}

func importKubespray(stdout, stderr io.Writer, inventory, gvDir, out string, force bool) error {
	if !force {
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("write spec %s: the file exists (use --force to overwrite)", out)
		}
	}
	inv, err := kubespray.ReadInventory(inventory)
	if err != nil {
		return err
	}
	if gvDir == "" {
		gvDir = filepath.Join(filepath.Dir(inventory), "group_vars")
	}
	gv, err := kubespray.ReadGroupVars(gvDir)
	if err != nil {
		return err
	}
	res, err := kubespray.Convert(inv, gv, kubespray.Options{Name: clusterNameFor(inventory), Source: inventory})
	if err != nil {
		return fmt.Errorf("import %s: %w", inventory, err)
	}
	for _, u := range res.Unmapped {
		fmt.Fprintf(stderr, "not mapped: %s\n", u)
	}
	if err := checkImported(res.Spec); err != nil {
		fmt.Fprintf(stderr, "The imported spec would not validate; %s was not written:\n", out)
		return err
	}
	if err := writeNew(out, res.Spec, force); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wrote %s: cluster %q, %s (%s, %s); %s not mapped.\n", out, res.Name,
		count(len(res.ControlPlanes)+len(res.Workers), "host"), count(len(res.ControlPlanes), "control plane"),
		count(len(res.Workers), "worker"), count(len(res.Unmapped), "variable"))
	return nil
}

// checkImported runs the loader validate runs, so a spec clusterctl would
// refuse (an even number of control planes, say) is never written.
func checkImported(src []byte) error {
	dir, err := os.MkdirTemp("", "clusterctl-import-")
	if err != nil {
		return fmt.Errorf("check imported spec: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "cluster.cue"), src, 0o600); err != nil {
		return fmt.Errorf("check imported spec: %w", err)
	}
	if _, err := spec.Load([]string{dir}, spec.LoadOptions{WorkDir: dir}); err != nil {
		return err // spec.Errors, printed one per line
	}
	return nil
}

// writeNew writes file atomically (temporary file, fsync, then link or
// rename): without force an existing file is never replaced, even one
// created meanwhile.
func writeNew(file string, src []byte, force bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(src); err != nil {
		tmp.Close()
		return fmt.Errorf("write spec: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write spec: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write spec: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	if force {
		err = os.Rename(tmp.Name(), file)
	} else {
		err = os.Link(tmp.Name(), file)
	}
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("write spec %s: the file exists (use --force to overwrite)", file)
	}
	if err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	return nil
}

var notLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// clusterNameFor names the cluster after kubespray's inventory/NAME/
// directory, as a DNS label; "kubespray" when nothing usable is left.
func clusterNameFor(inventory string) string {
	abs, err := filepath.Abs(inventory)
	if err != nil {
		return "kubespray"
	}
	name := strings.Trim(notLabel.ReplaceAllString(strings.ToLower(filepath.Base(filepath.Dir(abs))), "-"), "-")
	if len(name) > 63 {
		name = strings.Trim(name[:63], "-")
	}
	if name == "" {
		return "kubespray"
	}
	return name
}
