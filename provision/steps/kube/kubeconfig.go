package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/clusterctl/clusterctl/provision/step"
)

// The kubeconfig merge works on the YAML tree (go.yaml.in/yaml/v3, already
// in the module graph through viper) instead of client-go's clientcmd:
// client-go would add some forty modules for one file merge, and the tree
// keeps what we do not manage (other entries, extensions, comments) as it
// was.

// KubeconfigPath is where the operator's kubectl reads: the first file of
// $KUBECONFIG, else ~/.kube/config.
func KubeconfigPath() (string, error) {
	if list := filepath.SplitList(os.Getenv("KUBECONFIG")); len(list) > 0 && list[0] != "" {
		return list[0], nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the kubeconfig: %w", err)
	}
	return filepath.Join(home, ".kube", "config"), nil
}

func (o Kubeconfig) validate() error {
	if !nameRE.MatchString(o.Cluster) {
		return fmt.Errorf("cluster name %q is not a DNS name", o.Cluster)
	}
	if h, _, err := net.SplitHostPort(o.Endpoint); err != nil || !hostOrIP(h) {
		return fmt.Errorf("endpoint %q: want HOST:PORT", o.Endpoint)
	}
	return nil
}

// Check: the kubeconfig is fetched and merged on every apply (a read).
func (o Kubeconfig) Check(_ context.Context, _ step.Target) (step.Change, error) {
	if err := o.validate(); err != nil {
		return step.Change{}, err
	}
	ch := step.Change{Action: step.ActionRead, Diff: o.Describe()}
	if p, err := KubeconfigPath(); err == nil {
		ch.Note = "merged into " + p
	}
	return ch, nil
}

// Apply fetches admin.conf (or the Source kubeconfig) from the first control plane, points it at the
// endpoint the operator reaches, and merges it into the operator's
// kubeconfig as cluster, user (NAME-admin) and context NAME: entries of
// other names are kept, entries of these names replaced; the current
// context is set only when there is none. The file is written atomically,
// mode 0600, and only when its content changes.
func (o Kubeconfig) Apply(ctx context.Context, t step.Target) error {
	if err := o.validate(); err != nil {
		return err
	}
	src := o.Source
	if src == "" {
		src = AdminConf
	}
	admin, err := t.Host.ReadFile(ctx, src)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", src, err)
	}
	_, _, dropped, err := MergeKubeconfigFile(admin, o.Cluster, "https://"+o.Endpoint)
	if len(dropped) > 0 && t.Warn != nil {
		t.Warn(DroppedFieldsWarning(src, dropped))
	}
	return err
}

// MergeKubeconfigFile merges admin into the operator's kubeconfig
// (KubeconfigPath) as MergeKubeconfig does, writing the file atomically
// with mode 0600 and only when its content changes. It returns the file's
// path, whether it was written, and the fields of admin it dropped.
func MergeKubeconfigFile(admin []byte, name, server string) (path string, changed bool, dropped []string, err error) {
	p, err := KubeconfigPath()
	if err != nil {
		return "", false, nil, err
	}
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return p, false, nil, fmt.Errorf("read %s: %w", p, err)
	}
	merged, dropped, err := MergeKubeconfig(old, admin, name, server)
	if err != nil {
		return p, false, dropped, fmt.Errorf("merge into %s: %w", p, err)
	}
	if bytes.Equal(old, merged) {
		return p, false, dropped, nil
	}
	return p, true, dropped, writePrivate(p, merged)
}

// writePrivate writes b to p atomically with mode 0600 (its directory
// 0700 when it has to be made).
func writePrivate(p string, b []byte) error {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(p)+".clusterctl-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, nothing is there
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// adminConf is what the merge takes from kubeadm's admin.conf.
type adminConf struct {
	Clusters []struct {
		Cluster map[string]any `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		User map[string]any `yaml:"user"`
	} `yaml:"users"`
}

// hostFields are the only fields of a host's admin kubeconfig that reach
// the operator's: kubectl acts on every other one on the operator's
// machine (exec and auth-provider run commands, tokenFile and
// client-certificate read local files, proxy-url redirects traffic), and
// whoever is root on a control plane writes that file. The server is ours.
var hostFields = map[string][]string{
	"cluster": {"certificate-authority-data"},
	"user":    {"client-certificate-data", "client-key-data", "token"},
}

// allowed copies from m the string fields of hostFields[section] and
// names every other field as "section.key", sorted; values are never read
// into a name.
func allowed(section string, m map[string]any) (kept map[string]any, dropped []string) {
	kept = map[string]any{}
	for k, v := range m {
		if section == "cluster" && k == "server" {
			continue // replaced by the merge
		}
		if _, ok := v.(string); ok && slices.Contains(hostFields[section], k) {
			kept[k] = v
			continue
		}
		dropped = append(dropped, section+"."+fieldName(k))
	}
	sort.Strings(dropped)
	return kept, dropped
}

// fieldName shows a key as it is when it is a plain name, else quoted:
// a hostile key must not reach the terminal raw.
func fieldName(k string) string {
	if plainKeyRE.MatchString(k) {
		return k
	}
	return strconv.QuoteToASCII(k)
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// DroppedFieldsWarning tells the operator which fields of a host's admin
// kubeconfig (from) were not taken, naming at most 20 of them.
func DroppedFieldsWarning(from string, dropped []string) string {
	names := dropped
	more := ""
	if len(names) > 20 {
		names, more = names[:20], fmt.Sprintf(" and %d more", len(dropped)-20)
	}
	return fmt.Sprintf("ignored fields of %s that clusterctl never takes from a host: %s%s (only the CA data, client certificate and key, and token are merged)",
		from, strings.Join(names, ", "), more)
}

// MergeKubeconfig merges admin (kubeadm's admin.conf) into existing (a
// kubeconfig, possibly empty) as cluster, context NAME and user
// NAME-admin, the cluster's server set to server. Only the fields in
// hostFields are taken from admin; dropped names the others.
func MergeKubeconfig(existing, admin []byte, name, server string) (merged []byte, dropped []string, err error) {
	var a adminConf
	if err := yaml.Unmarshal(admin, &a); err != nil {
		return nil, nil, fmt.Errorf("read admin.conf: %w", err)
	}
	if len(a.Clusters) != 1 || len(a.Users) != 1 || a.Clusters[0].Cluster == nil || a.Users[0].User == nil {
		return nil, nil, errors.New("read admin.conf: want one cluster and one user")
	}
	cluster, droppedCluster := allowed("cluster", a.Clusters[0].Cluster)
	cluster["server"] = server
	creds, droppedUser := allowed("user", a.Users[0].User)
	dropped = append(droppedCluster, droppedUser...)
	if len(creds) == 0 {
		return nil, dropped, errors.New("read admin.conf: its user has no client certificate, key or token")
	}
	user := name + "-admin"

	var doc yaml.Node
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := yaml.Unmarshal(existing, &doc); err != nil {
			return nil, dropped, fmt.Errorf("read the kubeconfig: %w", err)
		}
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if doc.Kind != yaml.DocumentNode || root.Kind != yaml.MappingNode {
		return nil, dropped, errors.New("the kubeconfig is not a YAML mapping")
	}
	for key, value := range map[string]string{"apiVersion": "v1", "kind": "Config"} {
		if mapGet(root, key) == nil {
			mapSet(root, key, &yaml.Node{Kind: yaml.ScalarNode, Value: value})
		}
	}
	entries := []struct {
		section, name string
		value         any
	}{
		{"clusters", name, map[string]any{"name": name, "cluster": cluster}},
		{"users", user, map[string]any{"name": user, "user": creds}},
		{"contexts", name, map[string]any{"name": name, "context": map[string]string{"cluster": name, "user": user}}},
	}
	for _, e := range entries {
		var n yaml.Node
		if err := n.Encode(e.value); err != nil {
			return nil, dropped, err
		}
		if err := upsert(root, e.section, e.name, &n); err != nil {
			return nil, dropped, err
		}
	}
	if cur := mapGet(root, "current-context"); cur == nil || cur.Value == "" {
		mapSet(root, "current-context", &yaml.Node{Kind: yaml.ScalarNode, Value: name})
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, dropped, err
	}
	return out.Bytes(), dropped, nil
}

func mapGet(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func mapSet(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
}

// upsert replaces the entry called name in the list section of root, or
// appends it.
func upsert(root *yaml.Node, section, name string, entry *yaml.Node) error {
	list := mapGet(root, section)
	if list == nil || list.Kind == yaml.ScalarNode && list.Tag == "!!null" {
		list = &yaml.Node{Kind: yaml.SequenceNode}
		mapSet(root, section, list)
	}
	if list.Kind != yaml.SequenceNode {
		return fmt.Errorf("the kubeconfig's %s is not a list", section)
	}
	for i, item := range list.Content {
		if n := mapGet(item, "name"); item.Kind == yaml.MappingNode && n != nil && n.Value == name {
			list.Content[i] = entry
			return nil
		}
	}
	list.Content = append(list.Content, entry)
	return nil
}
