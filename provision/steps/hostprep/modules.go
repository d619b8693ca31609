package hostprep

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/clusterctl/clusterctl/provision/facts"
	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/step"
	"github.com/clusterctl/clusterctl/templates"
)

// DefaultModulesFile is where KernelModules writes when File is empty.
const DefaultModulesFile = "/etc/modules-load.d/kubernetes.conf"

// ErrModuleMissing marks a kernel module that is neither loadable nor built
// into the host's kernel.
var ErrModuleMissing = errors.New("kernel module missing")

var moduleRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (o KernelModules) file() string {
	if o.File == "" {
		return DefaultModulesFile
	}
	return o.File
}

func (o KernelModules) validate() error {
	if !strings.HasPrefix(o.file(), "/etc/modules-load.d/") || !strings.HasSuffix(o.file(), ".conf") {
		return fmt.Errorf("modules file %q: want /etc/modules-load.d/NAME.conf", o.file())
	}
	for _, m := range append(append([]string{}, o.Modules...), o.Ignore...) {
		if !moduleRE.MatchString(m) {
			return fmt.Errorf("kernel module name %q: want letters, digits, _ and -", m)
		}
	}
	return nil
}

// Render is the modules-load.d file: every module, in the order given.
func (o KernelModules) Render() ([]byte, error) {
	return templates.Render("modules-load.conf.tmpl", struct{ Modules []string }{o.Modules})
}

func (o KernelModules) Needs() facts.Request {
	return facts.Request{Modules: append([]string{}, o.Modules...), Files: []string{o.file()}}
}

func (o KernelModules) ignored(m string) bool { return slices.Contains(o.Ignore, m) }

// Check: loaded and built-in modules are present; available ones will be
// loaded; a missing one is an error naming the setting that needs it,
// unless it is ignored (then a note).
func (o KernelModules) Check(_ context.Context, t step.Target) (step.Change, error) {
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
	var ch step.Change
	var errs []error
	var notes []string
	for _, m := range o.Modules {
		switch st := t.Facts.Modules[m]; st {
		case "loaded", "builtin":
		case "available":
			ch.Diff = append(ch.Diff, step.DiffLine{Key: "module " + m, From: "available", To: "loaded"})
		case "missing":
			if o.ignored(m) {
				notes = append(notes, fmt.Sprintf("warning: kernel module %s is missing (ignored)", m))
				continue
			}
			errs = append(errs, o.missingError(m, t.Facts.Kernel))
		default:
			ch.Diff = append(ch.Diff, step.DiffLine{Key: "module " + m, From: "(unknown)", To: "loaded"})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return step.Change{}, err
	}
	ft, differs := FileDiff(t.Facts.Files, o.file(), content)
	if differs {
		ch.Diff = append(ch.Diff, step.DiffLine{Key: o.file(), From: ft[0], To: strings.Join(o.Modules, " ")})
	}
	ch.Note = strings.Join(notes, "; ")
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

func (o KernelModules) missingError(m, kernel string) error {
	msg := fmt.Sprintf("kernel module %s is missing on kernel %s (neither loadable nor built in)", m, kernel)
	if by := o.Required[m]; by != "" {
		msg += "; " + by + " needs it"
		if strings.Contains(by, "kubeProxyMode") {
			msg += `: choose network.kubeProxyMode "iptables"`
		} else {
			msg += ": change that setting"
		}
		msg += ", install the module for this kernel, or ignore it"
	} else {
		msg += ": install the module for this kernel or ignore it"
	}
	return fmt.Errorf("%s: %w", msg, ErrModuleMissing)
}

// Apply writes the modules-load.d file and loads each module now. With
// facts, modules already loaded or built in are skipped; an ignored module
// that fails to load is tolerated.
func (o KernelModules) Apply(ctx context.Context, t step.Target) error {
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
	for _, m := range o.Modules {
		if t.Facts != nil {
			switch t.Facts.Modules[m] {
			case "loaded", "builtin":
				continue
			case "missing":
				if o.ignored(m) {
					continue
				}
			}
		}
		err := t.Host.Run(ctx, host.Cmd{Line: host.Join("modprobe", "--", m)})
		var ee *host.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee) && o.ignored(m):
		default:
			return fmt.Errorf("load kernel module %s: %w", m, err)
		}
	}
	return nil
}
