package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/spec"
	"github.com/clusterctl/clusterctl/provision/transport/ssh"
)

// fleet is one connection per host, opened lazily and closed together.
type fleet struct {
	pool     *ssh.Pool
	redactor *host.Redactor
	hosts    map[string]host.Host
	names    []string
	// sshConfig is the spec's ssh.config file, parsed once (nil: none).
	sshConfig *ssh.OpenSSHConfig
	// conns is each host's resolved transport config and where each of
	// its settings came from, for facts.
	conns map[string]resolvedConn
}

type resolvedConn struct {
	cfg     ssh.Config
	origins ssh.Origins
}

// connect maps every host's SSH settings from the spec into transport
// configs. Secrets named by the spec are read from the environment here
// and registered for redaction before anything runs.
func connect(c *spec.Cluster, red *host.Redactor) (*fleet, error) {
	f := &fleet{pool: ssh.NewPool(), redactor: red, hosts: map[string]host.Host{}, names: c.Names(), conns: map[string]resolvedConn{}}
	if c.SSH.Config != "" {
		oc, err := ssh.LoadOpenSSHConfig(specPath(c.Dir, c.SSH.Config))
		if err != nil {
			f.pool.Close()
			return nil, fmt.Errorf("ssh.config: %w", err)
		}
		f.sshConfig = oc
	}
	var errs []error
	for _, name := range f.names {
		h, err := hostFor(c, name, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", name, err))
			continue
		}
		f.hosts[name] = h
	}
	if err := errors.Join(errs...); err != nil {
		f.pool.Close()
		return nil, err
	}
	return f, nil
}

func (f *fleet) Close() error { return f.pool.Close() }

func hostFor(c *spec.Cluster, name string, f *fleet) (host.Host, error) {
	s := c.SSHFor(name)
	cfg, origins, sudo, err := transportConfig(c, name, f.sshConfig, f.redactor)
	if err != nil {
		return nil, err
	}
	if f.conns == nil {
		f.conns = map[string]resolvedConn{}
	}
	f.conns[name] = resolvedConn{cfg: cfg, origins: origins}
	h := f.pool.Host(cfg)
	if !sudo {
		return h, nil
	}
	var password string
	if s.SudoPasswordEnv != "" {
		password = os.Getenv(s.SudoPasswordEnv)
		if password == "" {
			return nil, fmt.Errorf("ssh.sudo.passwordEnv names %s, which is not set in clusterctl's environment", s.SudoPasswordEnv)
		}
	}
	return host.WithSudo(h, host.SudoOptions{Password: password, Redactor: f.redactor}), nil
}

// transportConfig is the transport config of one host: the spec's settings,
// and with ssh.config, the ssh_config file's where the spec wrote nothing
// (schema defaults come last). sudo follows the final user unless the spec
// set sudo.enabled.
func transportConfig(c *spec.Cluster, name string, oc *ssh.OpenSSHConfig, red *host.Redactor) (cfg ssh.Config, origins ssh.Origins, sudo bool, err error) {
	s := c.SSHFor(name)
	timeout, err := time.ParseDuration(s.ConnectTimeout)
	if err != nil {
		return cfg, nil, false, fmt.Errorf("ssh.connectTimeout: %w", err)
	}
	cfg = ssh.Config{
		Name:           name,
		Address:        s.Address,
		Port:           s.Port,
		User:           s.User,
		PassphraseEnv:  s.PassphraseEnv,
		KnownHostsFile: specPath(c.Dir, s.KnownHostsFile),
		HostKeyPolicy:  s.HostKeyPolicy,
		DialTimeout:    timeout,
		Redactor:       red,
	}
	if s.IdentityFile != "" {
		cfg.IdentityFiles = []string{specPath(c.Dir, s.IdentityFile)}
	}
	if b := s.Bastion; b != nil {
		bc := cfg // same keys and known_hosts unless the bastion says otherwise
		bc.Name, bc.Address, bc.Port, bc.Bastion = "bastion "+b.Address, b.Address, b.Port, nil
		if b.User != "" {
			bc.User = b.User
		}
		if b.IdentityFile != "" {
			bc.IdentityFiles = []string{specPath(c.Dir, b.IdentityFile)}
		}
		cfg.Bastion = &bc
	}
	if oc == nil {
		return cfg, specOrigins(s.Written), s.Sudo, nil
	}
	written := ssh.Config{Name: name, Address: cfg.Address, PassphraseEnv: cfg.PassphraseEnv, DialTimeout: timeout, Redactor: red}
	if s.Written["user"] {
		written.User = cfg.User
	}
	if s.Written["port"] {
		written.Port = cfg.Port
	}
	if s.Written["identityFile"] {
		written.IdentityFiles = cfg.IdentityFiles
	}
	if s.Written["knownHostsFile"] {
		written.KnownHostsFile = cfg.KnownHostsFile
	}
	if s.Written["hostKeyPolicy"] {
		written.HostKeyPolicy = cfg.HostKeyPolicy
	}
	if s.Written["bastion"] {
		written.Bastion = cfg.Bastion
	}
	cfg, origins, err = oc.Resolve(written, cfg)
	if err != nil {
		return cfg, origins, false, fmt.Errorf("ssh.config: %w", err)
	}
	sudo = s.Sudo
	if !s.Written["sudo"] {
		sudo = cfg.User != "root"
	}
	return cfg, origins, sudo, nil
}

// specOrigins are the origins without an ssh_config file.
func specOrigins(written map[string]bool) ssh.Origins {
	o := ssh.Origins{ssh.SettingHostName: ssh.OriginSpec}
	for setting, field := range map[string]string{
		ssh.SettingUser: "user", ssh.SettingPort: "port", ssh.SettingIdentityFile: "identityFile",
		ssh.SettingKnownHostsFile: "knownHostsFile", ssh.SettingHostKeyPolicy: "hostKeyPolicy", ssh.SettingProxyJump: "bastion",
	} {
		o[setting] = ssh.OriginDefault
		if written[field] {
			o[setting] = ssh.OriginSpec
		}
	}
	return o
}

// specPath expands ~ and makes relative paths relative to the spec's
// directory, so a spec and its known_hosts can live together in git.
func specPath(dir, p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, strings.TrimPrefix(p[1:], "/"))
		}
	}
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// gatherAll probes every host in parallel: one round trip each. Every
// host's failure is reported, not only the first.
func gatherAll(ctx context.Context, f *fleet, req func(name string) facts.Request, parallel int) (map[string]*facts.Facts, error) {
	var mu sync.Mutex
	out := map[string]*facts.Facts{}
	var errs []error
	// A plain group: one host's failure must not cancel the others' probes.
	var g errgroup.Group
	g.SetLimit(max(parallel, 1))
	for _, name := range f.names {
		g.Go(func() error {
			fa, err := facts.Gather(ctx, f.hosts[name], req(name))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			out[name] = fa
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		return out, errors.Join(sortedErrors(errs)...)
	}
	return out, nil
}

func sortedErrors(errs []error) []error {
	return slices.SortedFunc(slices.Values(errs), func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
}
