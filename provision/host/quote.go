package host

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidCommand marks a command line a transport refuses to send, such as
// one containing a NUL byte (a shell argument cannot carry it).
var ErrInvalidCommand = errors.New("invalid command line")

// Quote returns s as one POSIX shell word that the shell turns back into
// exactly s. Words made only of characters that are never special to sh
// ([A-Za-z0-9] and _ - . / : @ % + ,) are returned bare so command lines stay
// readable in transcripts; everything else, including the empty string, is
// wrapped in single quotes, each single quote inside becoming close-quote,
// backslash-quote, open-quote:
//
//	it's  ->  'it'\''s'
//
// '=' and '~' are not in the bare set: "a=b" as a first word would be an
// assignment and a leading '~' would be expanded.
//
// NUL cannot be represented in a shell argument at all: Quote keeps it, and
// every transport refuses a line containing it (see CheckLine).
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isBare(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			b.WriteString(`'\''`)
			continue
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}

func isBare(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '-', c == '.', c == '/', c == ':', c == '@', c == '%', c == '+', c == ',':
		default:
			return false
		}
	}
	return true
}

// Join quotes each argument and joins them with spaces, building one command
// line: Join("install", "-m", "0644", src, dst).
func Join(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// CheckLine reports whether a transport may send line. A NUL byte would be
// cut by the remote shell (or by the exec arguments), silently running a
// different command, so such a line is refused before anything is sent.
func CheckLine(line string) error {
	if i := strings.IndexByte(line, 0); i >= 0 {
		return fmt.Errorf("command line contains a NUL byte at offset %d (a shell argument cannot carry NUL; upload the data as a file instead): %w", i, ErrInvalidCommand)
	}
	return nil
}
