package hostprep

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/templates"
)

// DefaultSysctlFile is where Sysctl writes when File is empty.
const DefaultSysctlFile = "/etc/sysctl.d/99-kubernetes.conf"

var (
	sysctlKeyRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.\-/*]*$`)
	sysctlValueRE = regexp.MustCompile(`^[^\n\r#;]*$`)
)

func (o Sysctl) file() string {
	if o.File == "" {
		return DefaultSysctlFile
	}
	return o.File
}

func (o Sysctl) validate() error {
	if !strings.HasPrefix(o.file(), "/etc/sysctl.d/") || !strings.HasSuffix(o.file(), ".conf") {
		return fmt.Errorf("sysctl file %q: want /etc/sysctl.d/NAME.conf", o.file())
	}
	for k, v := range o.Values {
		if !sysctlKeyRE.MatchString(k) {
			return fmt.Errorf("sysctl key %q is not a kernel parameter name", k)
		}
		if !sysctlValueRE.MatchString(v) || strings.TrimSpace(v) == "" {
			return fmt.Errorf("sysctl %s: value %q must be one non-empty line without # or ;", k, v)
		}
	}
	return nil
}

type sysctlKV struct{ Key, Value string }

// Render is the file's content: keys sorted, so it is the same every run.
func (o Sysctl) Render() ([]byte, error) {
	var kv []sysctlKV
	for _, k := range sortedKeys(o.Values) {
		kv = append(kv, sysctlKV{k, normSysctl(o.Values[k])})
	}
	return templates.Render("sysctl.conf.tmpl", struct{ Values []sysctlKV }{kv})
}

// normSysctl folds whitespace as the probe does ("4096 87380 6291456").
func normSysctl(v string) string { return strings.Join(strings.Fields(v), " ") }

func (o Sysctl) Needs() facts.Request {
	return facts.Request{Sysctls: sortedKeys(o.Values), Files: []string{o.file()}}
}

// Check shows each key whose live value differs, and the file when its
// digest differs (a hand-edited file is repaired even if the live values
// still match).
func (o Sysctl) Check(_ context.Context, t step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	if t.Facts == nil {
		return step.Change{Action: step.ActionCreate, Diff: o.Describe()}, nil
	}
	content, err := o.Render()
	if err != nil {
		return step.Change{}, err
	}
	if err := o.unknownKeys(t.Facts); err != nil {
		return step.Change{}, err
	}
	var ch step.Change
	for _, k := range sortedKeys(o.Values) {
		want := normSysctl(o.Values[k])
		cur, ok := t.Facts.Sysctl[k]
		if !ok {
			// e.g. net.bridge.* before br_netfilter is loaded.
			ch.Diff = append(ch.Diff, step.DiffLine{Key: k, From: "(absent)", To: want})
		} else if cur != want {
			ch.Diff = append(ch.Diff, step.DiffLine{Key: k, From: cur, To: want})
		}
	}
	ft, differs := FileDiff(t.Facts.Files, o.file(), content)
	if differs {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: o.file(), From: ft[0], To: ft[1]})
	}
	switch {
	case len(ch.Diff) == 0:
		ch.Action = step.ActionNone
	case differs && ft[0] == "(missing)":
		ch.Action = step.ActionCreate
	default:
		ch.Action = step.ActionUpdate
	}
	return ch, nil
}

// moduleSysctls are the key prefixes a kernel module adds when it loads,
// into directories that may already exist (net.netfilter holds nf_log
// before nf_conntrack loads): the kernelModules step runs first.
var moduleSysctls = []string{"net.bridge.", "net.netfilter.nf_conntrack", "net.nf_conntrack_", "net.ipv4.vs."}

// unknownKeys refuses, before anything changes, keys this kernel does not
// have: `sysctl -p` would write the file and then fail on them.
func (o Sysctl) unknownKeys(f *facts.Facts) error {
	var errs []error
	for _, k := range f.SysctlUnknown {
		if _, asked := o.Values[k]; !asked || addedByModule(k) {
			continue
		}
		errs = append(errs, fmt.Errorf("sysctl %s does not exist on this host (no /proc/sys/%s): check the key in hostPrep.sysctl", k, strings.ReplaceAll(k, ".", "/")))
	}
	return errors.Join(errs...)
}

func addedByModule(key string) bool {
	for _, p := range moduleSysctls {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// Apply writes the file and applies that file alone: `sysctl --system`
// would re-apply every file on the host, including machine-wide vm./kernel.
// keys on hosts that share a kernel.
func (o Sysctl) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	content, err := o.Render()
	if err != nil {
		return err
	}
	if _, err := WriteFile(ctx, t.Host, o.file(), content, 0o644); err != nil {
		return err
	}
	if err := t.Host.Run(ctx, host.Cmd{Line: host.Join("sysctl", "-q", "-p", o.file())}); err != nil {
		return fmt.Errorf("apply %s: %w", o.file(), err)
	}
	return nil
}
