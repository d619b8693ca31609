package facts

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/clusterctl/clusterctl/provision/host"
)

//go:embed probe.sh
var probeScript string

// Request says which settings the plan needs to know about.
type Request struct {
	Sysctls  []string
	Modules  []string
	Packages []string
	// Files are paths whose sha256 is reported (steps compare it with the
	// content they would write).
	Files []string
}

// Merge adds r2's entries to r, without duplicates, sorted.
func (r Request) Merge(r2 Request) Request {
	return Request{
		Sysctls:  union(r.Sysctls, r2.Sysctls),
		Modules:  union(r.Modules, r2.Modules),
		Packages: union(r.Packages, r2.Packages),
		Files:    union(r.Files, r2.Files),
	}
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range append(append([]string{}, a...), b...) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// Gather runs the probe on h in one round trip (the script goes on stdin)
// and parses what it prints.
func Gather(ctx context.Context, h host.Host, req Request) (*Facts, error) {
	args := []string{"sh", "-s", "--"}
	args = append(args, req.Sysctls...)
	args = append(args, "--")
	args = append(args, req.Modules...)
	args = append(args, "--")
	args = append(args, req.Packages...)
	args = append(args, "--")
	args = append(args, req.Files...)
	var out, errb bytes.Buffer
	err := h.Run(ctx, host.Cmd{Line: host.Join(args...), Stdin: strings.NewReader(probeScript), Stdout: &out, Stderr: &errb})
	if err != nil {
		return nil, fmt.Errorf("gather facts from %s: %w", h.Name(), err)
	}
	f, err := Parse(h.Name(), out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("gather facts from %s: %w", h.Name(), err)
	}
	return f, nil
}

// Parse reads the probe's output. Anything but a complete, well-formed
// answer is an error: a plan built on half the facts would be wrong.
func Parse(hostName string, out []byte) (*Facts, error) {
	f := &Facts{
		Host:       hostName,
		Sysctl:     map[string]string{},
		Modules:    map[string]string{},
		Packages:   map[string]string{},
		DiskFreeMB: map[string]int64{},
		Files:      map[string]string{},
		Services:   map[string]string{},
	}
	complete := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" {
			continue
		}
		if complete {
			return nil, fmt.Errorf("probe output line %d: data after the end marker", line)
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("probe output line %d: not key=value: %q", line, clip(text))
		}
		if err := f.set(k, v); err != nil {
			return nil, fmt.Errorf("probe output line %d: %w", line, err)
		}
		if k == "end" {
			complete = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read probe output: %w", err)
	}
	if !complete {
		return nil, fmt.Errorf("probe output ended early after %d lines (connection lost or probe killed)", line)
	}
	if f.OSID == "" || f.Kernel == "" {
		return nil, fmt.Errorf("probe output lacks the OS id or kernel")
	}
	f.OSFamily = family(f.OSID, f.osLike)
	return f, nil
}

func (f *Facts) set(k, v string) error {
	switch {
	case strings.HasPrefix(k, "sysctl."):
		key := strings.TrimPrefix(k, "sysctl.")
		if k, absent := strings.CutSuffix(key, "!"); absent {
			// The key does not exist on this kernel: absent from the map.
			switch v {
			case "missing":
				f.SysctlUnknown = append(f.SysctlUnknown, k)
			case "nodir":
			default:
				return fmt.Errorf("sysctl %s: state %q unknown", k, v)
			}
			return nil
		}
		f.Sysctl[key] = strings.Join(strings.Fields(v), " ")
	case strings.HasPrefix(k, "module."):
		switch v {
		case "loaded", "builtin", "available", "missing":
			f.Modules[strings.TrimPrefix(k, "module.")] = v
		default:
			return fmt.Errorf("module state %q unknown", v)
		}
	case strings.HasPrefix(k, "pkg."):
		f.Packages[strings.TrimPrefix(k, "pkg.")] = v
	case strings.HasPrefix(k, "file."):
		f.Files[strings.TrimPrefix(k, "file.")] = v
	case strings.HasPrefix(k, "service."):
		f.Services[strings.TrimPrefix(k, "service.")] = v
	case strings.HasPrefix(k, "disk."):
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("free disk %q: not a number", v)
		}
		f.DiskFreeMB[strings.TrimPrefix(k, "disk.")] = n
	default:
		return f.setScalar(k, v)
	}
	return nil
}

func (f *Facts) setScalar(k, v string) error {
	switch k {
	case "os.id":
		f.OSID = v
	case "os.version":
		f.OSVersion = v
	case "os.like":
		f.osLike = v
	case "arch":
		f.Arch = v
	case "kernel":
		f.Kernel = v
	case "init":
		f.Init = v
	case "cgroup":
		n, err := strconv.Atoi(v)
		if err != nil || (n != 1 && n != 2) {
			return fmt.Errorf("cgroup version %q", v)
		}
		f.CgroupV = n
	case "hostname":
		f.Hostname = v
	case "swap.device":
		f.SwapDevices = append(f.SwapDevices, v)
	case "fstab.swap":
		f.FstabSwap = append(f.FstabSwap, v)
	case "selinux":
		f.SELinux = v
	case "pkgmgr":
		f.PackageManager = v
	case "firewall":
		f.Firewall = v
	case "firewall.active":
		f.FirewallActive = v == "yes"
	case "timesync":
		f.TimeSync = v
	case "timesync.active":
		f.TimeSyncActive = v == "yes"
	case "containerd":
		f.Containerd = v
	case "containerd.active":
		f.ContainerdActive = v == "yes"
	case "kubelet":
		f.Kubelet = strings.TrimPrefix(v, "v")
	case "kubeadm":
		f.Kubeadm = strings.TrimPrefix(v, "v")
	case "k3s":
		f.K3s = strings.TrimPrefix(v, "v")
	case "etchosts":
		f.EtcHosts = append(f.EtcHosts, v)
	case "end":
		if v != "ok" {
			return fmt.Errorf("end marker %q", v)
		}
	default:
		return fmt.Errorf("unknown fact %q", k)
	}
	return nil
}

func family(id, like string) string {
	for _, w := range append([]string{id}, strings.Fields(like)...) {
		switch w {
		case "debian", "ubuntu":
			return "debian"
		case "rhel", "fedora", "centos", "rocky", "almalinux":
			return "rhel"
		}
	}
	return "other"
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Digest identifies these facts: apply refuses a saved plan when a host's
// digest changed since the plan was made.
// Free disk space changes all the time and is left out.
func (f *Facts) Digest() string {
	c := *f
	c.DiskFreeMB = nil
	b, _ := json.Marshal(&c) // maps marshal with sorted keys
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Sorted returns the keys of m in order, for stable output.
func Sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
