package hosttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/clusterctl/clusterctl/provision/host"
)

// Fake is a strict host for unit tests of steps. Every command must match a
// registered expectation, or the test fails naming the command and what was
// still expected. It keeps an in-memory filesystem for Upload and ReadFile
// and a transcript of everything the code under test did, for golden files.
type Fake struct {
	t    testing.TB
	name string

	// Redactor, when set, redacts the transcript and ExitErrors.
	Redactor *host.Redactor
	// Backend, when set, receives every command that matches no expectation,
	// and every upload and read (the in-memory filesystem is not used). The
	// transcript is still recorded. Used to run the conformance suite
	// through the fake.
	Backend host.Host

	mu         sync.Mutex
	exps       []*Expectation
	files      map[string]File
	transcript []string
}

var _ host.Host = (*Fake)(nil)

// File is one file in the fake's filesystem.
type File struct {
	Content []byte
	Mode    fs.FileMode
	Owner   string
	Group   string
}

// NewFake returns a strict fake host named name. When t ends, expectations
// that were never met fail the test.
func NewFake(t testing.TB, name string) *Fake {
	f := &Fake{t: t, name: name, files: map[string]File{}}
	t.Cleanup(func() {
		if p := f.pending(); len(p) > 0 {
			t.Errorf("hosttest: %s: expected commands never ran:\n  %s", name, strings.Join(p, "\n  "))
		}
	})
	return f
}

// Expectation is one expected command and its canned answer.
type Expectation struct {
	desc     string
	match    func(line string) bool
	stdout   string
	stderr   string
	code     int
	err      error
	do       func(ctx context.Context, cmd host.Cmd) error
	times    int // 0 = any number of times
	used     int
	optional bool
}

// Expect registers an exact command line, answered once (use Times or
// AnyTimes to change that) with empty output and exit 0 unless configured.
func (f *Fake) Expect(line string) *Expectation {
	return f.ExpectFunc(line, func(l string) bool { return l == line })
}

// ExpectFunc registers a matcher for command lines; desc names it in failures.
func (f *Fake) ExpectFunc(desc string, match func(line string) bool) *Expectation {
	e := &Expectation{desc: desc, match: match, times: 1}
	f.mu.Lock()
	f.exps = append(f.exps, e)
	f.mu.Unlock()
	return e
}

// Stdout sets what the command prints on stdout.
func (e *Expectation) Stdout(s string) *Expectation { e.stdout = s; return e }

// Stderr sets what the command prints on stderr.
func (e *Expectation) Stderr(s string) *Expectation { e.stderr = s; return e }

// Exit sets the exit code; non-zero makes Run return *host.ExitError.
func (e *Expectation) Exit(code int) *Expectation { e.code = code; return e }

// Err makes Run return err (a transport failure) instead of running.
func (e *Expectation) Err(err error) *Expectation { e.err = err; return e }

// Do answers with fn, for commands whose answer depends on stdin.
func (e *Expectation) Do(fn func(ctx context.Context, cmd host.Cmd) error) *Expectation {
	e.do = fn
	return e
}

// Times makes the expectation match exactly n commands.
func (e *Expectation) Times(n int) *Expectation { e.times = n; return e }

// AnyTimes makes the expectation match any number of commands, including none.
func (e *Expectation) AnyTimes() *Expectation { e.times = 0; e.optional = true; return e }

func (f *Fake) pending() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var p []string
	for _, e := range f.exps {
		if !e.optional && e.used < e.times {
			p = append(p, fmt.Sprintf("%s (ran %d of %d times)", e.desc, e.used, e.times))
		}
	}
	return p
}

func (f *Fake) Name() string { return f.name }

func (f *Fake) record(format string, args ...any) {
	f.transcript = append(f.transcript, f.Redactor.Redact(fmt.Sprintf(format, args...)))
}

func (f *Fake) Run(ctx context.Context, cmd host.Cmd) error {
	if err := host.CheckLine(cmd.Line); err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	var stdin []byte
	if cmd.Stdin != nil {
		var err error
		if stdin, err = io.ReadAll(cmd.Stdin); err != nil {
			return fmt.Errorf("%s: read stdin: %w", f.name, err)
		}
		cmd.Stdin = bytes.NewReader(stdin)
	}
	f.mu.Lock()
	f.record("run: %s", cmd.Line)
	if cmd.Stdin != nil {
		f.record("  stdin: %s", describe(stdin))
	}
	var exp *Expectation
	for _, e := range f.exps {
		if (e.times == 0 || e.used < e.times) && e.match(cmd.Line) {
			exp = e
			e.used++
			break
		}
	}
	backend := f.Backend
	f.mu.Unlock()

	if exp == nil {
		if backend != nil {
			return backend.Run(ctx, cmd)
		}
		f.t.Errorf("hosttest: %s: unexpected command:\n  %s\npending expectations:\n  %s",
			f.name, f.Redactor.Redact(cmd.Line), strings.Join(f.pendingOrNone(), "\n  "))
		return &host.ExitError{Host: f.name, Command: f.Redactor.Redact(cmd.Line), Code: 127, Stderr: "hosttest: unexpected command"}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: run: %w", f.name, err)
	}
	if exp.err != nil {
		return exp.err
	}
	if exp.do != nil {
		return exp.do(ctx, cmd)
	}
	for _, out := range []struct {
		w    io.Writer
		text string
	}{{cmd.Stdout, exp.stdout}, {cmd.Stderr, exp.stderr}} {
		if out.w == nil {
			continue
		}
		if _, err := io.WriteString(out.w, out.text); err != nil {
			return fmt.Errorf("hosttest: %s: write the command's output: %w", f.name, err)
		}
	}
	if exp.code != 0 {
		return &host.ExitError{Host: f.name, Command: f.Redactor.Redact(cmd.Line), Code: exp.code,
			Stderr: host.Tail(f.Redactor.Redact(exp.stderr), host.StderrTailBytes)}
	}
	return nil
}

func (f *Fake) pendingOrNone() []string {
	if p := f.pending(); len(p) > 0 {
		return p
	}
	return []string{"(none)"}
}

func (f *Fake) Upload(ctx context.Context, r io.Reader, path string, opts host.FileOptions) error {
	b, err := io.ReadAll(ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("%s: upload %s: %w", f.name, path, err)
	}
	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	f.mu.Lock()
	f.record("upload: %s mode=%04o owner=%s group=%s (%d bytes)", path, host.UnixMode(mode), opts.Owner, opts.Group, len(b))
	f.record("%s", indentContent(b))
	backend := f.Backend
	if backend == nil {
		f.files[path] = File{Content: b, Mode: mode, Owner: opts.Owner, Group: opts.Group}
	}
	f.mu.Unlock()
	if backend != nil {
		return backend.Upload(ctx, bytes.NewReader(b), path, opts)
	}
	return nil
}

func (f *Fake) ReadFile(ctx context.Context, path string) ([]byte, error) {
	f.mu.Lock()
	f.record("read: %s", path)
	file, ok := f.files[path]
	backend := f.Backend
	f.mu.Unlock()
	if backend != nil {
		return backend.ReadFile(ctx, path)
	}
	if !ok {
		return nil, fmt.Errorf("%s: read %s: %w", f.name, path, fs.ErrNotExist)
	}
	return bytes.Clone(file.Content), nil
}

// SetFile puts a file into the in-memory filesystem (not recorded).
func (f *Fake) SetFile(path string, content []byte, mode fs.FileMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = File{Content: bytes.Clone(content), Mode: mode}
}

// File returns a file of the in-memory filesystem.
func (f *Fake) File(path string) (File, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	file, ok := f.files[path]
	return file, ok
}

// Paths lists the in-memory filesystem, sorted.
func (f *Fake) Paths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var p []string
	for k := range f.files {
		p = append(p, k)
	}
	sort.Strings(p)
	return p
}

// Transcript is everything the code under test did, one entry a line, in
// order: "run: LINE", "  stdin: ...", "upload: PATH mode=... owner=...
// group=... (N bytes)" followed by the content, "read: PATH".
func (f *Fake) Transcript() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.transcript) == 0 {
		return ""
	}
	return strings.Join(f.transcript, "\n") + "\n"
}

// describe shows stdin in a transcript: text inline, binary as size+digest.
func describe(b []byte) string {
	if len(b) <= 4096 && utf8.Valid(b) && !bytes.ContainsRune(b, 0) {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes sha256:%x", len(b), sha256.Sum256(b))
}

// indentContent shows uploaded content in a transcript: small text files
// line by line behind "  | ", others as size and digest.
func indentContent(b []byte) string {
	if len(b) > 16<<10 || !utf8.Valid(b) || bytes.ContainsRune(b, 0) {
		return fmt.Sprintf("  | <binary %d bytes sha256:%x>", len(b), sha256.Sum256(b))
	}
	s := string(b)
	noEOL := !strings.HasSuffix(s, "\n") && s != ""
	s = strings.TrimSuffix(s, "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = "  | " + l
	}
	if noEOL {
		lines = append(lines, "  \\ no newline at end of file")
	}
	return strings.Join(lines, "\n")
}
