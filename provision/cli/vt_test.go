package cli

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// vt is a minimal terminal for tests. It interprets what the live view
// writes (text, CR, LF, cursor up, erase below, erase line) the way an
// xterm-compatible terminal does: autowrap with the wrap deferred until the
// next character, scrolling, and tmux-style reflow on resize. Rows that
// scroll off the top are kept as scrollback. Every rune is one column wide.
type vt struct {
	w, h     int
	rows     []vtRow // scrollback, then the screen from rows[top]
	top      int
	cur, col int  // cursor row (index into rows) and column
	wrapNext bool // the last column was written: the next rune wraps
	wraps    int  // autowraps: lines that did not fit the width
	erases   int  // erase-below sequences, one per redrawn frame
	bad      []string
	pend     []byte // an escape sequence or rune split across writes
}

type vtRow struct {
	cells   []rune
	wrapped bool // continues on the next row (autowrap)
}

func newVT(w, h int) *vt { return &vt{w: w, h: h, rows: []vtRow{{}}} }

func (t *vt) Write(p []byte) (int, error) {
	t.pend = append(t.pend, p...)
	b := t.pend
	for len(b) > 0 {
		n := t.step(b)
		if n == 0 {
			break // incomplete: wait for more bytes
		}
		b = b[n:]
	}
	t.pend = append([]byte(nil), b...)
	return len(p), nil
}

// step interprets the sequence at the start of b and returns its length,
// or 0 when b holds only part of it.
func (t *vt) step(b []byte) int {
	switch c := b[0]; {
	case c == 0x1b:
		if len(b) < 2 {
			return 0
		}
		if b[1] != '[' {
			t.bad = append(t.bad, fmt.Sprintf("escape %q", b[:2]))
			return 2
		}
		i := 2
		for i < len(b) && b[i] >= 0x20 && b[i] <= 0x3f {
			i++
		}
		if i == len(b) {
			return 0
		}
		t.csi(string(b[2:i]), b[i])
		return i + 1
	case c == '\r':
		t.col, t.wrapNext = 0, false
		return 1
	case c == '\n':
		t.lineFeed()
		t.wrapNext = false
		return 1
	case c < 0x20 || c == 0x7f:
		t.bad = append(t.bad, fmt.Sprintf("control %q", c))
		return 1
	}
	if !utf8.FullRune(b) {
		return 0
	}
	r, n := utf8.DecodeRune(b)
	switch {
	case r == utf8.RuneError && n == 1:
		t.bad = append(t.bad, fmt.Sprintf("invalid UTF-8 %q", b[0]))
	case r >= 0x80 && r < 0xa0:
		t.bad = append(t.bad, fmt.Sprintf("C1 control %U", r))
	}
	t.put(r)
	return n
}

func (t *vt) csi(params string, final byte) {
	switch {
	case final == 'A':
		n, err := strconv.Atoi(params)
		if params == "" {
			n, err = 1, nil
		}
		if err != nil {
			t.bad = append(t.bad, fmt.Sprintf("CSI %q A", params))
			return
		}
		t.cur, t.wrapNext = max(t.top, t.cur-n), false
	case final == 'J' && (params == "" || params == "0"):
		t.erases++
		t.clearRight()
		t.rows = t.rows[:t.cur+1]
	case final == 'K' && (params == "" || params == "0"):
		t.clearRight()
	default:
		t.bad = append(t.bad, fmt.Sprintf("CSI %q %c", params, final))
	}
}

func (t *vt) clearRight() {
	r := &t.rows[t.cur]
	if t.col < len(r.cells) {
		r.cells = r.cells[:t.col]
	}
	r.wrapped = false
}

func (t *vt) put(r rune) {
	if t.wrapNext {
		t.rows[t.cur].wrapped = true
		t.lineFeed()
		t.col, t.wrapNext = 0, false
		t.wraps++
	}
	row := &t.rows[t.cur]
	for len(row.cells) <= t.col {
		row.cells = append(row.cells, ' ')
	}
	row.cells[t.col] = r
	if t.col == t.w-1 {
		t.wrapNext = true
	} else {
		t.col++
	}
}

func (t *vt) lineFeed() {
	t.cur++
	if t.cur == len(t.rows) {
		t.rows = append(t.rows, vtRow{})
	}
	if t.cur-t.top >= t.h {
		t.top++
	}
}

// Resize reflows every line to the new width, as tmux does: long lines
// wrap, wrapped lines join again, and the cursor keeps its place in the
// text.
func (t *vt) Resize(w, h int) {
	var lines [][]rune
	curLine, curOff := 0, 0
	var line []rune
	for i, r := range t.rows {
		if i == t.cur {
			curLine, curOff = len(lines), len(line)+t.col
		}
		line = append(line, r.cells...)
		if !r.wrapped {
			lines = append(lines, line)
			line = nil
		}
	}
	if line != nil {
		lines = append(lines, line)
	}
	t.w, t.h = w, h
	t.rows = nil
	for i, l := range lines {
		first := len(t.rows)
		for len(l) > w {
			t.rows = append(t.rows, vtRow{cells: l[:w], wrapped: true})
			l = l[w:]
		}
		t.rows = append(t.rows, vtRow{cells: l})
		if i == curLine {
			t.cur, t.col = first+curOff/w, curOff%w
		}
	}
	for len(t.rows) <= t.cur {
		t.rows = append(t.rows, vtRow{})
	}
	t.top = max(0, len(t.rows)-h)
	t.wrapNext = false
}

// Screen is what the terminal shows: h rows, trailing blanks trimmed.
func (t *vt) Screen() []string {
	out := make([]string, t.h)
	for i := range out {
		if j := t.top + i; j < len(t.rows) {
			out[i] = strings.TrimRight(string(t.rows[j].cells), " ")
		}
	}
	return out
}

// ScreenRows is the screen's rows with their wrap flags.
func (t *vt) ScreenRows() []vtRow {
	end := min(len(t.rows), t.top+t.h)
	return t.rows[t.top:end]
}

// Lines is everything written, scrollback included, as logical lines:
// wrapped rows joined.
func (t *vt) Lines() []string {
	var out []string
	var b strings.Builder
	for _, r := range t.rows {
		b.WriteString(string(r.cells))
		if !r.wrapped {
			out = append(out, strings.TrimRight(b.String(), " "))
			b.Reset()
		}
	}
	return out
}

func (t *vt) String() string {
	return fmt.Sprintf("%dx%d screen:\n%s", t.w, t.h, strings.Join(t.Screen(), "\n"))
}

// TestVT checks the test terminal itself on the few things the live view
// relies on.
func TestVT(t *testing.T) {
	v := newVT(10, 4)
	v.Write([]byte("before\r\n0123456789\r\nabcdefghijKL\r\n"))
	if v.wraps != 1 {
		t.Errorf("wraps = %d, want 1 (exactly 10 columns does not wrap)", v.wraps)
	}
	v.Write([]byte("\x1b[3A\x1b[Jnew\r\n"))
	if got := strings.Join(v.Screen(), "|"); got != "new|||" { // "before" scrolled off
		t.Errorf("after cursor up and erase: %q", got)
	}
	v.Write([]byte("0123456789ab\r\n"))
	v.Resize(20, 4) // joins the wrapped line
	if got := strings.Join(v.Lines(), "|"); got != "before|new|0123456789ab|" {
		t.Errorf("lines after widening: %q", got)
	}
	v.Resize(5, 4) // splits long lines
	if got := strings.Join(v.Screen(), "|"); got != "01234|56789|ab|" || v.top+3 != v.cur || v.col != 0 {
		t.Errorf("after narrowing: %q, cursor row %d col %d", got, v.cur-v.top, v.col)
	}
	v.Write([]byte("\x1b[2m\x1bX\x07\xff"))
	if len(v.bad) != 4 {
		t.Errorf("bad = %q, want 4 complaints", v.bad)
	}
}
