package hostprep

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
)

// Digest is the sha256 hex of content, as the facts probe reports files.
func Digest(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// FileState is what a file on a host is now.
type FileState struct {
	Exists bool
	SHA256 string
	Mode   string // octal, as stat %a prints it: "644"
	Owner  string
	Group  string
}

// StatFile reads path's digest, mode and owner in one command; with mkdir,
// it also creates path's directory (Apply is about to write the file).
func StatFile(ctx context.Context, h host.Host, p string, mkdir bool) (FileState, error) {
	q := host.Quote(p)
	line := "if [ -f " + q + " ]; then sha256sum < " + q + " && stat -c '%a %U %G' -- " + q + "; else echo missing; fi"
	if mkdir {
		line = host.Join("mkdir", "-p", "--", path.Dir(p)) + " && " + line
	}
	var out bytes.Buffer
	if err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out}); err != nil {
		return FileState{}, fmt.Errorf("inspect %s: %w", p, err)
	}
	f := strings.Fields(out.String())
	switch {
	case len(f) == 1 && f[0] == "missing":
		return FileState{}, nil
	case len(f) >= 5: // "HASH -" then "MODE USER GROUP"
		return FileState{Exists: true, SHA256: f[0], Mode: f[2], Owner: f[3], Group: f[4]}, nil
	}
	return FileState{}, fmt.Errorf("inspect %s: unexpected answer %q", p, out.String())
}

// WriteFile makes path hold content with mode, owned by root: it uploads
// (atomically) only when the digest, mode or owner differ, and says whether
// it did, so callers restart services only when a config changed.
func WriteFile(ctx context.Context, h host.Host, p string, content []byte, mode fs.FileMode) (bool, error) {
	st, err := StatFile(ctx, h, p, true)
	if err != nil {
		return false, err
	}
	if st.Exists && st.SHA256 == Digest(content) && st.Mode == fmt.Sprintf("%o", host.UnixMode(mode)) &&
		st.Owner == "root" && st.Group == "root" {
		return false, nil
	}
	if err := h.Upload(ctx, bytes.NewReader(content), p, host.FileOptions{Mode: mode, Owner: "root", Group: "root"}); err != nil {
		return false, fmt.Errorf("write %s: %w", p, err)
	}
	return true, nil
}

// FileDiff is the plan's line for a managed file, or false when the facts
// show it already holds want.
func FileDiff(files map[string]string, p string, want []byte) (fromTo [2]string, differs bool) {
	got, ok := files[p]
	wantSum := Digest(want)
	switch {
	case ok && got == wantSum:
		return fromTo, false
	case !ok || got == "missing":
		return [2]string{"(missing)", "written"}, true
	case got == "unreadable":
		return [2]string{"(unreadable)", "rewritten"}, true
	}
	return [2]string{"sha256:" + short(got), "sha256:" + short(wantSum)}, true
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// Sums asks the host, in one round trip, for the sha256 of each path;
// missing files are absent from the map. The directories of the paths are
// created first, so the same paths can be uploaded to next.
func Sums(ctx context.Context, h host.Host, paths []string) (map[string]string, error) {
	dirs := map[string]bool{}
	for _, p := range paths {
		dirs[path.Dir(p)] = true
	}
	mk := append([]string{"mkdir", "-p", "--"}, slices.Sorted(maps.Keys(dirs))...)
	sum := append([]string{"sha256sum", "--"}, paths...)
	// Missing files are an answer (no line for them), not an error.
	out, err := host.Output(ctx, h, host.Join(mk...)+" && { "+host.Join(sum...)+" 2>/dev/null || true; }")
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			sums[f[1]] = f[0]
		}
	}
	return sums, nil
}
