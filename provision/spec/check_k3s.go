package spec

import version "github.com/hashicorp/go-version"

// k3s checks what only the k3s driver needs of a spec.
func (k *checker) k3s() {
	c := k.c
	if c.Kubernetes.Distribution != "k3s" {
		return
	}
	// k3s releases are Kubernetes versions with a build suffix (+k3s1): the
	// suffix names the binary and its air-gap images.
	if v, err := version.NewSemver(c.Kubernetes.Version); err == nil && !k3sBuildRE.MatchString(v.Metadata()) {
		k.fail([]string{"kubernetes", "version"}, "%s names no k3s release: k3s versions carry their build, e.g. %s+k3s1", c.Kubernetes.Version, v.Core())
	}
	if c.Artifacts.Mode == "online" {
		if _, ok := c.Artifacts.URLs["k3s"]; !ok {
			k.fail([]string{"artifacts", "urls"}, `k3s online needs the binary's release URL and sha256: artifacts.urls: k3s: {url: "https://.../k3s", sha256: "..."} (and, optionally, "k3s-airgap-images")`)
		}
	}
	if c.Kubernetes.ImageRepository != "" {
		k.fail([]string{"kubernetes", "imageRepository"}, "is kubeadm's: k3s runs the images of its air-gap archive under their own names; for a registry mirror use runtime.mirrors (written to k3s's registries.yaml)")
	}
	if c.Runtime.Version != "" {
		k.fail([]string{"runtime", "version"}, "k3s runs its own embedded containerd: remove runtime.version")
	}
	if len(c.Kubernetes.Kubelet.EvictionHard) > 0 || c.Kubernetes.Kubelet.ImageGCHighThresholdPercent != 0 || c.Kubernetes.Kubelet.ImageGCLowThresholdPercent != 0 {
		k.fail([]string{"kubernetes", "kubelet"}, "is written into kubeadm's kubelet configuration; for k3s pass kubelet flags in its config.yaml instead: remove kubernetes.kubelet")
	}
	if c.Kubernetes.Timeouts != (KubeadmTimeouts{}) {
		k.fail([]string{"kubernetes", "timeouts"}, "are kubeadm's waits; k3s has none of them: remove kubernetes.timeouts (health.timeout bounds the k3s steps)")
	}
}
