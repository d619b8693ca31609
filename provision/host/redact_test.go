package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/clusterctl/clusterctl/provision/host"
	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

func TestRedact(t *testing.T) {
	r := host.NewRedactor()
	r.Add("")
	r.Add("abc") // too short, ignored
	r.Add("s3cr3t-token")
	r.Add("s3cr3t") // contained in the longer one
	r.Add("  padded-secret\n")
	for in, want := range map[string]string{
		"abc s3cr3t-token x":          "abc *** x",
		"s3cr3t and s3cr3t-tokenizer": "*** and ***izer",
		"value=padded-secret;":        "value=***;",
		"nothing here":                "nothing here",
		"s3cr3ts3cr3t-token":          "******",
	} {
		if got := r.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	var nilR *host.Redactor
	nilR.Add("whatever")
	if nilR.Redact("whatever") != "whatever" {
		t.Error("nil Redactor changed text")
	}
}

func TestRedactConcurrent(t *testing.T) {
	r := host.NewRedactor()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				r.Add(strings.Repeat("k", 4+i) + string(rune('a'+j%26)))
				_ = r.Redact("kkkkkkkka text")
			}
		}()
	}
	wg.Wait()
	if got := r.Redact("kkkkz"); got != "***" {
		t.Errorf("got %q", got)
	}
}

func TestRedactWriterSplitSecret(t *testing.T) {
	const secret = "K10abcdef::server:0123456789"
	r := host.NewRedactor()
	r.Add(secret)
	text := "token is " + secret + " ok\nsecond " + secret + "\nno newline " + secret
	// Every split point of the stream into 2 and 3 writes.
	for i := 0; i <= len(text); i++ {
		for _, j := range []int{i, (i + len(text)) / 2} {
			var out bytes.Buffer
			w := r.Writer(&out)
			w.Write([]byte(text[:i]))
			w.Write([]byte(text[i:max(i, j)]))
			w.Write([]byte(text[max(i, j):]))
			w.(*host.RedactWriter).Flush()
			if strings.Contains(out.String(), "0123456789") || out.String() != r.Redact(text) {
				t.Fatalf("split at %d,%d: %q", i, j, out.String())
			}
		}
	}
}

func TestRedactWriterLongLine(t *testing.T) {
	const secret = "very-secret-value"
	r := host.NewRedactor()
	r.Add(secret)
	var out bytes.Buffer
	w := r.Writer(&out)
	chunk := strings.Repeat("x", 1000) + secret
	var want strings.Builder
	for i := 0; i < 300; i++ { // ~300 KB without a newline
		w.Write([]byte(chunk[:500]))
		w.Write([]byte(chunk[500:]))
		want.WriteString(chunk)
	}
	w.(*host.RedactWriter).Flush()
	if strings.Contains(out.String(), "secret-val") {
		t.Fatal("secret leaked in a long line")
	}
	if out.String() != r.Redact(want.String()) {
		t.Fatalf("long line output differs (%d bytes)", out.Len())
	}
}

func TestExitErrorRedacted(t *testing.T) {
	const secret = "hunter2-password"
	r := host.NewRedactor()
	r.Add(secret)
	h := hosttest.NewLocal("local", t.TempDir(), r)
	var stderr bytes.Buffer
	w := r.Writer(&stderr) // one writer: it serialises both streams
	err := h.Run(context.Background(), host.Cmd{
		Line:   "echo " + host.Quote("using "+secret) + " >&2; echo " + secret + "; exit 3",
		Stdout: w, Stderr: w,
	})
	var ee *host.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("want exit 3, got %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(ee.Stderr, "hunter2") || strings.Contains(stderr.String(), "hunter2") {
		t.Fatalf("secret leaked: error %q; captured %q", err, stderr.String())
	}
	if !strings.Contains(ee.Stderr, "using ***") || !strings.Contains(ee.Command, "***") {
		t.Errorf("redaction mark missing: %q", err)
	}
}

// TestRedactorError: the redacted error hides the secret in its text, in
// every fmt verb, yet errors.Is and errors.As still see what it wraps.
func TestRedactorError(t *testing.T) {
	r := host.NewRedactor()
	r.Add("s3cr3t-token")
	exit := &host.ExitError{Host: "cp1", Command: "kubeadm join --token s3cr3t-token", Code: 1}
	cause := fmt.Errorf("join cp1 with token s3cr3t-token: %w", errors.Join(host.ErrUnreachable, exit))
	err := fmt.Errorf("apply: %w", r.Error(cause))

	if !errors.Is(err, host.ErrUnreachable) {
		t.Error("errors.Is(err, host.ErrUnreachable) = false through the redacted error")
	}
	var got *host.ExitError
	if !errors.As(err, &got) || got != exit {
		t.Error("errors.As did not find the *host.ExitError through the redacted error")
	}
	var red *host.RedactedError
	if !errors.As(err, &red) {
		t.Fatal("errors.As did not find the *host.RedactedError")
	}
	for _, verb := range []string{"%v", "%+v", "%s", "%q", "%#v"} {
		if s := fmt.Sprintf(verb, err); strings.Contains(s, "s3cr3t") {
			t.Errorf("Sprintf(%s) shows the secret: %s", verb, s)
		}
	}
	if want := "apply: join cp1 with token ***: host unreachable\n"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Error() = %q, want prefix %q", err.Error(), want)
	}
	// A secret registered after the error was made is hidden too: the text
	// is redacted when it is read.
	r.Add("cp1 with")
	if s := red.Error(); strings.Contains(s, "cp1 with") {
		t.Errorf("Error() shows a secret registered later: %s", s)
	}
	if r.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	var nilR *host.Redactor
	if e := nilR.Error(cause); e == nil || !errors.Is(e, host.ErrUnreachable) {
		t.Errorf("nil Redactor: Error(cause) = %v, want the cause's chain", e)
	}
}
