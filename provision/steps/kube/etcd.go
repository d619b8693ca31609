package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
)

// etcd of a kubeadm cluster is a static pod of the bundle's etcd image on
// every control plane. Its tools (etcdctl, etcdutl) are in the same image,
// so clusterctl runs them with `ctr run` from that image: the exact etcd
// version of the cluster, nothing to install on the host, and no need for
// the API server (a snapshot is most wanted when the API is in trouble;
// a restore runs while etcd and the API server are stopped).
const (
	// SnapshotDir keeps snapshots on a control plane (root only), on its
	// disk: /tmp may be a small tmpfs.
	SnapshotDir = "/var/lib/clusterctl/etcd-snapshots"
	// EtcdManifest is etcd's static pod, where its image, member name and
	// peer URL are read from.
	EtcdManifest = ManifestsDir + "/etcd.yaml"
	// EtcdDataDir is kubeadm's data directory of a stacked etcd.
	EtcdDataDir = "/var/lib/etcd"
	// EtcdPKIDir holds etcd's CA and the certificates etcdctl uses.
	EtcdPKIDir = "/etc/kubernetes/pki/etcd"
	// etcdClientURL: every kubeadm etcd listens for clients on loopback.
	etcdClientURL = "https://127.0.0.1:2379"
	// snapshotTimeout bounds one etcd tool run (coreutils timeout).
	snapshotTimeout = "300"
)

var (
	imageRefRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$`)
	// remotePathRE: paths that go into ctr's --mount (comma separated
	// options) and into the plan: plain absolute paths only.
	remotePathRE    = regexp.MustCompile(`^/[A-Za-z0-9._/-]+$`)
	snapshotNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$`)
	memberNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	etcdPeerURLRE   = regexp.MustCompile(`^https?://[A-Za-z0-9.:\[\]-]+$`)
	manifestFlagsRE = regexp.MustCompile(`^\s*-\s+--([a-z-]+)=(\S+)\s*$`)
)

// EtcdMember is what a control plane's etcd static pod says about its
// member: clusterctl restores a member under the same name and peer URL.
type EtcdMember struct {
	Host    string `json:"host"`
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
	Image   string `json:"image"`
	DataDir string `json:"dataDir"`
}

// ReadEtcdMember reads etcd's static pod manifest at manifest on h (the
// live one, EtcdManifest, or a copy parked by a restore).
func ReadEtcdMember(ctx context.Context, h host.Host, manifest string) (EtcdMember, error) {
	b, err := h.ReadFile(ctx, manifest)
	if err != nil {
		return EtcdMember{}, fmt.Errorf("read etcd's static pod %s (clusterctl backs up the stacked etcd of kubeadm control planes only): %w", manifest, err)
	}
	return parseEtcdManifest(h.Name(), b)
}

// parseEtcdManifest reads the image and the member flags kubeadm writes,
// one per line ("- --name=h1").
func parseEtcdManifest(hostName string, b []byte) (EtcdMember, error) {
	m := EtcdMember{Host: hostName}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "image:"); ok && m.Image == "" {
			m.Image = strings.Trim(strings.TrimSpace(v), `"'`)
			continue
		}
		f := manifestFlagsRE.FindStringSubmatch(l)
		if f == nil {
			continue
		}
		switch f[1] {
		case "name":
			m.Name = f[2]
		case "initial-advertise-peer-urls":
			m.PeerURL = f[2]
		case "data-dir":
			m.DataDir = f[2]
		}
	}
	var errs []error
	if !imageRefRE.MatchString(m.Image) {
		errs = append(errs, fmt.Errorf("image %q", m.Image))
	}
	if !memberNameRE.MatchString(m.Name) {
		errs = append(errs, fmt.Errorf("--name %q", m.Name))
	}
	if !etcdPeerURLRE.MatchString(m.PeerURL) {
		errs = append(errs, fmt.Errorf("--initial-advertise-peer-urls %q", m.PeerURL))
	}
	if m.DataDir != EtcdDataDir {
		errs = append(errs, fmt.Errorf("--data-dir %q (clusterctl handles kubeadm's %s only)", m.DataDir, EtcdDataDir))
	}
	if err := errors.Join(errs...); err != nil {
		return EtcdMember{}, fmt.Errorf("etcd's static pod on %s is not one kubeadm wrote: %w", hostName, err)
	}
	return m, nil
}

// bindMount is a host directory given to an etcd tool container.
type bindMount struct {
	dir      string // same path inside and outside
	writable bool
}

// etcdTool is the command line that runs an etcd tool (etcdctl, etcdutl)
// from image in a throw-away container named id, under a timeout. Paths
// and image are checked by the callers (remotePathRE, imageRefRE): ctr's
// --mount takes comma-separated options.
func etcdTool(image, id string, netHost bool, mounts []bindMount, args ...string) string {
	cmd := []string{"timeout", snapshotTimeout, "ctr", "-n", ContainerdNamespace, "run", "--rm"}
	if netHost {
		cmd = append(cmd, "--net-host")
	}
	for _, m := range mounts {
		opt := "rbind:ro"
		if m.writable {
			opt = "rbind:rw"
		}
		cmd = append(cmd, "--mount", "type=bind,src="+m.dir+",dst="+m.dir+",options="+opt)
	}
	cmd = append(append(cmd, image, id), args...)
	return host.Join(cmd...)
}

// removeToolContainer removes the tool container id after a failed or
// interrupted run (ctr's --rm only works when ctr itself finishes).
func removeToolContainer(ctx context.Context, h host.Host, id string) {
	ns := []string{"ctr", "-n", ContainerdNamespace}
	line := host.Join(append(ns, "tasks", "kill", "-s", "SIGKILL", id)...) + "; " +
		host.Join(append(ns, "tasks", "delete", "-f", id)...) + "; " +
		host.Join(append(ns, "containers", "delete", id)...)
	_ = h.Run(context.WithoutCancel(ctx), host.Cmd{Line: "{ " + line + "; } >/dev/null 2>&1; true"})
}

// runEtcdTool runs an etcd tool container and removes it if the run failed.
func runEtcdTool(ctx context.Context, h host.Host, image, id string, netHost bool, mounts []bindMount, args ...string) (string, error) {
	var out bytes.Buffer
	err := h.Run(ctx, host.Cmd{Line: etcdTool(image, id, netHost, mounts, args...), Stdout: &out})
	if err != nil {
		removeToolContainer(ctx, h, id)
	}
	return out.String(), err
}

// etcdctlTLS are etcdctl's flags to reach the local member as a client,
// with the certificate kubeadm makes for etcd's health checks.
func etcdctlTLS() []string {
	return []string{"--endpoints=" + etcdClientURL,
		"--cacert=" + EtcdPKIDir + "/ca.crt",
		"--cert=" + EtcdPKIDir + "/healthcheck-client.crt",
		"--key=" + EtcdPKIDir + "/healthcheck-client.key"}
}

// SnapshotOptions say where a snapshot goes on the control plane.
type SnapshotOptions struct {
	// Dir is the directory on the host (default SnapshotDir); made with
	// mode 0700.
	Dir string
	// Name is the file name without ".db" (default
	// etcd-YYYYMMDDTHHMMSSZ-RANDOM); it also names the tool containers.
	Name string
}

func (o SnapshotOptions) withDefaults() (SnapshotOptions, error) {
	if o.Dir == "" {
		o.Dir = SnapshotDir
	}
	if o.Name == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		o.Name = "etcd-" + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	if !remotePathRE.MatchString(o.Dir) || strings.Contains(o.Dir, "..") {
		return o, fmt.Errorf("snapshot directory %q: want a plain absolute path", o.Dir)
	}
	if !snapshotNameRE.MatchString(o.Name) {
		return o, fmt.Errorf("snapshot name %q: want letters, digits, '.', '_' and '-'", o.Name)
	}
	return o, nil
}

// SnapshotInfo describes a snapshot file on a control plane, as etcdutl
// and sha256sum report it there.
type SnapshotInfo struct {
	Host   string `json:"host"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Revision, TotalKeys, Hash and Version are etcdutl snapshot status's.
	Revision  int64  `json:"revision"`
	TotalKeys int64  `json:"totalKeys"`
	Hash      uint32 `json:"hash"`
	Version   string `json:"etcdVersion"`
	// Member is the member it was taken from (its image ran the tools).
	Member EtcdMember `json:"member"`
}

// Snapshot takes an etcd snapshot on the control plane h with etcdctl
// (from the etcd image of its static pod), checks it with etcdutl snapshot
// status and returns its digest and size. The file stays on h: the caller
// downloads it (clusterctl backup) or keeps it there (before an upgrade);
// RemoveSnapshot deletes it.
func Snapshot(ctx context.Context, h host.Host, opt SnapshotOptions) (SnapshotInfo, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return SnapshotInfo{}, err
	}
	m, err := ReadEtcdMember(ctx, h, EtcdManifest)
	if err != nil {
		return SnapshotInfo{}, err
	}
	file := path.Join(opt.Dir, opt.Name+".db")
	if err := h.Run(ctx, host.Cmd{Line: host.Join("install", "-d", "-m", "0700", "--", opt.Dir)}); err != nil {
		return SnapshotInfo{}, fmt.Errorf("make %s: %w", opt.Dir, err)
	}
	args := append([]string{"etcdctl"}, etcdctlTLS()...)
	args = append(args, "snapshot", "save", file)
	mounts := []bindMount{{dir: EtcdPKIDir}, {dir: opt.Dir, writable: true}}
	if _, err := runEtcdTool(ctx, h, m.Image, "clusterctl-"+opt.Name+"-save", true, mounts, args...); err != nil {
		return SnapshotInfo{}, fmt.Errorf("take an etcd snapshot on %s (etcdctl snapshot save from %s): %w", h.Name(), m.Image, err)
	}
	info, err := SnapshotStatus(ctx, h, m.Image, file)
	if err != nil {
		_ = RemoveSnapshot(context.WithoutCancel(ctx), h, file)
		return SnapshotInfo{}, err
	}
	info.Member = m
	return info, nil
}

// snapshotStatus is etcdutl snapshot status -w json.
type snapshotStatus struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int64  `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

// SnapshotStatus checks the snapshot file on h with etcdutl (from image):
// a truncated or corrupt file fails here. It also reports its sha256 and
// size as the host computes them.
func SnapshotStatus(ctx context.Context, h host.Host, image, file string) (SnapshotInfo, error) {
	if !imageRefRE.MatchString(image) {
		return SnapshotInfo{}, fmt.Errorf("etcd image %q is not an image reference", image)
	}
	if !remotePathRE.MatchString(file) || strings.Contains(file, "..") {
		return SnapshotInfo{}, fmt.Errorf("snapshot path %q: want a plain absolute path", file)
	}
	id := "clusterctl-" + strings.TrimSuffix(path.Base(file), ".db") + "-status"
	out, err := runEtcdTool(ctx, h, image, id, false, []bindMount{{dir: path.Dir(file)}},
		"etcdutl", "snapshot", "status", file, "-w", "json")
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("check the etcd snapshot %s on %s (etcdutl snapshot status): %w", file, h.Name(), err)
	}
	var st snapshotStatus
	if err := json.Unmarshal([]byte(lastJSONLine(out)), &st); err != nil || st.Revision <= 0 {
		return SnapshotInfo{}, fmt.Errorf("check the etcd snapshot %s on %s: etcdutl snapshot status printed %q", file, h.Name(), strings.TrimSpace(out))
	}
	sum, size, err := remoteDigest(ctx, h, file)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return SnapshotInfo{Host: h.Name(), Path: file, SHA256: sum, Size: size,
		Revision: st.Revision, TotalKeys: st.TotalKey, Hash: st.Hash, Version: st.Version}, nil
}

// lastJSONLine is the last line of out that looks like a JSON object (the
// tools may log around their answer).
func lastJSONLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "{") {
			return l
		}
	}
	return ""
}

// remoteDigest is the sha256 and size of file on h.
func remoteDigest(ctx context.Context, h host.Host, file string) (string, int64, error) {
	out, err := runOut(ctx, h, host.Join("sha256sum", "--", file)+" && "+host.Join("stat", "-c", "%s", "--", file))
	if err != nil {
		return "", 0, fmt.Errorf("digest %s on %s: %w", file, h.Name(), err)
	}
	f := strings.Fields(out)
	if len(f) != 3 || len(f[0]) != 64 {
		return "", 0, fmt.Errorf("digest %s on %s: sha256sum and stat printed %q", file, h.Name(), out)
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("digest %s on %s: size %q", file, h.Name(), f[2])
	}
	return f[0], size, nil
}

// RemoveSnapshot deletes a snapshot file from h.
func RemoveSnapshot(ctx context.Context, h host.Host, file string) error {
	if err := h.Run(ctx, host.Cmd{Line: host.Join("rm", "-f", "--", file)}); err != nil {
		return fmt.Errorf("remove %s from %s: %w", file, h.Name(), err)
	}
	return nil
}
