package kubespray

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// GroupVars maps a group name to its variables from a group_vars directory.
type GroupVars map[string]map[string]any

// ReadGroupVars reads dir the way Ansible does: dir/GROUP.yml (or .yaml,
// .json, no extension) and every YAML file under dir/GROUP/, in lexical
// order, later files winning. A missing dir is no variables.
func ReadGroupVars(dir string) (GroupVars, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return GroupVars{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read group_vars: %w", err)
	}
	out := GroupVars{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if e.IsDir() {
			files, err := yamlFilesUnder(path)
			if err != nil {
				return nil, fmt.Errorf("read group_vars: %w", err)
			}
			for _, f := range files {
				if err := mergeFile(out, name, f); err != nil {
					return nil, err
				}
			}
			continue
		}
		group := strings.TrimSuffix(name, filepath.Ext(name))
		if ext := filepath.Ext(name); ext != "" && !isYAMLExt(ext) {
			continue
		}
		if err := mergeFile(out, group, path); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func yamlFilesUnder(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isYAMLExt(filepath.Ext(p)) && !strings.HasPrefix(d.Name(), ".") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func isYAMLExt(ext string) bool {
	switch strings.ToLower(ext) {
	case ".yml", ".yaml", ".json":
		return true
	}
	return false
}

func mergeFile(out GroupVars, group, path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read group_vars: %w", err)
	}
	var vars map[string]any
	if err := yaml.Unmarshal(src, &vars); err != nil {
		return fmt.Errorf("read group_vars %s: %w", path, err)
	}
	if out[group] == nil {
		out[group] = map[string]any{}
	}
	for k, v := range vars {
		out[group][k] = v
	}
	return nil
}
