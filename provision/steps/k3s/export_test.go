package k3s

import "fmt"

// Hooks for the external tests: the files a node op would write, as they
// are rendered for a host with the given quirks.

func memberOf(op any) member {
	switch o := op.(type) {
	case Init:
		return o.member()
	case JoinServer:
		return o.member()
	case JoinAgent:
		return o.member()
	}
	panic(fmt.Sprintf("not a node op: %T", op))
}

func RenderConfig(op any, conntrackRO, overlayData bool) ([]byte, error) {
	return memberOf(op).config(quirks{conntrackRO: conntrackRO, overlayData: overlayData})
}

func RenderRegistries(op any) ([]byte, error) { return memberOf(op).registries() }

func RenderUnit(role string) ([]byte, error) { return Install{Role: role}.unit() }

var ConfigDiff = configDiff
