package hosttest

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// AssertGolden compares got with the file at path (usually under testdata/).
// With UPDATE_GOLDEN=1 in the environment, or the test binary's own -update
// flag set, it writes got to path instead.
func AssertGolden(t testing.TB, path, got string) {
	t.Helper()
	if updateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (create it with UPDATE_GOLDEN=1): %v", err)
	}
	if string(want) != got {
		t.Errorf("transcript differs from %s (update with UPDATE_GOLDEN=1):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func updateGolden() bool {
	if os.Getenv("UPDATE_GOLDEN") != "" {
		return true
	}
	if f := flag.Lookup("update"); f != nil {
		return f.Value.String() == "true"
	}
	return false
}
