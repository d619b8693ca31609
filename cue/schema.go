// Package schema embeds the cluster spec schema so the binary and the cue
// tool validate with the same file.
package schema

import _ "embed"

// Source is cue/schema.cue.
//
//go:embed schema.cue
var Source []byte

// Filename is how positions in the embedded schema are shown.
const Filename = "cue/schema.cue"
