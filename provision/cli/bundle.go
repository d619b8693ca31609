package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/provision/bundle"
)

func newBundleCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle [PATH...] --from DIR...",
		Short: "Assemble the air-gapped artifact bundle the spec needs",
		Long: `Bundle assembles an air-gapped bundle from local directories laid out as
bin/ (binaries), cni/ (CNI plugins), debs/ or rpms/ (packages), images/ (OCI image archives) and
airgap/ (archives a distribution loads itself: k3s's air-gap images):
files are hard-linked or copied into the spec's artifacts.bundleDir (or --out),
hashed, and a manifest.json with every file's sha256 is written last. Apply
uploads from the bundle over SFTP and checks each file's sha256 on the host.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadSpec(args)
			if err != nil {
				return err
			}
			from, _ := cmd.Flags().GetStringArray("from")
			if len(from) == 0 {
				return fmt.Errorf("--from: name at least one directory of artifacts")
			}
			versions := map[string]string{"kubernetes": c.Kubernetes.Version}
			for _, dir := range from {
				env := sourceVersions(dir)
				if v := env["KUBERNETES_VERSION"]; v != "" && strings.TrimPrefix(v, "v") != c.Kubernetes.Version {
					return fmt.Errorf("--from %s holds Kubernetes %s, the spec asks for %s", dir, v, c.Kubernetes.Version)
				}
				for key, name := range map[string]string{"CONTAINERD_VERSION": "containerd", "RUNC_VERSION": "runc"} {
					if v := env[key]; v != "" {
						versions[name] = strings.TrimPrefix(v, "v")
					}
				}
			}
			out, _ := cmd.Flags().GetString("out")
			if out == "" {
				if c.Artifacts.BundleDir == "" {
					return fmt.Errorf("--out is required: the spec sets no artifacts.bundleDir")
				}
				out = specPath(c.Dir, c.Artifacts.BundleDir)
			}
			m, err := bundle.Assemble(out, bundle.AssembleOptions{
				Sources:  from,
				Versions: versions,
				Logf: func(format string, a ...any) {
					fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...)
				},
			})
			if err != nil {
				return err
			}
			var size int64
			for _, f := range m.Files {
				size += f.Size
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Bundle %s: %d files, %d MiB, manifest %s\n", out, len(m.Files), size>>20, filepath.Join(out, bundle.ManifestName))
			return nil
		},
	}
	cmd.Flags().StringArray("from", nil, "directory of artifacts (bin/, cni/, debs/, rpms/, images/, airgap/); repeatable")
	cmd.Flags().String("out", "", "bundle directory (default: the spec's artifacts.bundleDir)")
	return cmd
}

// sourceVersions reads a source's versions.env (KEY=VALUE lines, as the
// e2e artifact build writes it); none is an empty map.
func sourceVersions(dir string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "versions.env"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = strings.Trim(v, `"'`)
		}
	}
	return out
}
