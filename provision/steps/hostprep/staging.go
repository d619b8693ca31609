package hostprep

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/clusterctl/clusterctl/provision/bundle"
	"github.com/clusterctl/clusterctl/provision/host"
)

// StagingDir keeps bundle files on a host between their upload and their
// install, each named by its sha256 and name (not under /tmp, which may be a small
// tmpfs). A run killed mid-way leaves them for the next run, which sends
// only what is missing and removes what is not wanted any more, half-written
// uploads included. Root only: the files are whatever the bundle carries.
const StagingDir = "/var/lib/clusterctl/staging"

// Staging is one step's directory under StagingDir ("packages", "images"):
// each step clears only its own.
type Staging struct{ Dir string }

// NewStaging is the staging directory of one use.
func NewStaging(use string) Staging { return Staging{Dir: path.Join(StagingDir, use)} }

// Path is where f is staged: the start of its digest, then its name (for
// whoever reads dpkg's or ctr's messages).
func (s Staging) Path(f bundle.File) string {
	return path.Join(s.Dir, f.SHA256[:16]+"-"+path.Base(f.Path))
}

// Stage makes the directory hold exactly files: in one round trip it
// creates it (0700), removes every other entry and reads the digests of
// those already there; then it uploads the ones missing or wrong (sha256
// checked on the host). It returns their paths in files' order.
func (s Staging) Stage(ctx context.Context, h host.Host, b *bundle.Bundle, files []bundle.File) ([]string, error) {
	paths := make([]string, len(files))
	names := make([]string, len(files))
	for i, f := range files {
		if len(f.SHA256) != 64 || strings.Trim(f.SHA256, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("bundle file %s: sha256 %q", f.Path, f.SHA256)
		}
		paths[i] = s.Path(f)
		names[i] = host.Quote(path.Base(paths[i]))
	}
	keep := "''"
	if len(names) > 0 {
		keep = strings.Join(names, "|")
	}
	line := host.Join("mkdir", "-p", "-m", "0700", "--", s.Dir) + " && " + host.Join("chmod", "0700", "--", s.Dir) + " && cd " + host.Quote(s.Dir) +
		` && for f in * .[!.]* ..?*; do [ -e "$f" ] || [ -L "$f" ] || continue; case "$f" in ` + keep + `) ;; *) rm -rf -- "$f" || exit 1;; esac; done`
	if len(paths) > 0 {
		line += " && { " + host.Join(append([]string{"sha256sum", "--"}, paths...)...) + " 2>/dev/null || true; }"
	}
	out, err := host.Output(ctx, h, line)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", s.Dir, err)
	}
	have := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			have[f[1]] = f[0]
		}
	}
	for i, f := range files {
		if have[paths[i]] == f.SHA256 {
			continue // staged by a run that stopped before installing it
		}
		if err := UploadBundleFile(ctx, h, b, f, paths[i], host.FileOptions{Mode: 0o600, Owner: "root", Group: "root"}); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// Remove deletes staged files once installed.
func (s Staging) Remove(ctx context.Context, h host.Host, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if err := h.Run(ctx, host.Cmd{Line: host.Join(append([]string{"rm", "-f", "--"}, paths...)...)}); err != nil {
		return fmt.Errorf("remove staged files: %w", err)
	}
	return nil
}
