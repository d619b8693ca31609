package kubespray

import (
	"fmt"
	"strings"

	"cuelang.org/go/cue/format"
)

// cueWriter builds the spec's text. Keys are identifiers of this package or
// labels already quoted with cueString; values are literals built with
// cueString or strconv; comments name the kubespray variable and never hold
// a user value.
type cueWriter struct {
	b     strings.Builder
	depth int
	opens [][2]int // per open block: text length before and after its opening line
}

func (w *cueWriter) line(format string, args ...any) {
	w.b.WriteString(strings.Repeat("\t", w.depth))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

func (w *cueWriter) open(key string) {
	before := w.b.Len()
	w.line("%s: {", key)
	w.opens = append(w.opens, [2]int{before, w.b.Len()})
	w.depth++
}

// close ends the block, or takes it back out when nothing was written in it.
func (w *cueWriter) close() {
	w.depth--
	o := w.opens[len(w.opens)-1]
	w.opens = w.opens[:len(w.opens)-1]
	if w.b.Len() == o[1] {
		s := w.b.String()[:o[0]]
		w.b.Reset()
		w.b.WriteString(s)
		return
	}
	w.line("}")
}

func (w *cueWriter) field(key, value, comment string) {
	w.line("%s: %s%s", key, value, trailing(comment))
}

// inline writes key: {a: x, b: y} on one line.
func (w *cueWriter) inline(key, comment string, fields ...[2]string) {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f[0] + ": " + f[1]
	}
	w.field(key, "{"+strings.Join(parts, ", ")+"}", comment)
}

func trailing(comment string) string {
	if comment == "" {
		return ""
	}
	return " // " + strings.NewReplacer("\n", " ", "\r", " ").Replace(comment)
}

// format aligns the text the way cue fmt does.
func (w *cueWriter) format() ([]byte, error) {
	return format.Source([]byte(w.b.String()), format.Simplify())
}
