package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/provision/backup"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

func newBackupCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup [PATH...]",
		Short: "Save an etcd snapshot and the cluster's certificate authorities to a local file",
		Long: `Backup takes an etcd snapshot on the first control plane that answers (with
etcdctl from the cluster's own etcd image), checks it there (etcdutl snapshot
status), and downloads it, with the cluster's certificate authorities and
service-account keys, into one archive: FILE (mode 0600), FILE.sha256 and
FILE.json (what, when, from which spec; no secrets). The download is checked
against the control plane's sha256 and written atomically; the copy on the
control plane is removed.

The archive is a secret: it holds the CA keys and every Secret of the
cluster. 'clusterctl restore FILE' brings the cluster back from it, on the
same hosts or on hosts rebuilt from the same spec.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := d.output()
			if err != nil {
				return err
			}
			c, err := loadSpec(args)
			if err != nil {
				return err
			}
			file := d.v.GetString("out")
			if file == "" {
				file = fmt.Sprintf("%s-%s.backup", c.Name, time.Now().UTC().Format("20060102T150405Z"))
			}
			red := host.NewRedactor()
			f, err := connect(c, red)
			if err != nil {
				return err
			}
			defer f.Close()
			start := time.Now()
			meta, sum, err := takeBackup(cmd.Context(), c, f, file, d.opt.Version, cmd.ErrOrStderr())
			if err != nil {
				return red.Error(err)
			}
			if out == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					File   string          `json:"file"`
					SHA256 string          `json:"sha256"`
					Meta   backup.Metadata `json:"metadata"`
				}{file, sum, meta})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Backup %s of cluster %q: etcd revision %d, %d keys, snapshot %s from %s; %d certificate files; sha256 %s (%.1fs).\n",
				file, meta.Cluster, meta.Etcd.Revision, meta.Etcd.TotalKeys, sizeOf(meta.Etcd.Size), meta.Host, len(meta.PKI), sum, time.Since(start).Seconds())
			fmt.Fprintf(cmd.OutOrStdout(), "It holds the cluster's CA keys and Secrets: keep it as safe as a password.\n")
			return nil
		},
	}
	cmd.Flags().String("out", "", "the backup file (default CLUSTER-TIME.backup in the current directory)")
	return cmd
}

// takeBackup snapshots etcd on the first control plane that can, and
// writes the archive.
func takeBackup(ctx context.Context, c *spec.Cluster, f *fleet, file, version string, stderr io.Writer) (backup.Metadata, string, error) {
	var errs []error
	for _, name := range c.ControlPlanes() {
		h := f.hosts[name]
		info, err := kube.Snapshot(ctx, h, kube.SnapshotOptions{})
		if err != nil {
			errs = append(errs, err)
			fmt.Fprintf(stderr, "No snapshot from %s: %v\n", name, err)
			continue
		}
		meta, sum, err := saveBackup(ctx, c, h, info, file, version)
		if rmErr := kube.RemoveSnapshot(context.WithoutCancel(ctx), h, info.Path); rmErr != nil {
			fmt.Fprintf(stderr, "Warning: %v\n", rmErr)
		}
		return meta, sum, err
	}
	return backup.Metadata{}, "", fmt.Errorf("backup: no control plane gave a snapshot: %w", errors.Join(errs...))
}

func saveBackup(ctx context.Context, c *spec.Cluster, h host.Host, info kube.SnapshotInfo, file, version string) (backup.Metadata, string, error) {
	pki, err := kube.ReadPKI(ctx, h)
	if err != nil {
		return backup.Metadata{}, "", err
	}
	meta := backup.Metadata{
		Cluster: c.Name, SpecDigest: c.Digest, Distribution: c.Kubernetes.Distribution, KubernetesVersion: c.Kubernetes.Version,
		ClusterctlVersion: version, TakenAt: time.Now().UTC().Truncate(time.Second), Host: h.Name(),
		Etcd: backup.Etcd{Version: info.Version, Image: info.Member.Image, Member: info.Member.Name, Revision: info.Revision,
			TotalKeys: info.TotalKeys, Hash: info.Hash, SHA256: info.SHA256, Size: info.Size},
	}
	sum, err := backup.WriteFile(file, meta, pki, func(w io.Writer) error {
		return h.Run(ctx, host.Cmd{Line: host.Join("cat", "--", info.Path), Stdout: w})
	})
	if err != nil {
		return backup.Metadata{}, "", err
	}
	a, err := backup.Open(file) // what restore will read, read back once
	if err != nil {
		return backup.Metadata{}, "", fmt.Errorf("read the new backup back: %w", err)
	}
	return a.Meta, sum, nil
}

func sizeOf(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
}
