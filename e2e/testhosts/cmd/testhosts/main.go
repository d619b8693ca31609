// Command testhosts boots and removes clusterctl's namespace test hosts from a shell (needs root).
//
//	testhosts up 3 [--net 172.31.7] [--prefix ct] [--dir DIR] [--control-planes 1] [--user root]
//	testhosts down [--net 172.31.7] [--prefix ct]
//
// "up" prints one line per host, writes DIR/cluster.cue (the cluster spec) and DIR/known_hosts, and leaves
// the hosts running; "down" power-cuts them and removes their network, cgroups and disks.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/clusterctl/clusterctl/e2e/testhosts"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "testhosts:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  testhosts up N [--net 172.31.0] [--prefix th] [--cache DIR] [--dir .] [--control-planes 1] [--user root]
  testhosts down [--net 172.31.0] [--prefix th] [--cache DIR]`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n%s", usage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("testhosts "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt testhosts.Options
	fs.StringVar(&opt.Net, "net", "", "first three octets of the hosts' /24 (default $TESTHOSTS_NET or 172.31.0)")
	fs.StringVar(&opt.Prefix, "prefix", "", "name prefix of bridge, veths, namespaces (default $TESTHOSTS_PREFIX or th)")
	fs.StringVar(&opt.CacheDir, "cache", "", "cache dir (default ${CLUSTERCTL_CACHE:-/var/cache/clusterctl}/testhosts)")
	dir := fs.String("dir", ".", "up: where to write cluster.cue and known_hosts")
	cps := fs.Int("control-planes", 1, "up: number of control-plane hosts in cluster.cue")
	user := fs.String("user", "root", "up: SSH user in cluster.cue (root, tester, tester-pw)")
	opt.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "up":
		// Accept "up 3 --net X" as well as "up --net X 3".
		var count string
		if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
			count, args = args[0], args[1:]
		}
		if err := fs.Parse(args); err != nil {
			return err
		}
		if count == "" && fs.NArg() == 1 {
			count = fs.Arg(0)
		} else if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q\n%s", fs.Args(), usage)
		}
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			return fmt.Errorf("up: want a host count, got %q\n%s", count, usage)
		}
		opt.Count = n
		c, err := testhosts.Start(ctx, opt)
		if err != nil {
			return err
		}
		// The hosts keep running after this process exits: "testhosts down" removes them.
		return writeOut(c, *dir, testhosts.InventoryOptions{User: *user, ControlPlanes: *cps}, stdout)
	case "down":
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q\n%s", fs.Args(), usage)
		}
		return testhosts.Destroy(ctx, opt)
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

func writeOut(c *testhosts.Cluster, dir string, inv testhosts.InventoryOptions, stdout io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	kh, err := os.ReadFile(c.KnownHosts)
	if err != nil {
		return fmt.Errorf("read known_hosts: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c.KnownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(c.KnownHosts, kh, 0o644); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	spec := filepath.Join(dir, "cluster.cue")
	if err := c.WriteInventory(spec, inv); err != nil {
		return err
	}
	for _, h := range c.Hosts {
		fmt.Fprintf(stdout, "%s %s\n", h.Name, h.Addr)
	}
	fmt.Fprintf(stdout, "# spec: %s\n# ssh:  ssh -i %s -o UserKnownHostsFile=%s root@%s\n",
		spec, c.KeyFile, c.KnownHosts, c.Hosts[0].Addr)
	return nil
}
