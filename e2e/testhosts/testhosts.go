// Package testhosts boots real test hosts on one Linux machine for clusterctl's end-to-end tests.
//
// Each host is a set of namespaces (network, mount, pid, uts, ipc, cgroup) with its own address on a bridge,
// an overlay root over one shared Debian bookworm root filesystem, systemd as PID 1 and OpenSSH's sshd:
// real machines as far as SSH, systemd, files and packages go, booted in about a second. Root, the
// passwordless sudo user "tester" and the password sudo user "tester-pw" (password "testpass") accept one
// test key. The work is done by the embedded shell scripts (also usable on their own, see README.md); this
// package runs them. Everything needs root.
package testhosts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Options configure a cluster of test hosts.
type Options struct {
	// Net is the first three octets of the hosts' /24, e.g. "172.31.7": the machine is .1, host hN is at
	// .(10+N). Default: $TESTHOSTS_NET, else "172.31.0". Runs at the same time need different nets.
	Net string
	// Count is the number of hosts, h1..hCount (1..99).
	Count int
	// Prefix names the bridge (<Prefix>br0), veths (<Prefix>h1), network namespaces and cgroups
	// (<Prefix>-h1) and the run dir, so parallel test packages never collide: 1-10 of [a-z0-9], starting
	// with a letter. Default: $TESTHOSTS_PREFIX, else "th".
	Prefix string
	// CacheDir holds the root filesystem, the test key and the hosts' disks.
	// Default: ${CLUSTERCTL_CACHE:-/var/cache/clusterctl}/testhosts. Must not be on overlayfs.
	CacheDir string
	// Release is the hosts' Debian release: "trixie" (13) or "bookworm" (12). Default:
	// $TESTHOSTS_RELEASE, else trixie.
	Release string
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

// Host is one test host.
type Host struct {
	Name  string // h1, h2, ...: its hostname, listed in every host's /etc/hosts
	Index int    // 1 for h1: the i of the Cluster methods
	Addr  string // IPv4 address, e.g. 172.31.7.11
}

// Cluster is a running set of test hosts. Methods taking i address host h<i> (Host.Index, 1-based).
type Cluster struct {
	Hosts      []Host
	KeyFile    string // private key accepted by root, tester and tester-pw on every host
	KnownHosts string // known_hosts with every host's real host key (by address)
	Net        string
	Prefix     string
	RunDir     string // per-run state: the hosts' disks (hN/upper), console logs (hN/console.log); removed by Close

	opt    Options
	run    *runner
	mu     sync.Mutex
	lock   *os.File // flock held while this cluster owns the prefix
	closed bool
}

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)
	netRE    = regexp.MustCompile(`^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$`)
)

// ErrPrefixInUse is returned by Start and Destroy when another live process owns the prefix.
var ErrPrefixInUse = errors.New("test host prefix in use by another process")

func (o Options) withDefaults() (Options, error) {
	if o.Net == "" {
		o.Net = os.Getenv("TESTHOSTS_NET")
	}
	if o.Net == "" {
		o.Net = "172.31.0"
	}
	if o.Prefix == "" {
		o.Prefix = os.Getenv("TESTHOSTS_PREFIX")
	}
	if o.Prefix == "" {
		o.Prefix = "th"
	}
	if o.CacheDir == "" {
		base := os.Getenv("CLUSTERCTL_CACHE")
		if base == "" {
			base = "/var/cache/clusterctl"
		}
		o.CacheDir = filepath.Join(base, "testhosts")
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	m := netRE.FindStringSubmatch(o.Net)
	if m == nil {
		return o, fmt.Errorf("net %q: want three octets, e.g. 172.31.7", o.Net)
	}
	for _, s := range m[1:] {
		if n, _ := strconv.Atoi(s); n > 255 {
			return o, fmt.Errorf("net %q: octet %s > 255", o.Net, s)
		}
	}
	if !prefixRE.MatchString(o.Prefix) {
		return o, fmt.Errorf("prefix %q: want 1-10 of [a-z0-9], starting with a letter", o.Prefix)
	}
	if o.Count < 0 || o.Count > 99 {
		return o, fmt.Errorf("count %d: want 1..99", o.Count)
	}
	abs, err := filepath.Abs(o.CacheDir)
	if err != nil {
		return o, err
	}
	o.CacheDir = abs
	return o, nil
}

// newCluster prepares the cluster value, its scripts and the prefix lock, without touching any host.
func newCluster(opt Options) (*Cluster, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("test hosts need root")
	}
	dir, err := writeScripts(opt.CacheDir)
	if err != nil {
		return nil, err
	}
	runs := filepath.Join(opt.CacheDir, "runs")
	if err := os.MkdirAll(runs, 0o755); err != nil {
		return nil, fmt.Errorf("create run dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(runs, opt.Prefix+".owner.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open prefix lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("prefix %q: %w", opt.Prefix, ErrPrefixInUse)
		}
		return nil, fmt.Errorf("lock prefix %q: %w", opt.Prefix, err)
	}
	listed := max(opt.Count, 9) // every host's /etc/hosts lists h1..h9 at least
	c := &Cluster{
		KeyFile: filepath.Join(opt.CacheDir, "keys", "id_ed25519"),
		Net:     opt.Net,
		Prefix:  opt.Prefix,
		RunDir:  filepath.Join(runs, opt.Prefix),
		opt:     opt,
		lock:    lock,
		run: &runner{dir: dir, logf: opt.Logf, env: []string{
			"TESTHOSTS_CACHE=" + opt.CacheDir,
			"TESTHOSTS_NET=" + opt.Net,
			"TESTHOSTS_PREFIX=" + opt.Prefix,
			"TESTHOSTS_MAX=" + strconv.Itoa(listed),
		}},
	}
	if opt.Release != "" {
		c.run.env = append(c.run.env, "TESTHOSTS_RELEASE="+opt.Release)
	}
	c.KnownHosts = filepath.Join(c.RunDir, "known_hosts")
	for i := 1; i <= opt.Count; i++ {
		c.Hosts = append(c.Hosts, Host{Name: "h" + strconv.Itoa(i), Index: i, Addr: fmt.Sprintf("%s.%d", opt.Net, 10+i)})
	}
	return c, nil
}

// Start builds the root filesystem if needed, removes what a crashed run with the same prefix left behind,
// boots all hosts in parallel with fresh disks, and returns once every sshd accepts the key (checked
// against the host's real host key). On error nothing is left running.
func Start(ctx context.Context, opt Options) (*Cluster, error) {
	if opt.Count < 1 {
		return nil, fmt.Errorf("count %d: want 1..99", opt.Count)
	}
	c, err := newCluster(opt)
	if err != nil {
		return nil, err
	}
	logf := c.opt.Logf
	t0 := time.Now()
	if _, err := c.run.run(ctx, true, "make-rootfs.sh"); err != nil {
		c.releaseLock()
		return nil, fmt.Errorf("build rootfs: %w", err)
	}
	logf("testhosts: rootfs ready after %s", time.Since(t0).Round(time.Millisecond))
	if _, err := c.run.run(ctx, false, "down.sh", "--all", "--purge"); err != nil {
		c.releaseLock()
		return nil, fmt.Errorf("clean up earlier run of prefix %q: %w", c.Prefix, err)
	}
	t1 := time.Now()
	if _, err := c.run.run(ctx, false, "up.sh", c.indexes()...); err != nil {
		c.Close()
		return nil, fmt.Errorf("launch hosts: %w", err)
	}
	if err := c.waitSSH(ctx, c.indexes()...); err != nil {
		c.Close()
		return nil, err
	}
	logf("testhosts: %d hosts on %s.0/24 accept SSH after %s", len(c.Hosts), c.Net, time.Since(t1).Round(time.Millisecond))
	return c, nil
}

// Destroy power-cuts every host of opt.Prefix and removes their network, cgroups and disks: for hosts a
// Cluster no longer owns (the CLI's "up" leaves them running). Fails with ErrPrefixInUse if a live
// process's Cluster owns the prefix.
func Destroy(ctx context.Context, opt Options) error {
	c, err := newCluster(opt)
	if err != nil {
		return err
	}
	defer c.releaseLock()
	if _, err := c.run.run(ctx, false, "down.sh", "--all", "--purge"); err != nil {
		return fmt.Errorf("destroy test hosts %q: %w", c.Prefix, err)
	}
	return nil
}

func (c *Cluster) indexes() []string {
	s := make([]string, len(c.Hosts))
	for i, h := range c.Hosts {
		s[i] = strconv.Itoa(h.Index)
	}
	return s
}

func (c *Cluster) waitSSH(ctx context.Context, idx ...string) error {
	timeout := 120 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Second)
	}
	args := append([]string{"--timeout", strconv.Itoa(int(timeout.Seconds()))}, idx...)
	out, err := c.run.run(ctx, false, "wait-ssh.sh", args...)
	if err != nil {
		return fmt.Errorf("wait for sshd: %w", err)
	}
	c.opt.Logf("%s", out)
	return nil
}

// Host returns host h<i>.
func (c *Cluster) Host(i int) (Host, error) {
	if i < 1 || i > len(c.Hosts) {
		return Host{}, fmt.Errorf("no host h%d: the cluster has h1..h%d", i, len(c.Hosts))
	}
	return c.Hosts[i-1], nil
}

// hostArg in hostOp's args stands for the host number.
const hostArg = "\x00host"

// hostOp runs a script about host h<i> of an open cluster.
func (c *Cluster) hostOp(ctx context.Context, i int, script string, args ...string) (string, error) {
	if _, err := c.Host(i); err != nil {
		return "", err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return "", errors.New("test host cluster is closed")
	}
	a := make([]string, len(args))
	for k, s := range args {
		if s == hostArg {
			s = strconv.Itoa(i)
		}
		a[k] = s
	}
	return c.run.run(ctx, false, script, a...)
}

// Close power-cuts all hosts and removes the bridge, veths, namespaces, cgroups and the run dir (the hosts'
// disks). Idempotent; safe to defer.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.run.run(ctx, false, "down.sh", "--all", "--purge")
	c.releaseLock()
	if err != nil {
		return fmt.Errorf("close test hosts: %w", err)
	}
	return nil
}

func (c *Cluster) releaseLock() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// Stop shuts host h<i> down cleanly (SIGRTMIN+3 to its systemd, as `poweroff`); its disk is kept for Boot.
func (c *Cluster) Stop(ctx context.Context, i int) error {
	_, err := c.hostOp(ctx, i, "down.sh", hostArg)
	return wrap(err, "stop h%d", i)
}

// Kill cuts host h<i>'s power: every process dies at once; its disk is kept for Boot (write with sync
// what must survive, as on real hardware).
func (c *Cluster) Kill(i int) error {
	_, err := c.hostOp(context.Background(), i, "down.sh", "--kill", hostArg)
	return wrap(err, "kill h%d", i)
}

// Boot boots a stopped or killed host h<i> again with its disk state and waits until its sshd accepts the key.
func (c *Cluster) Boot(ctx context.Context, i int) error {
	if _, err := c.hostOp(ctx, i, "up.sh", hostArg); err != nil {
		return wrap(err, "boot h%d", i)
	}
	return wrap(c.waitSSH(ctx, strconv.Itoa(i)), "boot h%d", i)
}

// Pause freezes every process of host h<i> (cgroup freezer): TCP connections are still accepted by its
// kernel, but nothing answers on them.
func (c *Cluster) Pause(i int) error {
	_, err := c.hostOp(context.Background(), i, "fail.sh", "pause", hostArg)
	return wrap(err, "pause h%d", i)
}

// Resume thaws a paused host h<i>.
func (c *Cluster) Resume(i int) error {
	_, err := c.hostOp(context.Background(), i, "fail.sh", "resume", hostArg)
	return wrap(err, "resume h%d", i)
}

// Disconnect pulls host h<i>'s network cable (link down): connections to it time out.
func (c *Cluster) Disconnect(i int) error {
	_, err := c.hostOp(context.Background(), i, "fail.sh", "disconnect", hostArg)
	return wrap(err, "disconnect h%d", i)
}

// Reconnect plugs host h<i>'s network cable back in.
func (c *Cluster) Reconnect(i int) error {
	_, err := c.hostOp(context.Background(), i, "fail.sh", "reconnect", hostArg)
	return wrap(err, "reconnect h%d", i)
}

// Exec runs script with bash as root inside host h<i> through nsenter (not SSH: it works while sshd or the
// network is down, and while the host is paused) and returns its combined output. A non-zero exit is an
// error wrapping *exec.ExitError.
func (c *Cluster) Exec(ctx context.Context, i int, script string) (string, error) {
	out, err := c.hostOp(ctx, i, "exec.sh", hostArg, script)
	if err != nil {
		var se *ScriptError
		if errors.As(err, &se) {
			return out, fmt.Errorf("exec on h%d: %w", i, se.Err)
		}
		return out, fmt.Errorf("exec on h%d: %w", i, err)
	}
	return out, nil
}

// SSHArgs returns arguments for the system ssh client that log in to host h<i> as user with the test key,
// checking the host key against KnownHosts, ignoring the user's ssh config; append a command to run one.
func (c *Cluster) SSHArgs(user string, i int) []string {
	h, _ := c.Host(i)
	return []string{
		"-F", "none", "-i", c.KeyFile, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + c.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
		user + "@" + h.Addr,
	}
}

func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
