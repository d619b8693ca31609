package steptest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

var statRE = regexp.MustCompile(`if \[ -f (\S+) \]; then sha256sum < `)

// NewFileHost is a strict fake host that answers the file inspections
// steps make (hostprep.StatFile, and `sha256sum -- FILE` after a bundle
// upload) from its in-memory file system, so a second Apply on the same
// fake sees what the first wrote. Every other command must be expected.
func NewFileHost(t *testing.T, name string) *hosttest.Fake {
	f := hosttest.NewFake(t, name)
	f.ExpectFunc("stat FILE", func(l string) bool { return statRE.MatchString(l) }).Do(
		func(_ context.Context, cmd host.Cmd) error {
			p := statRE.FindStringSubmatch(cmd.Line)[1]
			file, ok := f.File(p)
			if !ok {
				fmt.Fprintln(cmd.Stdout, "missing")
				return nil
			}
			fmt.Fprintf(cmd.Stdout, "%s  -\n%o %s %s\n", Sum(file.Content), host.UnixMode(file.Mode), file.Owner, file.Group)
			return nil
		}).AnyTimes()
	f.ExpectFunc("sha256sum -- FILE", func(l string) bool {
		return strings.HasPrefix(l, "sha256sum -- ") && !strings.ContainsAny(l, ";&|")
	}).Do(func(_ context.Context, cmd host.Cmd) error {
		for _, p := range strings.Fields(strings.TrimPrefix(cmd.Line, "sha256sum -- ")) {
			if file, ok := f.File(p); ok {
				fmt.Fprintf(cmd.Stdout, "%s  %s\n", Sum(file.Content), p)
			}
		}
		return nil
	}).AnyTimes()
	return f
}

// Sum is the sha256 hex of b.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
