package host

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
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

// PollLine is the shell of one bounded wait on a host, as a group that
// composes after &&: check runs every `every` until it succeeds; once
// `within` has passed, show runs (what it prints is the last answer the
// error carries) and the command line exits 1. Every wait clusterctl runs on a
// host is built here, so each has a deadline and says what it last saw.
func PollLine(check, show string, within, every time.Duration) string {
	if show == "" {
		show = "true"
	}
	secs := int(math.Ceil(within.Seconds()))
	sleep := strconv.FormatFloat(every.Seconds(), 'f', -1, 64)
	return fmt.Sprintf("{ end=$(( $(date +%%s) + %d )); until %s; do if [ $(date +%%s) -ge $end ]; then %s; exit 1; fi; sleep %s; done; }", secs, check, show, sleep)
}
