package ssh

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	sshconfig "github.com/kevinburke/ssh_config"
)

// Origins of a resolved setting.
const (
	OriginSpec    = "spec"
	OriginDefault = "default"
)

// Origins says where each connection setting came from: OriginSpec,
// OriginDefault, or "ssh_config FILE:LINE".
type Origins map[string]string

// Setting names used as Origins keys.
const (
	SettingHostName       = "hostname"
	SettingUser           = "user"
	SettingPort           = "port"
	SettingIdentityFile   = "identityFile"
	SettingKnownHostsFile = "knownHostsFile"
	SettingHostKeyPolicy  = "hostKeyPolicy"
	SettingProxyJump      = "proxyJump"
)

// ErrInsecureSSHConfig marks an ssh_config setting that would turn host key
// verification off; clusterctl refuses it instead of honouring it.
var ErrInsecureSSHConfig = errors.New("refused: clusterctl always verifies host keys")

// OpenSSHConfig is a parsed OpenSSH client config file (ssh_config(5)).
// Supported: Host and Match host blocks (wildcards, negation), Include,
// HostName, User, Port, IdentityFile, ProxyJump, UserKnownHostsFile,
// StrictHostKeyChecking; other keywords are ignored.
type OpenSSHConfig struct {
	path string
	cfg  *sshconfig.Config
}

// LoadOpenSSHConfig parses the file at path.
func LoadOpenSSHConfig(path string) (*OpenSSHConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read ssh config: %w", err)
	}
	defer f.Close()
	cfg, err := sshconfig.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("parse ssh config %s: %w", path, err)
	}
	return &OpenSSHConfig{path: path, cfg: cfg}, nil
}

// ParseOpenSSHConfig parses text as if it were the file at path (tests).
func ParseOpenSSHConfig(path, text string) (*OpenSSHConfig, error) {
	cfg, err := sshconfig.DecodeBytes([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("parse ssh config %s: %w", path, err)
	}
	return &OpenSSHConfig{path: path, cfg: cfg}, nil
}

// lookup returns all values of key from the blocks matching any alias, in
// file order (OpenSSH uses the first, except IdentityFile which adds up),
// and where each was written.
func (o *OpenSSHConfig) lookup(aliases []string, key string) (values, origins []string) {
	for _, h := range o.cfg.Hosts {
		if !blockMatches(h, aliases) {
			continue
		}
		for _, n := range h.Nodes {
			switch n := n.(type) {
			case *sshconfig.KV:
				if strings.EqualFold(n.Key, key) {
					values = append(values, n.Value)
					origins = append(origins, fmt.Sprintf("ssh_config %s:%d", o.path, n.Pos().Line))
				}
			case *sshconfig.Include:
				// The library hides the included files: match each alias
				// with its matcher and name the Include line.
				for _, a := range aliases {
					vs, _ := n.GetAll(a, key)
					for _, v := range vs {
						values = append(values, v)
						origins = append(origins, fmt.Sprintf("ssh_config %s:%d (Include)", o.path, n.Pos().Line))
					}
					if len(vs) > 0 {
						break
					}
				}
			}
		}
	}
	return values, origins
}

// first is the value OpenSSH uses for a single-valued key.
func (o *OpenSSHConfig) first(aliases []string, key string) (value, origin string, ok bool) {
	vs, where := o.lookup(aliases, key)
	if len(vs) == 0 {
		return "", "", false
	}
	return vs[0], where[0], true
}

// blockMatches applies ssh_config(5) Host matching to several aliases (the
// spec's host name and its address): a negated pattern matching any alias
// disables the block; otherwise one plain pattern must match.
func blockMatches(h *sshconfig.Host, aliases []string) bool {
	found := false
	for _, p := range h.Patterns {
		pat, negated := strings.CutPrefix(p.String(), "!")
		for _, a := range aliases {
			if !globMatch(pat, a) {
				continue
			}
			if negated {
				return false
			}
			found = true
		}
	}
	return found
}

// globMatch is OpenSSH's match_pattern: '*' matches any run of characters,
// '?' exactly one; case-insensitive as host names are.
func globMatch(pattern, s string) bool {
	pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if globMatch(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
		}
		pattern, s = pattern[1:], s[1:]
	}
	return s == ""
}

// Resolve fills in cfg from the ssh_config entries for its host. cfg holds
// only what the spec wrote (explicit values always win); fallback holds the
// spec's defaults, used where neither says anything. Host blocks are
// matched against cfg.Name and cfg.Address. A ProxyJump chain becomes
// nested Bastion configs, each hop resolved from its own entry.
func (o *OpenSSHConfig) Resolve(cfg, fallback Config) (Config, Origins, error) {
	out, origins, err := o.resolveOne(cfg, fallback, []string{cfg.Name, cfg.Address})
	if err != nil {
		return out, origins, fmt.Errorf("host %s: %w", cfg.Name, err)
	}
	switch {
	case cfg.Bastion != nil:
		origins[SettingProxyJump] = OriginSpec
	default:
		jump, origin, ok := o.first([]string{cfg.Name, cfg.Address}, "ProxyJump")
		if !ok {
			origins[SettingProxyJump] = OriginDefault
			break
		}
		origins[SettingProxyJump] = origin
		out.Bastion, err = o.jumpChain(jump, out)
		if err != nil {
			return out, origins, fmt.Errorf("host %s: ProxyJump %q (%s): %w", cfg.Name, jump, origin, err)
		}
	}
	return out, origins, nil
}

// resolveOne resolves the single-hop settings: spec, then ssh_config, then
// fallback.
func (o *OpenSSHConfig) resolveOne(cfg, fallback Config, aliases []string) (Config, Origins, error) {
	origins := Origins{}
	pick := func(setting string, specSet bool, key string, apply func(v string) error, applyDefault func()) error {
		if specSet {
			origins[setting] = OriginSpec
			return nil
		}
		if v, origin, ok := o.first(aliases, key); ok {
			origins[setting] = origin
			if err := apply(v); err != nil {
				return fmt.Errorf("%s %q (%s): %w", key, v, origin, err)
			}
			return nil
		}
		origins[setting] = OriginDefault
		applyDefault()
		return nil
	}
	var errs []error
	errs = append(errs, pick(SettingHostName, cfg.Address != "", "HostName",
		func(v string) error { cfg.Address = v; return nil },
		func() { cfg.Address = aliases[0] }))
	errs = append(errs, pick(SettingUser, cfg.User != "", "User",
		func(v string) error { cfg.User = v; return nil },
		func() { cfg.User = fallback.User }))
	errs = append(errs, pick(SettingPort, cfg.Port != 0, "Port",
		func(v string) error {
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return errors.New("not a port number")
			}
			cfg.Port = p
			return nil
		},
		func() { cfg.Port = fallback.Port }))
	errs = append(errs, pick(SettingKnownHostsFile, cfg.KnownHostsFile != "", "UserKnownHostsFile",
		func(v string) error {
			// Several files may be listed; the first is the one written to.
			f := expandPath(strings.Fields(v)[0], cfg)
			if f == os.DevNull {
				return fmt.Errorf("%w (a known_hosts file that forgets every key); write ssh.knownHostsFile in the spec to override it", ErrInsecureSSHConfig)
			}
			cfg.KnownHostsFile = f
			return nil
		},
		func() { cfg.KnownHostsFile = fallback.KnownHostsFile }))
	errs = append(errs, pick(SettingHostKeyPolicy, cfg.HostKeyPolicy != "", "StrictHostKeyChecking",
		func(v string) error {
			p, err := hostKeyPolicyOf(v)
			cfg.HostKeyPolicy = p
			return err
		},
		func() { cfg.HostKeyPolicy = fallback.HostKeyPolicy }))
	if len(cfg.IdentityFiles) > 0 {
		origins[SettingIdentityFile] = OriginSpec
	} else if files, where := o.lookup(aliases, "IdentityFile"); len(files) > 0 {
		origins[SettingIdentityFile] = strings.Join(where, ", ")
		for _, f := range files {
			cfg.IdentityFiles = append(cfg.IdentityFiles, expandPath(f, cfg))
		}
	} else {
		origins[SettingIdentityFile] = OriginDefault
		cfg.IdentityFiles = fallback.IdentityFiles
	}
	return cfg, origins, errors.Join(errs...)
}

// hostKeyPolicyOf maps StrictHostKeyChecking to a policy. "no" and "off"
// are refused, not mapped: they would accept any key, even a changed one.
// "ask" becomes strict because there is no one to ask.
func hostKeyPolicyOf(v string) (string, error) {
	switch strings.ToLower(v) {
	case "yes", "ask":
		return HostKeyStrict, nil
	case "accept-new":
		return HostKeyAcceptNew, nil
	case "no", "off":
		return "", fmt.Errorf("%w; write ssh.hostKeyPolicy (strict or accept-new) in the spec to override it", ErrInsecureSSHConfig)
	default:
		return "", errors.New("want yes, ask, accept-new (no and off are refused)")
	}
}

// jumpHop is one entry of a ProxyJump list: [user@]host[:port].
type jumpHop struct {
	user, host string
	port       int
}

// parseProxyJump splits a ProxyJump value into hops; "none" is no hop.
func parseProxyJump(v string) ([]jumpHop, error) {
	if strings.EqualFold(strings.TrimSpace(v), "none") {
		return nil, nil
	}
	var hops []jumpHop
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "ssh://")
		if part == "" {
			return nil, errors.New("empty hop")
		}
		var h jumpHop
		if at := strings.LastIndex(part, "@"); at >= 0 {
			h.user, part = part[:at], part[at+1:]
			if h.user == "" {
				return nil, fmt.Errorf("hop %q: empty user", part)
			}
		}
		h.host = part
		if hp, port, err := net.SplitHostPort(part); err == nil {
			p, err := strconv.Atoi(port)
			if err != nil || p < 1 || p > 65535 {
				return nil, fmt.Errorf("hop %q: bad port %q", part, port)
			}
			h.host, h.port = hp, p
		} else if strings.HasPrefix(part, "[") && strings.HasSuffix(part, "]") {
			h.host = part[1 : len(part)-1]
		}
		if h.host == "" || strings.ContainsAny(h.host, " \t/") {
			return nil, fmt.Errorf("hop %q: bad host", part)
		}
		hops = append(hops, h)
	}
	return hops, nil
}

// jumpChain resolves each hop of a ProxyJump value from its own ssh_config
// entry (the hop's own ProxyJump is not followed: the list is the route)
// and nests them: the last hop is target.Bastion, the first dials directly.
// A hop says nothing about keys, known_hosts or user falls back to the
// target's.
func (o *OpenSSHConfig) jumpChain(value string, target Config) (*Config, error) {
	hops, err := parseProxyJump(value)
	if err != nil {
		return nil, err
	}
	fallback := target
	fallback.Port = DefaultPort
	var prev *Config
	for i, h := range hops {
		hop, _, err := o.resolveOne(Config{User: h.user, Port: h.port}, fallback, []string{h.host})
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", h.host, err)
		}
		hop.Name = fmt.Sprintf("jump %d/%d %s", i+1, len(hops), h.host)
		hop.Bastion = prev
		hop.DialTimeout, hop.PassphraseEnv, hop.Redactor = target.DialTimeout, target.PassphraseEnv, target.Redactor
		prev = &hop
	}
	return prev, nil
}

// expandPath expands ~ and the tokens %d (home), %u (local user), %h
// (remote host), %r (remote user), %p (port) and %%.
func expandPath(p string, cfg Config) string {
	home, _ := os.UserHomeDir()
	if p == "~" || strings.HasPrefix(p, "~/") {
		p = filepath.Join(home, strings.TrimPrefix(p[1:], "/"))
	}
	if !strings.Contains(p, "%") {
		return p
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	return strings.NewReplacer("%%", "%", "%d", home, "%u", local, "%h", cfg.Address,
		"%r", cfg.User, "%p", strconv.Itoa(cfg.Port)).Replace(p)
}
