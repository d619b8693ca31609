package kube_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provision/steps/kube"
)

func TestCheckUpgrade(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		upgrade  bool
		err      string // "" = allowed
	}{
		{from: "1.34.10", to: "1.34.10"},
		{from: "v1.34.10", to: "1.34.10"},
		{from: "1.34.10", to: "1.34.11", upgrade: true},
		{from: "1.33.13", to: "1.34.10", upgrade: true},
		{from: "1.33.13", to: "1.34.0", upgrade: true},
		{from: "1.33.13", to: "v1.34.0-rc.1", upgrade: true},
		{from: "1.34.0-rc.1", to: "1.34.0", upgrade: true},
		{from: "1.33.13", to: "1.35.0", err: "upgrade 1.33.13 -> 1.35.0 skips a minor: upgrade to 1.34.x first"},
		{from: "1.30.2", to: "1.34.10", err: "upgrade 1.30.2 -> 1.34.10 skips a minor: upgrade to 1.31.x first"},
		{from: "1.34.10", to: "1.33.13", err: "downgrade 1.34.10 -> 1.33.13 is not supported: Kubernetes only moves forward (keep 1.34.10, a later 1.34.x patch or 1.35.x;"},
		{from: "1.34.10", to: "1.34.9", err: "downgrade 1.34.10 -> 1.34.9 is not supported"},
		{from: "1.34.10", to: "2.0.0", err: "upgrade 1.34.10 -> 2.0.0 changes the major version"},
		{from: "", to: "1.34.10", err: "current version: \"\" is not a Kubernetes version"},
		{from: "1.34.10", to: "latest", err: "wanted version: \"latest\" is not a Kubernetes version"},
	} {
		t.Run(tc.from+"->"+tc.to, func(t *testing.T) {
			up, err := kube.CheckUpgrade(tc.from, tc.to)
			if tc.err == "" {
				if err != nil || up != tc.upgrade {
					t.Fatalf("CheckUpgrade = %v, %v; want %v, nil", up, err, tc.upgrade)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("CheckUpgrade error %v, want it to contain %q", err, tc.err)
			}
			if strings.Contains(tc.err, "version:") != !errors.Is(err, kube.ErrSkew) {
				t.Errorf("errors.Is(%v, ErrSkew) = %v", err, errors.Is(err, kube.ErrSkew))
			}
		})
	}
}

func TestCheckKubelet(t *testing.T) {
	for _, tc := range []struct {
		kubelet, apiServer, err string
	}{
		{kubelet: "1.34.10", apiServer: "1.34.10"},
		{kubelet: "1.33.13", apiServer: "1.34.10"},
		{kubelet: "1.34.10", apiServer: "1.34.11"},
		{kubelet: "1.34.10", apiServer: "1.33.13", err: "kubelet 1.34.10 would be newer than the API server 1.33.13: upgrade the control planes to 1.34.10 first"},
		{kubelet: "1.34.11", apiServer: "v1.34.10", err: "kubelet 1.34.11 would be newer than the API server 1.34.10"},
		{kubelet: "x", apiServer: "1.34.10", err: "kubelet version"},
	} {
		err := kube.CheckKubelet(tc.kubelet, tc.apiServer)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("CheckKubelet(%s, %s) = %v, want %q", tc.kubelet, tc.apiServer, err, tc.err)
		}
	}
}

func TestPauseVersion(t *testing.T) {
	for v, want := range map[string]string{"1.33.13": "3.10", "1.34.10": "3.10.1", "1.35.0": "3.10.1", "1.36.3": "3.10.2", "1.37.2": "3.10.2", "1.37.2+k3s1": "3.10.2", "bad": "3.10.2", "1.30.14": "3.10.2"} {
		if got := kube.PauseVersion(v); got != want {
			t.Errorf("PauseVersion(%s) = %s, want %s", v, got, want)
		}
	}
}
