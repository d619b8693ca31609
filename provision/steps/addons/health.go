package addons

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/step"
)

// Health's pacing: the first retry after a second, doubling up to ten;
// each probe gets five seconds.
const (
	healthFirstRetry = time.Second
	healthMaxRetry   = 10 * time.Second
	probeTimeout     = 5 * time.Second
	defaultHealth    = "5m"
)

// ErrUnhealthy: the cluster did not become healthy within the timeout.
var ErrUnhealthy = errors.New("cluster unhealthy")

func (o Health) timeout() (time.Duration, error) {
	s := o.Timeout
	if s == "" {
		s = defaultHealth
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("health timeout %q is not a duration", o.Timeout)
	}
	return d, nil
}

func (o Health) validate() error {
	if _, err := o.timeout(); err != nil {
		return err
	}
	for _, p := range o.Probes {
		u, err := url.Parse(p.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("probe %s: %q is not an http(s) URL", p.Name, p.URL)
		}
	}
	return nil
}

// Check: health is read-only and runs on every apply.
func (o Health) Check(_ context.Context, _ step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	return step.Change{Action: step.ActionRead, Diff: o.Describe()}, nil
}

// Apply looks at the cluster from the first control plane until it is
// healthy or the timeout ends, backing off between looks: the API server
// and etcd ready, every node of the spec registered, Ready and at the
// spec's version, every kube-system pod running and ready, every
// Deployment, DaemonSet and StatefulSet rolled out, every probe answering
// its status. The error lists everything still unhealthy at the end.
func (o Health) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	timeout, _ := o.timeout()
	e := o.Expect()
	_, err := Wait(ctx, timeout, func(ctx context.Context) (*Report, error) { return Look(ctx, t.Host, e) })
	return err
}

// Wait looks (with look) until the report is healthy or timeout passes,
// backing off between looks, and returns the last report. Unhealthy at
// the end is ErrUnhealthy with every problem; a look that fails ends the
// wait with its error.
func Wait(ctx context.Context, timeout time.Duration, look func(context.Context) (*Report, error)) (*Report, error) {
	deadline := time.Now().Add(timeout)
	wait := healthFirstRetry
	for attempt := 1; ; attempt++ {
		r, err := look(ctx)
		if err != nil {
			return nil, err
		}
		if r.Healthy {
			return r, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return r, fmt.Errorf("%w after %s (%d checks): %s", ErrUnhealthy, timeout, attempt, strings.Join(r.Problems, "; "))
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("%w (interrupted): %s", ErrUnhealthy, strings.Join(r.Problems, "; "))
		case <-time.After(min(wait, left)): // the last look at the deadline
		}
		wait = min(2*wait, healthMaxRetry)
	}
}

// httpStatus GETs u from this machine; 0 when nothing answers.
func httpStatus(ctx context.Context, u string) int {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
