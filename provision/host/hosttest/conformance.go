package hosttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
)

// RunConformance checks the contract every host.Host must meet. newHost is
// called once per subtest; the host needs a POSIX shell, coreutils and a
// writable temporary directory (mktemp -d).
func RunConformance(t *testing.T, newHost func(t *testing.T) host.Host) {
	t.Helper()
	for _, tc := range conformanceTests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			dir := tempDir(t, h)
			tc.fn(t, h, dir)
		})
	}
}

var conformanceTests = []struct {
	name string
	fn   func(t *testing.T, h host.Host, dir string)
}{
	{"ExitCode", testExitCode},
	{"StderrTail", testStderrTail},
	{"Stdio", testStdio},
	{"StdinBinary", testStdinBinary},
	{"NilStdinIsEOF", testNilStdin},
	{"QuotedArgsRoundTrip", testQuotedArgs},
	{"UploadModeAndContent", testUploadMode},
	{"UploadOverwrite", testUploadOverwrite},
	{"UploadAtomic", testUploadAtomic},
	{"UploadOwner", testUploadOwner},
	{"UploadPrivateInTransit", testUploadPrivateInTransit},
	{"ReadFileMissing", testReadMissing},
	{"CancelInterrupts", testCancel},
	{"NULRefused", testNUL},
	{"ConcurrentRuns", testConcurrent},
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func output(t *testing.T, h host.Host, line string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := h.Run(ctxT(t), host.Cmd{Line: line, Stdout: &out, Stderr: &errb}); err != nil {
		t.Fatalf("run %q: %v (stderr %q)", line, err, errb.String())
	}
	return out.String()
}

func tempDir(t *testing.T, h host.Host) string {
	t.Helper()
	dir := strings.TrimSpace(output(t, h, "mktemp -d"))
	if dir == "" || !strings.HasPrefix(dir, "/") {
		t.Fatalf("mktemp -d printed %q", dir)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = h.Run(ctx, host.Cmd{Line: "rm -rf -- " + host.Quote(dir)})
	})
	return dir
}

func testExitCode(t *testing.T, h host.Host, _ string) {
	for _, code := range []int{1, 3, 42, 255} {
		err := h.Run(ctxT(t), host.Cmd{Line: fmt.Sprintf("echo failing >&2; exit %d", code)})
		var ee *host.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("exit %d: want *host.ExitError, got %T %v", code, err, err)
		}
		if ee.Code != code {
			t.Errorf("exit %d: ExitError.Code = %d", code, ee.Code)
		}
		if ee.Host != h.Name() {
			t.Errorf("ExitError.Host = %q, want %q", ee.Host, h.Name())
		}
		if !strings.Contains(ee.Command, fmt.Sprintf("exit %d", code)) {
			t.Errorf("ExitError.Command = %q does not show the command", ee.Command)
		}
		if !strings.Contains(ee.Stderr, "failing") {
			t.Errorf("ExitError.Stderr = %q, want the stderr", ee.Stderr)
		}
	}
	if err := h.Run(ctxT(t), host.Cmd{Line: "true"}); err != nil {
		t.Errorf("true: %v", err)
	}
}

func testStderrTail(t *testing.T, h host.Host, _ string) {
	var full bytes.Buffer
	err := h.Run(ctxT(t), host.Cmd{
		Line:   `i=0; while [ $i -lt 3000 ]; do echo "noise line $i" >&2; i=$((i+1)); done; echo the-last-line >&2; exit 7`,
		Stderr: &full,
	})
	var ee *host.ExitError
	if !errors.As(err, &ee) || ee.Code != 7 {
		t.Fatalf("want exit 7, got %v", err)
	}
	if !strings.Contains(ee.Stderr, "the-last-line") || strings.Contains(ee.Stderr, "noise line 0\n") {
		t.Errorf("Stderr is not the tail: %.200q", ee.Stderr)
	}
	if len(ee.Stderr) > host.StderrTailBytes+8 {
		t.Errorf("Stderr tail is %d bytes, bound is %d", len(ee.Stderr), host.StderrTailBytes)
	}
	if !strings.HasPrefix(full.String(), "noise line 0\n") || !strings.HasSuffix(full.String(), "the-last-line\n") {
		t.Errorf("cmd.Stderr did not get the whole stream (%d bytes)", full.Len())
	}
}

func testStdio(t *testing.T, h host.Host, _ string) {
	var out, errb bytes.Buffer
	err := h.Run(ctxT(t), host.Cmd{Line: "printf 'out\\n'; printf 'err\\n' >&2; tr a-z A-Z", Stdin: strings.NewReader("hello\n"), Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "out\nHELLO\n" || errb.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func testStdinBinary(t *testing.T, h host.Host, _ string) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	var out bytes.Buffer
	if err := h.Run(ctxT(t), host.Cmd{Line: "cat", Stdin: bytes.NewReader(data), Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Errorf("cat returned %d bytes, sent %d (different content)", out.Len(), len(data))
	}
}

func testNilStdin(t *testing.T, h host.Host, _ string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := h.Run(ctx, host.Cmd{Line: "cat; echo done", Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "done\n" {
		t.Errorf("stdout %q", out.String())
	}
}

// HostileStrings are inputs every quoting path must carry unchanged.
var HostileStrings = []string{
	"", " ", "plain", "abc-1.2/x", "it's", "'", "''", `"`, `\`, `\'`, "a b  c",
	"$(touch CANARY)", "`touch CANARY`", "${HOME}", "$HOME", "a;touch CANARY", "a && touch CANARY",
	"a || touch CANARY", "a | touch CANARY", "x\ntouch CANARY", "\n", "\r\n", "\t", "*", "?", "[a-z]*", "~", "~root",
	"-n", "-e", "--", "-", "a=b", "!", "!!", "#comment", "{a,b}", "> CANARY", "< /etc/passwd", "2>&1",
	"ünïcödé ✓ 日本", "\xff\xfe", "'$(touch CANARY)'", `"$(touch CANARY)"`, "%s%d%n", "\x01\x1b[31m",
}

func testQuotedArgs(t *testing.T, h host.Host, dir string) {
	for _, s := range HostileStrings {
		s = strings.ReplaceAll(s, "CANARY", dir+"/canary")
		out := output(t, h, "cd "+host.Quote(dir)+" && printf %s "+host.Quote(s))
		if out != s {
			t.Errorf("printf %%s %s printed %q, want %q", host.Quote(s), out, s)
		}
	}
	if out := output(t, h, "ls -A "+host.Quote(dir)); out != "" {
		t.Errorf("hostile strings created files: %q", out)
	}
}

func statLine(t *testing.T, h host.Host, path string) string {
	return strings.TrimSpace(output(t, h, "stat -c '%a %s' -- "+host.Quote(path)))
}

func testUploadMode(t *testing.T, h host.Host, dir string) {
	for _, tc := range []struct {
		mode fs.FileMode
		want string
	}{{0, "644"}, {0o640, "640"}, {0o755, "755"}, {0o600, "600"}} {
		p := fmt.Sprintf("%s/file-%o", dir, tc.mode)
		content := []byte(fmt.Sprintf("mode %o\x00binary\xff", tc.mode))
		if err := h.Upload(ctxT(t), bytes.NewReader(content), p, host.FileOptions{Mode: tc.mode}); err != nil {
			t.Fatalf("upload mode %o: %v", tc.mode, err)
		}
		if got := statLine(t, h, p); got != fmt.Sprintf("%s %d", tc.want, len(content)) {
			t.Errorf("mode %o: stat says %q, want mode %s size %d", tc.mode, got, tc.want, len(content))
		}
		got, err := h.ReadFile(ctxT(t), p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Errorf("ReadFile = %q, want %q", got, content)
		}
	}
	if out := output(t, h, "ls -A "+host.Quote(dir)); out != "file-0\nfile-600\nfile-640\nfile-755\n" {
		t.Errorf("upload left other files behind: %q", out)
	}
	if err := h.Upload(ctxT(t), strings.NewReader("x"), dir+"/no/such/dir/f", host.FileOptions{}); err == nil {
		t.Errorf("upload into a missing directory succeeded")
	}
}

func testUploadOverwrite(t *testing.T, h host.Host, dir string) {
	p := dir + "/over"
	for i, c := range []string{"first version, longer than the next\n", "second\n", ""} {
		mode := fs.FileMode(0o600)
		if i == 1 {
			mode = 0o644
		}
		if err := h.Upload(ctxT(t), strings.NewReader(c), p, host.FileOptions{Mode: mode}); err != nil {
			t.Fatal(err)
		}
		got, err := h.ReadFile(ctxT(t), p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c {
			t.Errorf("after upload %d: content %q, want %q", i, got, c)
		}
		if st := statLine(t, h, p); st != fmt.Sprintf("%o %d", mode, len(c)) {
			t.Errorf("after upload %d: stat %q", i, st)
		}
	}
	if out := output(t, h, "ls -A "+host.Quote(dir)); out != "over\n" {
		t.Errorf("upload left other files behind: %q", out)
	}
}

// testUploadAtomic has a reader on the host loop over the file while it is
// replaced again and again: every read must see one whole version.
func testUploadAtomic(t *testing.T, h host.Host, dir string) {
	p := dir + "/atomic"
	const size = 256 << 10
	versions := [][]byte{bytes.Repeat([]byte("a"), size), bytes.Repeat([]byte("b"), size)}
	if err := h.Upload(ctxT(t), bytes.NewReader(versions[0]), p, host.FileOptions{}); err != nil {
		t.Fatal(err)
	}
	// Reference checksums, computed on the host from whole copies.
	valid := map[string]bool{}
	for i, v := range versions {
		ref := fmt.Sprintf("%s/ref-%d", dir, i)
		if err := h.Upload(ctxT(t), bytes.NewReader(v), ref, host.FileOptions{}); err != nil {
			t.Fatal(err)
		}
		valid[strings.TrimSpace(output(t, h, "cksum < "+host.Quote(ref)))] = true
	}
	done := make(chan struct{})
	var uploads int
	var upErr error
	go func() {
		defer close(done)
		for i := 1; i < 400; i++ {
			if _, err := h.ReadFile(ctxT(t), dir+"/reader-done"); err == nil {
				return
			}
			if err := h.Upload(ctxT(t), bytes.NewReader(versions[i%2]), p, host.FileOptions{}); err != nil {
				upErr = err
				return
			}
			uploads++
		}
	}()
	// One open per read (cksum < file), so a read sees one inode.
	out := output(t, h, fmt.Sprintf(`i=0; while [ $i -lt 150 ]; do cksum < %s 2>&1; i=$((i+1)); done; touch %s`,
		host.Quote(p), host.Quote(dir+"/reader-done")))
	<-done
	if upErr != nil {
		t.Fatal(upErr)
	}
	seen := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		seen[l]++
	}
	for l, n := range seen {
		if !valid[l] {
			t.Errorf("reader saw a partial or missing file %d times: %q", n, l)
		}
	}
	t.Logf("%d uploads during 150 reads: %v", uploads, seen)
}

func testUploadOwner(t *testing.T, h host.Host, dir string) {
	ids := strings.Fields(output(t, h, "id -u; id -g; id -un; id -gn"))
	if len(ids) != 4 {
		t.Fatalf("id printed %q", ids)
	}
	cases := []struct{ owner, group, want string }{
		{ids[0], ids[1], ids[0] + ":" + ids[1]}, // numeric
		{ids[2], ids[3], ids[0] + ":" + ids[1]}, // names
		{ids[2], "", ids[0] + ":" + ids[1]},
	}
	if ids[0] == "0" {
		if other := strings.Fields(output(t, h, "id -u nobody 2>/dev/null && getent group nogroup | cut -d: -f3 || true")); len(other) == 2 {
			cases = append(cases,
				struct{ owner, group, want string }{"nobody", "nogroup", other[0] + ":" + other[1]},
				struct{ owner, group, want string }{"", "nogroup", "0:" + other[1]},
				struct{ owner, group, want string }{other[0], "", other[0] + ":0"},
			)
		}
	}
	for i, tc := range cases {
		p := fmt.Sprintf("%s/owned-%d", dir, i)
		if err := h.Upload(ctxT(t), strings.NewReader("owned\n"), p, host.FileOptions{Mode: 0o640, Owner: tc.owner, Group: tc.group}); err != nil {
			t.Fatalf("upload owner %q group %q: %v", tc.owner, tc.group, err)
		}
		if got := strings.TrimSpace(output(t, h, "stat -c '%u:%g %a' -- "+host.Quote(p))); got != tc.want+" 640" {
			t.Errorf("owner %q group %q: stat %q, want %q", tc.owner, tc.group, got, tc.want+" 640")
		}
	}
	if err := h.Upload(ctxT(t), strings.NewReader("x"), dir+"/bad-owner", host.FileOptions{Owner: "no-such-user-clusterctl"}); err == nil {
		t.Errorf("upload with an unknown owner succeeded")
	}
	if out := output(t, h, "ls -A "+host.Quote(dir)+" | grep -v '^owned-' || true"); out != "" {
		t.Errorf("failed upload left files behind: %q", out)
	}
}

// probingReader serves content and, once half of it is read, runs probe:
// the upload is then in flight, its temporary file partly written.
type probingReader struct {
	r      io.Reader
	served int
	at     int
	probe  func()
	probed bool
}

func (p *probingReader) Read(b []byte) (int, error) {
	if !p.probed && p.served >= p.at {
		p.probed = true
		p.probe()
	}
	n, err := p.r.Read(b)
	p.served += n
	return n, err
}

// testUploadPrivateInTransit looks, in the middle of an upload, for every
// file on the host that holds the content so far (the temporary file, and
// for sudo the staged copy). Each must sit in a directory that only its
// owner can enter: then no other user can open it, whatever the file's own
// mode was at any moment (SFTP creates files with the server's umask and
// chmods them a round trip later; an open file stays readable after that).
func testUploadPrivateInTransit(t *testing.T, h host.Host, dir string) {
	pub := dir + "/pub" // world-readable, like /etc or a 0755 home
	output(t, h, "mkdir -m 755 -- "+host.Quote(pub)+" && chmod 755 -- "+host.Quote(dir)+" && touch -- "+host.Quote(dir+"/ref"))
	var rnd [16]byte
	rand.Read(rnd[:])
	marker := fmt.Sprintf("clusterctl-secret-%x", rnd)
	content := append([]byte(marker+"\n"), make([]byte, 1<<20)...)
	rand.Read(content[len(marker)+1:])
	// Where an upload may put the content: beside the target, or in a
	// staging directory under a home or a temporary directory.
	find := "find " + host.Quote(dir) + " /tmp /var/tmp /root /home -maxdepth 4 -type f -newer " + host.Quote(dir+"/ref") +
		" -exec grep -l -F -e " + host.Quote(marker) + " -- {} + 2>/dev/null | sort -u"
	probe := `i=0; while [ $i -lt 20 ]; do f=$(` + find + `); [ -n "$f" ] && break; sleep 0.1; i=$((i+1)); done; ` +
		`printf '%s\n' "$f" | while IFS= read -r p; do [ -n "$p" ] && stat -c '%a %u %n' -- "$p" "${p%/*}"; done; true`
	var seen string
	r := &probingReader{r: bytes.NewReader(content), at: len(content) / 2, probe: func() { seen = output(t, h, probe) }}
	if err := h.Upload(ctxT(t), r, pub+"/secret", host.FileOptions{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if !r.probed {
		t.Fatal("the host never read the second half of the content")
	}
	lines := strings.Split(strings.TrimSpace(seen), "\n")
	if seen == "" {
		// A host that buffers the whole upload before writing has nothing
		// on disk yet.
		t.Logf("no file on the host held the content in mid-upload")
		lines = nil
	}
	for i := 0; i+1 < len(lines); i += 2 {
		file, parent := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(file) < 3 || len(parent) < 3 {
			t.Fatalf("stat printed %q", seen)
		}
		fileMode, _ := strconv.ParseUint(file[0], 8, 32)
		dirMode, _ := strconv.ParseUint(parent[0], 8, 32)
		t.Logf("in transit: %s mode %s uid %s, in %s mode %s uid %s", file[2], file[0], file[1], parent[2], parent[0], parent[1])
		if dirMode&0o077 != 0 || parent[1] != file[1] {
			t.Errorf("in mid-upload the content is in %s (mode %04o), in directory %s (mode %04o, uid %s): other users can open it (file readable by others now: %v)",
				file[2], fileMode, parent[2], dirMode, parent[1], fileMode&0o004 != 0)
		}
	}
	if got, err := h.ReadFile(ctxT(t), pub+"/secret"); err != nil || !bytes.Equal(got, content) {
		t.Errorf("uploaded file: %d bytes, %v; want the %d bytes sent", len(got), err, len(content))
	}
	if out := output(t, h, "ls -A "+host.Quote(pub)); out != "secret\n" {
		t.Errorf("upload left other files behind: %q", out)
	}
}

func testReadMissing(t *testing.T, h host.Host, dir string) {
	_, err := h.ReadFile(ctxT(t), dir+"/does-not-exist")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func testCancel(t *testing.T, h host.Host, _ string) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.Run(ctx, host.Cmd{Line: "sleep 30"})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run returned %v after the context ended", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled Run: %v, want context.DeadlineExceeded", err)
	}
	if err := h.Run(ctxT(t), host.Cmd{Line: "true"}); err != nil {
		t.Errorf("host unusable after a cancelled command: %v", err)
	}
}

func testNUL(t *testing.T, h host.Host, dir string) {
	canary := host.Quote(dir + "/canary")
	for _, line := range []string{"touch " + canary + "\x00", "true\x00; touch " + canary, "printf %s " + host.Quote("a\x00b") + "; touch " + canary} {
		err := h.Run(ctxT(t), host.Cmd{Line: line})
		if !errors.Is(err, host.ErrInvalidCommand) {
			t.Errorf("line with NUL: %v, want host.ErrInvalidCommand", err)
		}
	}
	if out := output(t, h, "ls -A "+host.Quote(dir)); out != "" {
		t.Errorf("a line with NUL ran: %q", out)
	}
}

func testConcurrent(t *testing.T, h host.Host, _ string) {
	const n = 24
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb bytes.Buffer
			err := h.Run(ctxT(t), host.Cmd{Line: fmt.Sprintf("echo out-%d; echo err-%d >&2; exit %d", i, i, i%3), Stdout: &out, Stderr: &errb})
			var ee *host.ExitError
			switch {
			case i%3 == 0 && err != nil:
				errs[i] = err
			case i%3 != 0 && (!errors.As(err, &ee) || ee.Code != i%3):
				errs[i] = fmt.Errorf("want exit %d, got %v", i%3, err)
			case out.String() != fmt.Sprintf("out-%d\n", i) || errb.String() != fmt.Sprintf("err-%d\n", i):
				errs[i] = fmt.Errorf("stdout %q stderr %q", out.String(), errb.String())
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}
