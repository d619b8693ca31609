package kubespray

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// cueString renders s as a CUE double-quoted string literal. Every value
// written into the spec goes through it. Unlike strconv.Quote it never emits
// \x escapes (CUE allows them in bytes only), and since every backslash of s
// is doubled, s can never open an interpolation `\(` in the output. Invalid
// UTF-8 becomes U+FFFD.
func cueString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			switch {
			case r == utf8.RuneError:
				b.WriteString(`\uFFFD`)
			case unicode.IsPrint(r):
				b.WriteRune(r)
			case r > 0xFFFF:
				fmt.Fprintf(&b, `\U%08X`, r)
			default:
				fmt.Fprintf(&b, `\u%04X`, r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
