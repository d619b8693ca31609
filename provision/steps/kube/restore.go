package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"path"
	"slices"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
)

// Restoring etcd follows kubeadm's and etcd's own procedure: the static
// pods stop (their manifests are moved away), `etcdutl snapshot restore`
// makes a new data directory for each member, which replaces the old one,
// and the static pods come back. On a cluster rebuilt from scratch the
// first control plane is seeded instead (SeedRestore): the backup's
// certificate authorities and a restored data directory are in place
// before kubeadm init, which adopts both.

// BackupPKI are the files of /etc/kubernetes/pki a backup keeps: the
// cluster, front-proxy and etcd CAs and the service-account key pair.
// Everything else there is issued from them by kubeadm. They are secrets.
var BackupPKI = []string{"ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key"}

const (
	// ParkedManifestsDir holds the static pod manifests while etcd's data
	// is replaced; the kubelet stops pods whose manifest is gone.
	ParkedManifestsDir = ConfigDir + "/parked-manifests"
	// RestoreMarker on a seeded first control plane tells kubeadm init to
	// adopt the restored certificates and etcd data.
	RestoreMarker = ConfigDir + "/restore.json"
	// etcdRevisionBump moves the restored revision past anything a client
	// has seen, and marks it compacted, so every watch starts over instead
	// of trusting a cache from after the snapshot (Kubernetes' advice).
	etcdRevisionBump = "1000000000"
	// stopWait bounds the wait for etcd and the API server to stop (the
	// kubelet looks at its manifests every 20 s).
	stopWait = 90 // × 2 s
)

var tagRE = snapshotNameRE

// ReadPKI reads BackupPKI from the control plane h.
func ReadPKI(ctx context.Context, h host.Host) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, p := range BackupPKI {
		b, err := h.ReadFile(ctx, path.Join(PKIDir, p))
		if err != nil {
			return nil, fmt.Errorf("read the cluster's certificate authorities on %s: %w", h.Name(), err)
		}
		out[p] = b
	}
	return out, nil
}

// MemberFor is the etcd member kubeadm makes on a control plane: named
// after the node, peers on port 2380 of its address.
func MemberFor(n Node, image string) EtcdMember {
	return EtcdMember{Host: n.Name, Name: n.Name, PeerURL: "https://" + net.JoinHostPort(n.Address, "2380"), Image: image, DataDir: EtcdDataDir}
}

func (m EtcdMember) validate() error {
	if !memberNameRE.MatchString(m.Name) || !etcdPeerURLRE.MatchString(m.PeerURL) {
		return fmt.Errorf("etcd member %q at %q: not a member name and peer URL", m.Name, m.PeerURL)
	}
	return nil
}

// StopControlPlane moves h's static pod manifests to ParkedManifestsDir
// (manifests parked by an earlier, interrupted restore stay there) and
// waits until etcd and the API server no longer run. The kubelet is left
// to notice by itself (it looks every 20 s): a restarted kubelet stops no
// pod until it has heard from an API server, and there is none by then.
func StopControlPlane(ctx context.Context, h host.Host) error {
	p, m := host.Quote(ParkedManifestsDir), host.Quote(ManifestsDir)
	line := "set -e; install -d -m 0700 " + p + "; for f in " + m + "/*.yaml; do [ -e \"$f\" ] && mv -f -- \"$f\" " + p + "/; done; " +
		"[ -e " + p + "/etcd.yaml ] || { echo 'no etcd static pod manifest in " + ManifestsDir + " nor " + ParkedManifestsDir + "' >&2; exit 1; }; " +
		fmt.Sprintf("i=0; while pgrep -x etcd >/dev/null || pgrep -x kube-apiserver >/dev/null; do i=$((i+1)); if [ $i -ge %d ]; then ", stopWait) +
		"echo 'etcd or the API server still runs 3 minutes after their manifests were moved away' >&2; exit 1; fi; sleep 2; done"
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("stop the control plane on %s: %w", h.Name(), err)
	}
	return nil
}

// StartControlPlane moves the parked manifests back: the kubelet starts
// etcd and the control plane again.
func StartControlPlane(ctx context.Context, h host.Host) error {
	p, m := host.Quote(ParkedManifestsDir), host.Quote(ManifestsDir)
	line := "set -e; [ -d " + p + " ] || exit 0; for f in " + p + "/*.yaml; do [ -e \"$f\" ] && mv -f -- \"$f\" " + m + "/; done; rmdir -- " + p
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("start the control plane on %s again (move %s/*.yaml back to %s): %w", h.Name(), ParkedManifestsDir, ManifestsDir, err)
	}
	return nil
}

// DataDirs are a restore's directories next to the data directory, named
// by its tag: etcd ignores them (with a warning) and they stay on the same
// file system, so the swap is two renames.
func DataDirs(tag string) (restored, old string) {
	return EtcdDataDir + "/.clusterctl-restore-" + tag, EtcdDataDir + "/.clusterctl-before-restore-" + tag
}

// UploadSnapshot copies a snapshot (size bytes, sha256 sum) from r to
// SnapshotDir/NAME.db on h and checks its digest there.
func UploadSnapshot(ctx context.Context, h host.Host, r io.Reader, name, sum string, size int64) (string, error) {
	if !snapshotNameRE.MatchString(name) {
		return "", fmt.Errorf("snapshot name %q: want letters, digits, '.', '_' and '-'", name)
	}
	file := path.Join(SnapshotDir, name+".db")
	if err := h.Run(ctx, host.Cmd{Line: host.Join("install", "-d", "-m", "0700", "--", SnapshotDir)}); err != nil {
		return "", fmt.Errorf("make %s on %s: %w", SnapshotDir, h.Name(), err)
	}
	if err := h.Upload(ctx, r, file, host.FileOptions{Mode: 0o600, Owner: "root", Group: "root"}); err != nil {
		return "", fmt.Errorf("upload the etcd snapshot to %s: %w", h.Name(), err)
	}
	got, n, err := remoteDigest(ctx, h, file)
	if err != nil {
		return "", err
	}
	if got != sum || n != size {
		_ = RemoveSnapshot(context.WithoutCancel(ctx), h, file)
		return "", fmt.Errorf("the etcd snapshot uploaded to %s has %d bytes, sha256 %s; want %d bytes, sha256 %s", h.Name(), n, got, size, sum)
	}
	return file, nil
}

// RestoreEtcdData restores snapshot (a file on h) into a new data
// directory for member self of a cluster of members, with etcdutl from
// image, and swaps it in: the old member directory is kept (returned) until
// the restored cluster is known to work (DropOldData). etcd must not run.
func RestoreEtcdData(ctx context.Context, h host.Host, image, snapshot, tag string, self EtcdMember, members []EtcdMember) (string, error) {
	if !imageRefRE.MatchString(image) {
		return "", fmt.Errorf("etcd image %q is not an image reference", image)
	}
	if !tagRE.MatchString(tag) || !remotePathRE.MatchString(snapshot) || strings.Contains(snapshot, "..") {
		return "", fmt.Errorf("restore %q with tag %q: want a plain path and tag", snapshot, tag)
	}
	var initial []string
	for _, m := range members {
		if err := m.validate(); err != nil {
			return "", err
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	if err := self.validate(); err != nil {
		return "", err
	}
	restored, old := DataDirs(tag)
	if err := h.Run(ctx, host.Cmd{Line: host.Join("rm", "-rf", "--", restored)}); err != nil {
		return "", fmt.Errorf("clear %s on %s: %w", restored, h.Name(), err)
	}
	mounts := []bindMount{{dir: EtcdDataDir, writable: true}, {dir: path.Dir(snapshot)}}
	if _, err := runEtcdTool(ctx, h, image, "clusterctl-"+tag+"-restore", false, mounts,
		"etcdutl", "snapshot", "restore", snapshot, "--data-dir", restored, "--name", self.Name,
		"--initial-cluster", strings.Join(initial, ","), "--initial-advertise-peer-urls", self.PeerURL,
		"--bump-revision", etcdRevisionBump, "--mark-compacted"); err != nil {
		return "", fmt.Errorf("restore the etcd snapshot on %s (etcdutl snapshot restore from %s): %w", h.Name(), image, err)
	}
	r, o, cur := host.Quote(restored), host.Quote(old), host.Quote(EtcdDataDir+"/member")
	line := "set -e; [ -d " + r + "/member ] || { echo 'etcdutl left no member directory in " + restored + "' >&2; exit 1; }; " +
		"if [ -e " + cur + " ]; then mv -- " + cur + " " + o + "; fi; mv -- " + r + "/member " + cur + "; rmdir -- " + r + "; chmod 0700 " + cur
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return "", fmt.Errorf("swap etcd's data directory on %s (the old one is %s if it moved): %w", h.Name(), old, err)
	}
	return old, nil
}

// DropOldData removes the data directory a restore kept.
func DropOldData(ctx context.Context, h host.Host, old string) error {
	if !strings.HasPrefix(old, EtcdDataDir+"/.clusterctl-before-restore-") || strings.Contains(old, "..") {
		return fmt.Errorf("refuse to remove %q: not a data directory a restore kept", old)
	}
	if err := h.Run(ctx, host.Cmd{Line: host.Join("rm", "-rf", "--", old)}); err != nil {
		return fmt.Errorf("remove the old etcd data %s on %s: %w", old, h.Name(), err)
	}
	return nil
}

// RestartKubelet restarts the kubelet on h so it lets go of what it
// cached from before the restore.
func RestartKubelet(ctx context.Context, h host.Host) error {
	if err := h.Run(ctx, host.Cmd{Line: "systemctl restart kubelet.service"}); err != nil {
		return fmt.Errorf("restart the kubelet on %s: %w", h.Name(), err)
	}
	return nil
}

// Seed is what SeedRestore puts on a bare first control plane.
type Seed struct {
	PKI      map[string][]byte // BackupPKI's files, by path under PKIDir
	Snapshot string            // the snapshot, uploaded to the host already
	Image    string            // etcd image the backup was taken with
	Member   EtcdMember        // the member kubeadm init will start
	Tag      string            // names the work directories
	// Marker is the restore's description (JSON) left in RestoreMarker.
	Marker []byte
}

// ErrNotBare: a seed needs a host without any cluster state.
var ErrNotBare = errors.New("the host holds cluster state")

// SeedRestore prepares a bare first control plane to come back from a
// backup: the restored etcd data directory, the backup's certificate
// authorities and service-account keys under /etc/kubernetes/pki (mode
// 0600), and RestoreMarker last. kubeadm init (InitControlPlane) then
// adopts them. An earlier seed that kubeadm init never used is replaced.
func SeedRestore(ctx context.Context, h host.Host, s Seed) error {
	for _, p := range BackupPKI {
		if _, ok := s.PKI[p]; !ok {
			return fmt.Errorf("seed %s: the backup lacks pki/%s", h.Name(), p)
		}
	}
	res, err := ProbeResidue(ctx, h)
	if err != nil {
		return err
	}
	prior := res.SeedOnly()
	if res.ClusterState() && !prior {
		return fmt.Errorf("seed %s for the restore: %w (%s); reset it first (`clusterctl reset`)", h.Name(), ErrNotBare, describeResidue(res))
	}
	if prior {
		line := host.Join("rm", "-rf", "--", RestoreMarker, PKIDir, EtcdDataDir+"/member")
		if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
			return fmt.Errorf("remove the earlier seed on %s: %w", h.Name(), err)
		}
	}
	image, err := etcdImageOn(ctx, h, s.Image)
	if err != nil {
		return err
	}
	if err := h.Run(ctx, host.Cmd{Line: host.Join("install", "-d", "-m", "0700", "--", EtcdDataDir)}); err != nil {
		return fmt.Errorf("make %s on %s: %w", EtcdDataDir, h.Name(), err)
	}
	old, err := RestoreEtcdData(ctx, h, image, s.Snapshot, s.Tag, s.Member, []EtcdMember{s.Member})
	if err != nil {
		return err
	}
	if err := h.Run(ctx, host.Cmd{Line: host.Join("rm", "-rf", "--", old)}); err != nil {
		return fmt.Errorf("clear %s on %s: %w", old, h.Name(), err)
	}
	if err := h.Run(ctx, host.Cmd{Line: host.Join("install", "-d", "-m", "0700", "--", PKIDir, PKIDir+"/etcd", ConfigDir)}); err != nil {
		return fmt.Errorf("make %s on %s: %w", PKIDir, h.Name(), err)
	}
	for _, p := range BackupPKI {
		if err := h.Upload(ctx, strings.NewReader(string(s.PKI[p])), path.Join(PKIDir, p), host.FileOptions{Mode: 0o600, Owner: "root", Group: "root"}); err != nil {
			return fmt.Errorf("seed %s: %w", h.Name(), err)
		}
	}
	if err := h.Upload(ctx, strings.NewReader(string(s.Marker)), RestoreMarker, host.FileOptions{Mode: 0o600, Owner: "root", Group: "root"}); err != nil {
		return fmt.Errorf("seed %s: %w", h.Name(), err)
	}
	return nil
}

// SeedOnly says whether the residue is exactly a seed kubeadm init has not
// used yet: the certificates, etcd's data and clusterctl's marker.
func (r Residue) SeedOnly() bool {
	if len(r.Files) > 0 || r.Mounts > 0 || len(r.Links) > 0 || r.Containers > 0 || r.Netns > 0 || r.chains() > 0 {
		return false
	}
	if r.Dirs[ConfigDir] == 0 {
		return false
	}
	for d := range r.Dirs {
		switch d {
		case PKIDir, EtcdDataDir, ConfigDir, SnapshotDir:
		default:
			return false
		}
	}
	return true
}

func describeResidue(r Residue) string {
	var what []string
	for _, d := range r.Diff() {
		what = append(what, d.Key+": "+d.From)
	}
	return strings.Join(what, "; ")
}

// etcdImageOn is want when containerd holds it, else another etcd image
// it holds (a snapshot restores with any etcdutl of the same major
// version): the etcd image is among the control-plane images apply
// imports before kubeadm init.
func etcdImageOn(ctx context.Context, h host.Host, want string) (string, error) {
	have, err := listImages(ctx, h, false)
	if err != nil {
		return "", err
	}
	if _, ok := have[want]; ok {
		return want, nil
	}
	for _, ref := range sortedKeys(have) {
		if imageBase(ref) == "etcd" && imageRefRE.MatchString(ref) {
			return ref, nil
		}
	}
	return "", fmt.Errorf("%s holds no etcd image (the backup's is %s): apply imports the bundle's control-plane images first", h.Name(), want)
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// restoreSeed tells a seed from a half-initialised host: when kubeadm's
// files are only the cluster CA and RestoreMarker is there, it returns the
// restore's description; else "".
func restoreSeed(ctx context.Context, h host.Host, st nodeState) (string, error) {
	present, _ := st.lists(controlPlaneFiles)
	if len(present) != 1 || present[0] != CACert {
		return "", nil
	}
	b, err := h.ReadFile(ctx, RestoreMarker)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", RestoreMarker, err)
	}
	var m struct {
		Backup  string `json:"backup"`
		TakenAt string `json:"takenAt"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Backup == "" {
		return "", fmt.Errorf("%s on %s is not clusterctl's: remove it, or reset the host (`clusterctl reset --hosts %s`)", RestoreMarker, h.Name(), h.Name())
	}
	return m.Backup + " (taken " + m.TakenAt + ")", nil
}

// finishRestore runs once kubeadm init adopted a seed: every Node object
// but this one's belongs to a host that was reset for the rebuild, and
// would stop that host from joining again (kubeadm refuses to join a name
// a Ready Node holds); their pods go with them and their controllers make
// new ones. Then the marker goes.
func finishRestore(ctx context.Context, h host.Host, self string) error {
	line := "nodes=$(" + Kubectl + " --request-timeout=20s get nodes -o name) || exit 1; for n in $nodes; do " +
		"[ \"$n\" = " + host.Quote("node/"+self) + " ] || " + Kubectl + " --request-timeout=60s delete \"$n\" --wait=false || exit 1; done; " +
		host.Join("rm", "-f", "--", RestoreMarker)
	if err := h.Run(ctx, host.Cmd{Line: line}); err != nil {
		return fmt.Errorf("delete the Node objects of the hosts the restore rebuilds: %w", err)
	}
	return nil
}
