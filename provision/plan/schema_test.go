package plan_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/clusterctl/clusterctl/provision/plan"
	"github.com/clusterctl/clusterctl/provision/render"
	"github.com/clusterctl/clusterctl/provision/state"
	"github.com/clusterctl/clusterctl/provision/step"
)

// schemaFile is the published JSON Schema of `plan -o json`.
var schemaFile = filepath.Join("..", "..", "schema", "plan.schema.json")

func planSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("read %s: %v", schemaFile, err)
	}
	// The schema's formatVersion is the one this clusterctl writes.
	if v := doc.(map[string]any)["properties"].(map[string]any)["formatVersion"].(map[string]any)["const"]; v != json.Number("1") || plan.FormatVersion != 1 {
		t.Fatalf("%s says formatVersion %v, plan.FormatVersion is %d", schemaFile, v, plan.FormatVersion)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	id, _ := doc.(map[string]any)["$id"].(string)
	if err := c.AddResource(id, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, js []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(inst)
}

// Every golden JSON plan validates against the published schema.
func TestPlanSchemaGoldens(t *testing.T) {
	s := planSchema(t)
	files, err := filepath.Glob(filepath.Join("testdata", "*.plan.json"))
	if err != nil || len(files) < 5 {
		t.Fatalf("golden plans: %v, %v", files, err)
	}
	for _, f := range files {
		js, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, s, js); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// onlinePlan is a fresh plan with every optional field an online plan can
// carry set.
func onlinePlan(t *testing.T) *plan.Plan {
	_, p := offline(t, load(t, "ha"))
	p.Offline = false
	p.SpecPaths = []string{"/specs/ha"}
	p.FactsDigest = map[string]string{"cp1": strings.Repeat("c", 64)}
	p.Warnings = []string{"host old left the spec but the cluster's record of its last apply still lists it"}
	p.Previous = &state.Record{Format: 1, Cluster: "prod-ha", SpecDigest: strings.Repeat("a", 64),
		Git: &state.Git{Commit: strings.Repeat("1", 40), Dirty: true}, Clusterctl: "v0.1.0",
		Distribution: "kubeadm", KubernetesVersion: "1.37.2",
		Hosts:     []state.Host{{Name: "old", Address: "10.0.0.9", Roles: []string{"worker"}, User: "ops", Port: 2222}},
		AppliedAt: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), AppliedBy: "ci@runner"}
	p.Steps[0].Action = step.ActionUpdate
	p.Steps[0].Diff = []step.DiffLine{{Key: "w1", From: "10.0.0.1", To: "10.20.1.21"}}
	p.Steps[0].Note = "a note"
	return p
}

// A freshly rendered plan validates, and the schema is strict enough to
// refuse a plan that is not one (so a field added to the JSON without the
// schema fails here).
func TestPlanSchemaFreshRender(t *testing.T) {
	s := planSchema(t)
	var b bytes.Buffer
	if err := render.PlanJSON(&b, onlinePlan(t)); err != nil {
		t.Fatal(err)
	}
	if err := validate(t, s, b.Bytes()); err != nil {
		t.Fatalf("fresh plan: %v\n%s", err, b.String())
	}
	for name, mutate := range map[string]func(m map[string]any){
		"format version 2": func(m map[string]any) { m["formatVersion"] = 2 },
		"unknown field":    func(m map[string]any) { m["surprise"] = true },
		"unknown action":   func(m map[string]any) { m["steps"].([]any)[0].(map[string]any)["action"] = "explode" },
		"no summary":       func(m map[string]any) { delete(m, "summary") },
		"negative count":   func(m map[string]any) { m["summary"].(map[string]any)["add"] = -1 },
		"short digest":     func(m map[string]any) { m["specDigest"] = "abc" },
		"bad appliedAt":    func(m map[string]any) { m["previous"].(map[string]any)["appliedAt"] = "yesterday" },
	} {
		var m map[string]any
		if err := json.Unmarshal(b.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		mutate(m)
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, s, js); err == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
	}
}
