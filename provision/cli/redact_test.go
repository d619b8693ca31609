package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/spec"
)

// TestReportRedacted: Run's error report looks inside errors (for an exit
// code, for spec errors); text found under a *host.RedactedError is still
// redacted, and the exit code still comes through.
func TestReportRedacted(t *testing.T) {
	red := host.NewRedactor()
	red.Add("s3cr3t-token")
	for name, tc := range map[string]struct {
		err  error
		code int
		want string
	}{
		"exit code": {
			err:  fmt.Errorf("status: %w", red.Error(&exitError{code: 7, err: errors.New("join with s3cr3t-token failed")})),
			code: 7, want: "Error: join with *** failed\n",
		},
		"spec errors": {
			err:  red.Error(fmt.Errorf("build plan: %w", spec.Errors{{Path: "hosts.cp1", Msg: "token s3cr3t-token"}})),
			code: ExitError, want: "Error: the spec is invalid (1 error)\n",
		},
		"joined": {
			err:  errors.Join(errors.New("first"), red.Error(&exitError{code: 3, err: errors.New("s3cr3t-token")})),
			code: 3, want: "Error: ***\n",
		},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			code := report(&out, tc.err)
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			if strings.Contains(out.String(), "s3cr3t") {
				t.Errorf("the report shows the secret:\n%s", out.String())
			}
			if !strings.HasSuffix(out.String(), tc.want) {
				t.Errorf("report:\n%s\nwant it to end with:\n%s", out.String(), tc.want)
			}
		})
	}
}
