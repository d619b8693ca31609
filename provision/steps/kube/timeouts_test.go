package kube

import (
	"testing"
	"time"
)

// The whole run's deadline leaves room for three of kubeadm's longest
// waits, and never drops under the floor.
func TestTimeoutsDeadline(t *testing.T) {
	for _, c := range []struct {
		t     Timeouts
		floor time.Duration
		want  string
	}{
		{Timeouts{}, 5 * time.Minute, "900"}, // every wait DefaultTimeout
		{Timeouts{"1m0s", "1m0s", "1m0s", "8m0s", "1m0s", "1m0s"}, 5 * time.Minute, "1440"},
		{Timeouts{"30s", "30s", "30s", "30s", "30s", "30s"}, 10 * time.Minute, "600"},
	} {
		if got := c.t.deadline(c.floor); got != c.want {
			t.Errorf("%+v.deadline(%s) = %s, want %s", c.t, c.floor, got, c.want)
		}
	}
}
