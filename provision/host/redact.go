package host

import (
	"bytes"
	"io"
	"sort"
	"strings"
	"sync"
)

// MinSecretLen is the shortest value a Redactor accepts: redacting "a" or
// "01" would mangle every line of output and hide nothing worth hiding.
const MinSecretLen = 4

// redactedMark replaces every secret.
const redactedMark = "***"

// maxPendingLine bounds how much of an unterminated line a redacting writer
// holds back before it must emit part of it.
const maxPendingLine = 64 << 10

// Redactor replaces registered secrets (join tokens, sudo passwords,
// certificate keys) with ***. It is safe for concurrent use; a nil *Redactor
// redacts nothing, so option structs may leave it unset.
type Redactor struct {
	mu       sync.RWMutex
	secrets  []string // longest first
	replacer *strings.Replacer
}

// NewRedactor returns an empty Redactor (the zero value is ready to use too).
func NewRedactor() *Redactor { return &Redactor{} }

// Add registers secret. Values shorter than MinSecretLen are ignored. A value
// with surrounding whitespace (a token read from a file) is registered both
// as given and trimmed.
func (r *Redactor) Add(secret string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range []string{secret, strings.TrimSpace(secret)} {
		if len(s) < MinSecretLen || contains(r.secrets, s) {
			continue
		}
		r.secrets = append(r.secrets, s)
	}
	// Longest first so a secret containing another is replaced whole.
	sort.SliceStable(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	pairs := make([]string, 0, 2*len(r.secrets))
	for _, s := range r.secrets {
		pairs = append(pairs, s, redactedMark)
	}
	r.replacer = strings.NewReplacer(pairs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Redact returns s with every registered secret replaced by ***.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	rep := r.replacer
	r.mu.RUnlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// Error returns err behind a *RedactedError, so its text never shows a
// registered secret while errors.Is and errors.As still see the chain; nil
// stays nil.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	return &RedactedError{r: r, err: err}
}

// RedactedError is an error whose text is redacted when read, so a secret
// registered after it was made is hidden too. Unwrap gives the raw error
// for errors.Is and errors.As: whoever prints an unwrapped error must
// redact it again (Redact does).
type RedactedError struct {
	r   *Redactor
	err error
}

func (e *RedactedError) Error() string { return e.r.Redact(e.err.Error()) }
func (e *RedactedError) Unwrap() error { return e.err }

// Redact hides the secrets of this error's Redactor in s: for text taken
// from an error found inside it with errors.As.
func (e *RedactedError) Redact(s string) string { return e.r.Redact(s) }

// longest returns the length of the longest secret.
func (r *Redactor) longest() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.secrets) == 0 {
		return 0
	}
	return len(r.secrets[0])
}

// safeCut returns the largest n <= want such that no secret occurrence in b
// straddles b[:n] and b[n:].
func (r *Redactor) safeCut(b []byte, want int) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := want
	for changed := true; changed; {
		changed = false
		for _, s := range r.secrets {
			// Any occurrence straddling n starts in (n-len(s), n).
			lo := max(n-len(s)+1, 0)
			hi := min(n+len(s)-1, len(b))
			if lo >= hi {
				continue
			}
			if i := bytes.Index(b[lo:hi], []byte(s)); i >= 0 && lo+i < n {
				n = lo + i
				changed = true
			}
		}
	}
	return n
}

// Writer returns a writer that redacts what it passes on to w. It holds back
// the current line until its newline arrives, so a secret split across two
// Write calls is still caught. Call Flush (or Close) on the returned value
// (a *RedactWriter) to emit a final unterminated line.
func (r *Redactor) Writer(w io.Writer) io.Writer {
	return &RedactWriter{r: r, w: w}
}

// RedactWriter is the writer returned by Redactor.Writer.
type RedactWriter struct {
	r   *Redactor
	w   io.Writer
	mu  sync.Mutex
	buf []byte
	err error
}

// Write buffers p and emits every complete line, redacted. It reports len(p)
// unless the underlying writer failed.
func (rw *RedactWriter) Write(p []byte) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.err != nil {
		return 0, rw.err
	}
	rw.buf = append(rw.buf, p...)
	if i := bytes.LastIndexByte(rw.buf, '\n'); i >= 0 {
		if err := rw.emit(i + 1); err != nil {
			return 0, err
		}
	}
	if len(rw.buf) > maxPendingLine {
		// A very long line: emit all but a tail that could hold the start
		// of a secret, never cutting through a secret.
		keep := rw.r.longest()
		if cut := rw.r.safeCut(rw.buf, len(rw.buf)-keep); cut > 0 {
			if err := rw.emit(cut); err != nil {
				return 0, err
			}
		}
	}
	return len(p), nil
}

func (rw *RedactWriter) emit(n int) error {
	out := rw.r.Redact(string(rw.buf[:n]))
	rw.buf = append(rw.buf[:0], rw.buf[n:]...)
	if _, err := io.WriteString(rw.w, out); err != nil {
		rw.err = err
		return err
	}
	return nil
}

// Flush emits the held-back partial line.
func (rw *RedactWriter) Flush() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.err != nil {
		return rw.err
	}
	if len(rw.buf) == 0 {
		return nil
	}
	return rw.emit(len(rw.buf))
}

// Close flushes; it does not close the underlying writer.
func (rw *RedactWriter) Close() error { return rw.Flush() }
