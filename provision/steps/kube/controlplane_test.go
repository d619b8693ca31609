package kube_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/provision/steps/kube"
	"github.com/clusterctl/clusterctl/provision/steps/steptest"
)

var cluster = kube.Cluster{
	Name: "e2e", Distribution: "kubeadm", Version: "1.34.10", Endpoint: "172.31.10.11:6443", EndpointMode: "first-control-plane",
	PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", ClusterDomain: "cluster.local", APIServerSANs: []string{"api.example.net"},
	ImageRepository: "registry.local/k8s", ProxyMode: "iptables", CgroupDriver: "systemd", CNI: "flannel",
}

var initOp = kube.InitControlPlane{Cluster: cluster, Node: kube.Node{Name: "h1", Address: "172.31.10.11",
	Taints: []kube.Taint{{Key: kube.ControlPlaneTaint, Effect: "NoSchedule"}}}}

// The first control plane's answers to the kubeadm-state probe.
const (
	probeFresh    = "conntrack read-only\n"
	probeHalf     = "file /etc/kubernetes/admin.conf\nfile /etc/kubernetes/pki/ca.crt\nfile /etc/kubernetes/manifests/etcd.yaml\nconntrack read-only\n"
	probeAllFiles = "file /etc/kubernetes/admin.conf\nfile /etc/kubernetes/pki/ca.crt\nfile /etc/kubernetes/manifests/etcd.yaml\n" +
		"file /etc/kubernetes/manifests/kube-apiserver.yaml\nfile /etc/kubernetes/manifests/kube-controller-manager.yaml\n" +
		"file /etc/kubernetes/manifests/kube-scheduler.yaml\n"
	probeReady = probeAllFiles + "api ready\nconfigmap/kubeadm-config\ndaemonset.apps/kube-proxy\nconntrack read-only\n"
)

func isProbe(l string) bool { return strings.HasPrefix(l, "n=0; for f in ") }

// redacting returns a fake whose transcript and errors are redacted by red.
func redacting(t *testing.T, name string, red *host.Redactor) *hosttest.Fake {
	h := newNode(t, name)
	h.Redactor = red
	return h
}

var tokenRE = regexp.MustCompile(`token: "([a-z0-9]{6}\.[a-z0-9]{16})"`)
var certKeyRE = regexp.MustCompile(`certificateKey: "([a-f0-9]{64})"`)

// secretsOf reads the secrets out of an uploaded kubeadm config (the fake
// keeps uploads unredacted).
func secretsOf(t *testing.T, h *hosttest.Fake, p string) []string {
	t.Helper()
	f, ok := h.File(p)
	if !ok {
		t.Fatalf("%s was not uploaded", p)
	}
	var out []string
	for _, re := range []*regexp.Regexp{tokenRE, certKeyRE} {
		if m := re.FindStringSubmatch(string(f.Content)); m != nil {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		t.Fatalf("no secrets in %s:\n%s", p, f.Content)
	}
	return out
}

func assertNoSecrets(t *testing.T, secrets []string, texts ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, text := range texts {
			if strings.Contains(text, s) {
				t.Errorf("secret %s shows up in:\n%s", s, text)
			}
		}
	}
}

func TestInitFresh(t *testing.T) {
	ctx := context.Background()
	red := host.NewRedactor()
	h := redacting(t, "h1", red)
	h.ExpectFunc("probe", isProbe).Stdout(probeFresh).Times(2)
	tg := step.Target{Host: h, Facts: freshFacts("h1"), Bundle: testBundle(t), Redactor: red}
	ch, err := initOp.Check(ctx, tg)
	if err != nil || ch.Action != step.ActionCreate {
		t.Fatalf("Check: %s", steptest.Report(initOp, ch, err))
	}
	h.Expect("install -d -m 0700 -- /etc/kubernetes/clusterctl /var/log/clusterctl")
	h.ExpectFunc("kubeadm init", func(l string) bool {
		return strings.HasPrefix(l, "umask 077; timeout 900 kubeadm init --config /etc/kubernetes/clusterctl/kubeadm-init.yaml --upload-certs >/var/log/clusterctl/kubeadm-init.log 2>&1; rc=$?; rm -f -- /etc/kubernetes/clusterctl/kubeadm-init.yaml;")
	})
	h.ExpectFunc("wait for the API", func(l string) bool {
		return strings.Contains(l, "until kubectl --kubeconfig=/etc/kubernetes/admin.conf")
	})
	if err := initOp.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	secrets := secretsOf(t, h, "/etc/kubernetes/clusterctl/kubeadm-init.yaml")
	if len(secrets) != 2 {
		t.Errorf("want a token and a certificate key, got %d secrets", len(secrets))
	}
	cfg, _ := h.File("/etc/kubernetes/clusterctl/kubeadm-init.yaml")
	if cfg.Mode.Perm() != 0o600 {
		t.Errorf("config mode %o, want 600", cfg.Mode.Perm())
	}
	for _, want := range []string{`imagePullPolicy: "Never"`, "failCgroupV1: false", "maxPerCore: 0", `cgroupDriver: "systemd"`,
		`controlPlaneEndpoint: "172.31.10.11:6443"`, `imageRepository: "registry.local/k8s"`, `- "api.example.net"`,
		`key: "node-role.kubernetes.io/control-plane"`, `name: "node-ip"`, `ttl: "15m"`} {
		if !strings.Contains(string(cfg.Content), want) {
			t.Errorf("init config lacks %s:\n%s", want, cfg.Content)
		}
	}
	assertNoSecrets(t, secrets, h.Transcript())
	// The log keeps kubeadm's output, not its secrets: redacted on the
	// host by shape, before a failure's tail is read, with no secret on
	// the command line.
	redact := `rm -f -- /etc/kubernetes/clusterctl/kubeadm-init.yaml; sed -E -i -e 's/[a-z0-9]{6}\.[a-z0-9]{16}/<redacted>/g' -e 's/[a-f0-9]{64}/<redacted>/g' -- /var/log/clusterctl/kubeadm-init.log || rm -f -- /var/log/clusterctl/kubeadm-init.log; if [ $rc -ne 0 ]`
	if !strings.Contains(h.Transcript(), redact) {
		t.Errorf("kubeadm init's log is not redacted on the host:\n%s", h.Transcript())
	}
	steptest.Golden(t, "init-fresh", steptest.Section("check", steptest.Report(initOp, ch, nil)), steptest.Section("transcript", h.Transcript()))
}

func TestInitStates(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, probe string
		want        step.Action
		is          error
		msg         string
	}{
		{name: "initialised", probe: probeReady, want: step.ActionNone},
		{name: "half-files", probe: probeHalf, is: kube.ErrHalfInitialised,
			msg: "h1 is half-initialised (present: /etc/kubernetes/admin.conf, /etc/kubernetes/pki/ca.crt, /etc/kubernetes/manifests/etcd.yaml; missing: /etc/kubernetes/manifests/kube-apiserver.yaml, /etc/kubernetes/manifests/kube-controller-manager.yaml, /etc/kubernetes/manifests/kube-scheduler.yaml): an earlier kubeadm run stopped midway; clusterctl never resets a host by itself: run `kubeadm reset -f` on h1, then apply again"},
		{name: "api-down", probe: probeAllFiles, is: kube.ErrAPIDown, msg: "its API server did not answer within a minute"},
		{name: "init-unfinished", probe: probeAllFiles + "api ready\nconfigmap/kubeadm-config\n", is: kube.ErrHalfInitialised,
			msg: "kubeadm init never finished (kube-system lacks daemonset.apps/kube-proxy); clusterctl never resets a host by itself: run `kubeadm reset -f` on h1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newNode(t, "h1")
			h.ExpectFunc("probe", isProbe).Stdout(tc.probe).Times(2)
			tg := step.Target{Host: h, Facts: freshFacts("h1"), Bundle: testBundle(t)}
			ch, err := initOp.Check(ctx, tg)
			applyErr := initOp.Apply(ctx, tg) // never runs kubeadm: the fake is strict
			if tc.is == nil {
				if err != nil || ch.Action != tc.want || applyErr != nil {
					t.Errorf("Check: %s; Apply: %v", steptest.Report(initOp, ch, err), applyErr)
				}
				return
			}
			for _, e := range []error{err, applyErr} {
				if !errors.Is(e, tc.is) || !strings.Contains(e.Error(), tc.msg) {
					t.Errorf("error %v, want %v saying %q", e, tc.is, tc.msg)
				}
			}
		})
	}
}

func TestInitProbeScript(t *testing.T) {
	h := newNode(t, "h1")
	h.ExpectFunc("probe", isProbe).Stdout(probeFresh)
	if _, err := initOp.Check(context.Background(), step.Target{Host: h, Facts: freshFacts("h1")}); err != nil {
		t.Fatal(err)
	}
	steptest.Golden(t, "init-probe", h.Transcript())
}

func TestInitInvalid(t *testing.T) {
	for name, mod := range map[string]func(o *kube.InitControlPlane){
		"node name":      func(o *kube.InitControlPlane) { o.Node.Name = "h1; rm -rf /" },
		"address":        func(o *kube.InitControlPlane) { o.Node.Address = "172.31.10.11\n" },
		"endpoint":       func(o *kube.InitControlPlane) { o.Cluster.Endpoint = "$(reboot):6443" },
		"pod CIDR":       func(o *kube.InitControlPlane) { o.Cluster.PodCIDR = "10.244.0.0" },
		"proxy mode":     func(o *kube.InitControlPlane) { o.Cluster.ProxyMode = "userspace" },
		"label":          func(o *kube.InitControlPlane) { o.Node.Labels = map[string]string{"a": "b,c=d"} },
		"taint effect":   func(o *kube.InitControlPlane) { o.Node.Taints = []kube.Taint{{Key: "k", Effect: "Sometimes"}} },
		"distribution":   func(o *kube.InitControlPlane) { o.Cluster.Distribution = "k3s" },
		"image repo":     func(o *kube.InitControlPlane) { o.Cluster.ImageRepository = "reg\"istry" },
		"cluster domain": func(o *kube.InitControlPlane) { o.Cluster.ClusterDomain = "Cluster Local" },
	} {
		o := initOp
		o.Cluster.APIServerSANs = append([]string{}, o.Cluster.APIServerSANs...)
		mod(&o)
		if _, err := o.Check(context.Background(), step.Target{}); err == nil {
			t.Errorf("%s: invalid op accepted", name)
		}
	}
}

// testCA is a self-signed CA certificate (PEM) and kubeadm's hash of it,
// computed independently.
func testCA(t *testing.T) ([]byte, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(spki)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), "sha256:" + hex.EncodeToString(s[:])
}

func TestCACertHash(t *testing.T) {
	ca, want := testCA(t)
	if got, err := kube.CACertHash(ca); err != nil || got != want {
		t.Errorf("CACertHash = %s, %v; want %s", got, err, want)
	}
	if _, err := kube.CACertHash([]byte("not a certificate")); err == nil {
		t.Error("garbage hashed")
	}
}

// TestRedactLogRuns runs the redaction command with this machine's sh and
// sed on what kubeadm init prints: the token and certificate key are gone,
// the rest (and the file's mode) stays.
func TestRedactLogRuns(t *testing.T) {
	log := filepath.Join(t.TempDir(), "kubeadm-init.log")
	out := "[bootstrap-token] Using token: " + testToken + "\n" +
		"[upload-certs] Using certificate key:\n" + testCertKey + "\n" +
		"You can now join any number of control-plane nodes by running:\n" +
		"  kubeadm join 172.31.10.11:6443 --token " + testToken + " \\\n" +
		"\t--discovery-token-ca-cert-hash sha256:" + strings.Repeat("ab", 32) + " \\\n" +
		"\t--control-plane --certificate-key " + testCertKey + "\n"
	if err := os.WriteFile(log, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("sh", "-c", kube.RedactLog(log)).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecrets(t, []string{testToken, testCertKey, "9mfz4t1cw8bd0e3h"}, string(b))
	for _, want := range []string{"Using token: <redacted>\n", "--token <redacted> ", "--certificate-key <redacted>\n", "kubeadm join 172.31.10.11:6443 "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("redacted log lacks %q:\n%s", want, b)
		}
	}
	if st, _ := os.Stat(log); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %o after redaction, want 600", st.Mode().Perm())
	}
}
