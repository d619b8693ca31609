package kube

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/templates"
)

// Secrets made per apply are short-lived: a bootstrap token lives 15
// minutes (and is deleted after its join); uploaded certificates 2 hours.
const TokenTTL = "15m"

var (
	tokenRE   = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	certKeyRE = regexp.MustCompile(`^[a-f0-9]{64}$`)
	nameRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	labelRE   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	valueRE   = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// newToken makes a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16}) from
// crypto/rand (base32 text, lower-cased: [a-z2-7]).
func newToken() string {
	s := strings.ToLower(rand.Text())
	return s[:6] + "." + s[6:22]
}

// newCertificateKey makes the AES key kubeadm encrypts uploaded
// certificates with (32 bytes, hex).
func newCertificateKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// CACertHash is kubeadm's discovery hash of a CA certificate (PEM): the
// sha256 of its SubjectPublicKeyInfo, as "sha256:HEX".
func CACertHash(pemBytes []byte) (string, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("the cluster CA is not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parse the cluster CA: %w", err)
	}
	s := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(s[:]), nil
}

// nodeConfig is what kubeadm's config templates get: every string already
// quoted as YAML (yamlString), booleans and numbers as they are.
type nodeConfig struct {
	NodeName, CRISocket, ImagePullPolicy string
	Taints                               []taintConfig
	KubeletArgs                          []argConfig
	AdvertiseAddress                     string
	BindPort                             int
	Token, TokenTTL, CertificateKey      string
	Timeouts                             timeoutsConfig
	IgnorePreflightErrors                []string

	// init
	ClusterName, KubernetesVersion, ControlPlaneEndpoint, ImageRepository string
	PodSubnet, ServiceSubnet, DNSDomain                                   string
	CertSANs                                                              []string
	CgroupDriver, ProxyMode                                               string
	AllowCgroupV1, ConntrackReadOnly                                      bool
	EvictionHard                                                          []argConfig
	ImageGCHigh, ImageGCLow                                               int

	// join
	APIServerEndpoint, CACertHash string
	ControlPlane                  bool
}

type taintConfig struct{ Key, Value, Effect string }
type argConfig struct{ Name, Value string }

// The kubelet's eviction signals and thresholds (as cue/schema.cue allows).
var (
	evictionSignalRE = regexp.MustCompile(`^(memory|nodefs|imagefs|containerfs|pid)\.(available|inodesFree)$`)
	evictionValueRE  = regexp.MustCompile(`^([0-9]{1,2}(\.[0-9]+)?%|[0-9]+(Ki|Mi|Gi|Ti)?)$`)
)

// hostQuirks are what the first control plane says about itself that the
// cluster-wide kubelet and kube-proxy configs must follow.
type hostQuirks struct {
	// CgroupV1: the kubelet must be allowed to run on cgroup v1.
	CgroupV1 bool
	// ConntrackReadOnly: nf_conntrack_max cannot be written in the host's
	// network namespace, so kube-proxy must not try.
	ConntrackReadOnly bool
}

// NetworkErrors checks what every distribution's cluster shares: the
// endpoint, the pod and service CIDRs, the cluster domain and the API
// server's extra names.
func (c Cluster) NetworkErrors() []error {
	var errs []error
	if h, p, err := net.SplitHostPort(c.Endpoint); err != nil || h == "" || !hostOrIP(h) {
		errs = append(errs, fmt.Errorf("endpoint %q: want HOST:PORT", c.Endpoint))
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		errs = append(errs, fmt.Errorf("endpoint %q: port %q", c.Endpoint, p))
	}
	for _, cidr := range []string{c.PodCIDR, c.ServiceCIDR} {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			errs = append(errs, fmt.Errorf("%q is not a CIDR", cidr))
		}
	}
	if !nameRE.MatchString(c.ClusterDomain) {
		errs = append(errs, fmt.Errorf("cluster domain %q is not a DNS name", c.ClusterDomain))
	}
	for _, s := range c.APIServerSANs {
		if !hostOrIP(s) {
			errs = append(errs, fmt.Errorf("API server SAN %q is not a host name or IP", s))
		}
	}
	return errs
}

func (c Cluster) validate() error {
	if c.Distribution != "kubeadm" {
		if c.Distribution == "k3s" {
			return ErrK3sUnsupported
		}
		return fmt.Errorf("distribution %q: want kubeadm", c.Distribution)
	}
	var errs []error
	if !versionRE.MatchString(c.Version) {
		errs = append(errs, fmt.Errorf("kubernetes version %q is not a version", c.Version))
	}
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("cluster name %q is not a DNS name", c.Name))
	}
	errs = append(errs, c.NetworkErrors()...)
	if c.ImageRepository != "" && strings.ContainsAny(c.ImageRepository, " \t\n\"'\\") {
		errs = append(errs, fmt.Errorf("image repository %q is not a repository", c.ImageRepository))
	}
	switch c.ProxyMode {
	case "iptables", "ipvs", "nftables":
	default:
		errs = append(errs, fmt.Errorf("kube-proxy mode %q: want iptables, ipvs or nftables", c.ProxyMode))
	}
	switch c.CgroupDriver {
	case "systemd", "cgroupfs":
	default:
		errs = append(errs, fmt.Errorf("cgroup driver %q: want systemd or cgroupfs", c.CgroupDriver))
	}
	if c.ImageGCHigh < 0 || c.ImageGCHigh > 100 || c.ImageGCLow < 0 || c.ImageGCLow > 99 ||
		c.ImageGCHigh != 0 && c.ImageGCLow != 0 && c.ImageGCLow >= c.ImageGCHigh {
		errs = append(errs, fmt.Errorf("kubelet image GC thresholds %d/%d: want 0 <= low < high <= 100", c.ImageGCHigh, c.ImageGCLow))
	}
	for sig, v := range c.EvictionHard {
		if !evictionSignalRE.MatchString(sig) || !evictionValueRE.MatchString(v) {
			errs = append(errs, fmt.Errorf("kubelet evictionHard %q: %q: want a signal such as imagefs.available and a percentage or quantity", sig, v))
		}
	}
	return errors.Join(errs...)
}

func (n Node) validate() error {
	var errs []error
	if !nameRE.MatchString(n.Name) {
		errs = append(errs, fmt.Errorf("node name %q is not a DNS name", n.Name))
	}
	if _, err := netip.ParseAddr(n.Address); err != nil {
		errs = append(errs, fmt.Errorf("node address %q is not an IP address", n.Address))
	}
	for k, v := range n.Labels {
		if !labelRE.MatchString(k) || !valueRE.MatchString(v) {
			errs = append(errs, fmt.Errorf("label %q=%q is not a Kubernetes label", k, v))
		}
	}
	for _, t := range n.Taints {
		if !labelRE.MatchString(t.Key) || !valueRE.MatchString(t.Value) {
			errs = append(errs, fmt.Errorf("taint %q=%q is not a Kubernetes taint", t.Key, t.Value))
		}
		switch t.Effect {
		case "NoSchedule", "PreferNoSchedule", "NoExecute":
		default:
			errs = append(errs, fmt.Errorf("taint %s: effect %q", t.Key, t.Effect))
		}
	}
	return errors.Join(errs...)
}

func hostOrIP(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return nameRE.MatchString(s)
}

// bindPort is where this cluster's API servers listen: the endpoint's port
// behind an external balancer, else kubeadm's 6443 (the node-local proxy
// serves the endpoint port on loopback).
func (c Cluster) bindPort() int {
	if c.EndpointMode == "external" {
		if _, p, err := net.SplitHostPort(c.Endpoint); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				return n
			}
		}
	}
	return 6443
}

// newNodeConfig fills what Init- and JoinConfiguration share. Images are
// never pulled with a bundle: a missing image is then an error at once,
// not a hang on a registry the hosts cannot reach.
//
// On a cgroup v1 host, kubeadm's SystemVerification preflight fails from
// 1.35 on ("you must also explicitly skip this validation", besides the
// kubelet's failCgroupV1: false): that check is skipped there and only there.
func newNodeConfig(c Cluster, n Node, fromBundle, cgroupV1 bool) nodeConfig {
	q := yamlString
	cfg := nodeConfig{
		NodeName:         q(n.Name),
		CRISocket:        q(CRISocket),
		ImagePullPolicy:  q("IfNotPresent"),
		AdvertiseAddress: q(n.Address),
		BindPort:         c.bindPort(),
		TokenTTL:         q(TokenTTL),
		Timeouts:         c.Timeouts.config(),
	}
	if fromBundle {
		cfg.ImagePullPolicy = q("Never")
	}
	if cgroupV1 {
		cfg.IgnorePreflightErrors = []string{q("SystemVerification")}
	}
	for _, t := range n.Taints {
		tc := taintConfig{Key: q(t.Key), Effect: q(t.Effect)}
		if t.Value != "" {
			tc.Value = q(t.Value)
		}
		cfg.Taints = append(cfg.Taints, tc)
	}
	cfg.KubeletArgs = append(cfg.KubeletArgs, argConfig{Name: q("node-ip"), Value: q(n.Address)})
	if len(n.Labels) > 0 {
		var kv []string
		for _, k := range facts.Sorted(n.Labels) {
			kv = append(kv, k+"="+n.Labels[k])
		}
		cfg.KubeletArgs = append(cfg.KubeletArgs, argConfig{Name: q("node-labels"), Value: q(strings.Join(kv, ","))})
	}
	return cfg
}

// apiServerSANs are the spec's names plus, behind the node-local proxy, the
// loopback names every node dials (kubeadm adds the endpoint's 127.0.0.1
// itself; listing both says so and covers "localhost").
func apiServerSANs(c Cluster) []string {
	sans := append([]string{}, c.APIServerSANs...)
	if c.EndpointMode != "node-local" {
		return sans
	}
	for _, s := range []string{"127.0.0.1", "localhost"} {
		found := false
		for _, x := range sans {
			found = found || x == s
		}
		if !found {
			sans = append(sans, s)
		}
	}
	return sans
}

// renderInit is the kubeadm init config of the first control plane.
func renderInit(o InitControlPlane, fromBundle bool, quirks hostQuirks, token, certKey string) ([]byte, error) {
	q := yamlString
	c := o.Cluster
	cfg := newNodeConfig(c, o.Node, fromBundle, quirks.CgroupV1)
	cfg.Token, cfg.CertificateKey = q(token), q(certKey)
	cfg.ClusterName = q(c.Name)
	cfg.KubernetesVersion = q(GitVersion(c.Version))
	cfg.ControlPlaneEndpoint = q(c.Endpoint)
	if c.ImageRepository != "" {
		cfg.ImageRepository = q(c.ImageRepository)
	}
	cfg.PodSubnet, cfg.ServiceSubnet, cfg.DNSDomain = q(c.PodCIDR), q(c.ServiceCIDR), q(c.ClusterDomain)
	for _, s := range apiServerSANs(c) {
		cfg.CertSANs = append(cfg.CertSANs, q(s))
	}
	cfg.CgroupDriver, cfg.ProxyMode = q(c.CgroupDriver), q(c.ProxyMode)
	cfg.AllowCgroupV1, cfg.ConntrackReadOnly = quirks.CgroupV1, quirks.ConntrackReadOnly
	cfg.ImageGCHigh, cfg.ImageGCLow = c.ImageGCHigh, c.ImageGCLow
	for _, s := range facts.Sorted(c.EvictionHard) {
		cfg.EvictionHard = append(cfg.EvictionHard, argConfig{Name: q(s), Value: q(c.EvictionHard[s])})
	}
	return templates.Render("kubeadm-init.yaml.tmpl", cfg)
}

// renderJoin is the kubeadm join config of a worker or further control plane
// (certKey set) on a host with cgroup v1 or not.
func renderJoin(c Cluster, n Node, fromBundle, cgroupV1 bool, token, caHash, certKey string) ([]byte, error) {
	q := yamlString
	cfg := newNodeConfig(c, n, fromBundle, cgroupV1)
	cfg.APIServerEndpoint, cfg.Token, cfg.CACertHash = q(c.Endpoint), q(token), q(caHash)
	if certKey != "" {
		cfg.ControlPlane, cfg.CertificateKey = true, q(certKey)
	}
	return templates.Render("kubeadm-join.yaml.tmpl", cfg)
}
