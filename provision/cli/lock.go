package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/lock"
	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/state"
	"github.com/clusterctl/clusterctl/provision/transport/ssh"
)

// lockHost is where the cluster's lock lives: one control plane, the same
// for every operator, or two who reach different ones would both hold "the"
// lock. It is the spec's first control plane (the one the cluster was
// initialised on), unless --lock-host names another.
func lockHost(c *spec.Cluster, override string) (string, error) {
	cps := c.ControlPlanes()
	if override == "" {
		return cps[0], nil
	}
	if !slices.Contains(cps, override) {
		return "", fmt.Errorf("--lock-host %q is not a control plane of the spec (those are: %s)", override, strings.Join(cps, ", "))
	}
	return override, nil
}

// onLockHost runs fn on the lock's host. When that host cannot be reached
// the error names it and the way out, instead of locking elsewhere.
func onLockHost(c *spec.Cluster, f *fleet, lockAt string, fn func(name string, h host.Host) error) error {
	name, err := lockHost(c, lockAt)
	if err != nil {
		return err
	}
	err = fn(name, f.hosts[name])
	if errors.Is(err, host.ErrUnreachable) || errors.Is(err, host.ErrDisconnected) {
		where := "the spec's first control plane"
		if lockAt != "" {
			where = "the control plane --lock-host names"
		}
		return fmt.Errorf("the cluster's lock lives on %s, %s, which cannot be reached: %w; "+
			"if it is gone for good, keep the lock on another control plane with --lock-host NAME (every run on this cluster must then pass the same)", name, where, err)
	}
	return err
}

// takeLock locks the cluster for a changing command (apply, reset,
// restore, force-unlock excepted) on the lock's host (see lockHost).
func takeLock(ctx context.Context, c *spec.Cluster, f *fleet, lockAt, command string, stderr io.Writer) (*lock.Lock, error) {
	var l *lock.Lock
	err := onLockHost(c, f, lockAt, func(name string, h host.Host) error {
		var err error
		l, err = lock.File{Host: h, HostName: name}.Acquire(ctx, lock.Options{
			Command: command,
			Warn:    func(msg string) { fmt.Fprintln(stderr, "warning:", f.redactor.Redact(msg)) },
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lock the cluster: %w", err)
	}
	return l, nil
}

// addLockHostFlag: every command that takes or reads the lock can be told
// where it lives when the spec's first control plane is gone.
func addLockHostFlag(f *pflag.FlagSet) {
	f.String("lock-host", "", "control plane that holds the cluster's lock (default: the spec's first control plane; "+
		"override only when that one is gone for good, and then on every run)")
}

// readPrevious reads the cluster's record of its last apply from the first
// control plane that answers. A cluster whose record cannot be read is
// planned without it, with a warning: removed hosts then go unplanned.
func readPrevious(ctx context.Context, c *spec.Cluster, f *fleet, warn func(string)) *state.Record {
	var rec *state.Record
	var problems []string
	for _, name := range c.ControlPlanes() {
		admin := plan.Admin(c)
		r, err := state.Read(ctx, f.hosts[name], admin.Kubectl, admin.Kubeconfig, c.Name)
		if err == nil {
			rec = r
			if r != nil || len(problems) == 0 {
				return rec
			}
			// No cluster on this one, but another one failed: keep looking.
			continue
		}
		var exit *host.ExitError
		if errors.As(err, &exit) || !isTransport(err) {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
		} // a host that cannot be reached is reported by the fact gathering
	}
	if len(problems) > 0 && rec == nil {
		warn(fmt.Sprintf("could not read the cluster's record of its last apply (%s); hosts removed from the spec since then are not planned",
			f.redactor.Redact(strings.Join(problems, "; "))))
	}
	return rec
}

// connectRemoved connects to the hosts that left the spec and were named
// for removal, as the record says they were reached (the spec's SSH
// defaults fill in keys and bastion). Their host keys must already be in
// known_hosts whatever the spec's hostKeyPolicy: only the record vouches
// for their addresses, so a key is never learnt from them. Those that
// cannot be reached are returned: they are taken out of the cluster
// without being reset.
func connectRemoved(ctx context.Context, c *spec.Cluster, f *fleet, removed []state.Host, warn func(string)) map[string]bool {
	if len(removed) == 0 {
		return nil
	}
	shadow := *c
	shadow.Hosts = maps.Clone(c.Hosts)
	shadow.SSH.HostKeyPolicy = ssh.HostKeyStrict
	// Written, so that an ssh_config StrictHostKeyChecking cannot relax it.
	shadow.SSHWritten = maps.Clone(c.SSHWritten)
	if shadow.SSHWritten == nil {
		shadow.SSHWritten = map[string]bool{}
	}
	shadow.SSHWritten["hostKeyPolicy"] = true
	gone := map[string]bool{}
	for _, r := range removed {
		shadow.Hosts[r.Name] = spec.Host{Address: r.Address, Roles: r.Roles, SSH: &spec.HostSSH{User: r.User, Port: r.Port}}
		h, err := hostFor(&shadow, r.Name, f)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = h.Run(pctx, host.Cmd{Line: "true"})
			cancel()
		}
		if err != nil {
			warn(fmt.Sprintf("host %s left the spec and cannot be reached (%s): it is drained and removed from the cluster, but not reset",
				r.Name, f.redactor.Redact(err.Error())))
			gone[r.Name] = true
			continue
		}
		f.hosts[r.Name] = h
		f.names = append(f.names, r.Name)
	}
	return gone
}

// printWarning is a warn function that only prints, as "warning: MSG".
func printWarning(w io.Writer) func(string) {
	return func(msg string) { fmt.Fprintln(w, "warning:", msg) }
}

func isTransport(err error) bool {
	for _, e := range []error{host.ErrUnreachable, host.ErrDisconnected, host.ErrAuthFailed, host.ErrHostKeyMismatch, host.ErrHostKeyUnknown} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func newForceUnlockCommand(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "force-unlock LOCK_ID [PATH...]",
		Short: "Release the cluster's lock left behind by a run that died",
		Long: `Every changing command (apply, reset, restore) locks the cluster on its
spec's first control plane (or the one --lock-host names); a second one is refused and told who holds
the lock. When the holder died (killed, laptop closed, CI job cancelled),
its heartbeat stops and the refusal says the lock is stale, with its ID.
Make sure the holder is really gone, then release the lock with that ID.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadSpec(args[1:])
			if err != nil {
				return err
			}
			red := host.NewRedactor()
			f, err := connect(c, red)
			if err != nil {
				return err
			}
			defer f.Close()
			ctx := cmd.Context()
			err = onLockHost(c, f, d.v.GetString("lock-host"), func(name string, h host.Host) error {
				holder, err := lock.File{Host: h, HostName: name}.ForceUnlock(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Released lock %s held by %s on %s.\n", holder.ID, holder, name)
				return nil
			})
			if err != nil {
				return red.Error(err)
			}
			return nil
		},
	}
	addLockHostFlag(cmd.Flags())
	return cmd
}
