package cli

import (
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// The CLI scenarios in testdata/script run the real command tree in-process
// through testscript: exit codes, stdout and stderr are asserted exactly.
func TestMain(m *testing.M) {
	if mode := os.Getenv(liveDemoEnv); mode != "" {
		os.Exit(liveDemo(mode))
	}
	testscript.Main(m, map[string]func(){
		"clusterctl": func() {
			os.Exit(Run(context.Background(), os.Args[1:], Options{
				Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Version: "v0.0.0-test",
			}))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Scenarios refer to the repository's inventories.
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			env.Setenv("INVENTORIES", wd+"/../../inventories")
			env.Setenv("XDG_CONFIG_HOME", env.WorkDir+"/.config")
			return nil
		},
	})
}
