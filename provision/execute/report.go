package execute

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// ReportOptions are shared by the reporters.
type ReportOptions struct {
	// Redact rewrites error text before it is shown, removing secrets
	// (join tokens, passwords). Nil shows errors as they are.
	Redact func(string) string
}

func (o ReportOptions) redact(s string) string {
	if o.Redact == nil || s == "" {
		return s
	}
	return o.Redact(s)
}

// LineReporter writes one human line per event, for logs and non-terminal
// stderr:
//
//	12:00:01 node-1/hostprep/sysctl  applied (0.4s)
type LineReporter struct {
	w   io.Writer
	opt ReportOptions
	buf []byte
	err error
}

var _ Reporter = (*LineReporter)(nil)

// NewLineReporter returns a LineReporter writing to w.
func NewLineReporter(w io.Writer, opt ReportOptions) *LineReporter {
	return &LineReporter{w: w, opt: opt}
}

// Event writes e as one line.
func (r *LineReporter) Event(e Event) {
	if r.err != nil {
		return
	}
	r.buf = e.Time.AppendFormat(r.buf[:0], "15:04:05")
	r.buf = append(r.buf, ' ')
	r.buf = append(r.buf, e.StepID...)
	r.buf = append(r.buf, "  "...)
	r.buf = append(r.buf, r.describe(e)...)
	r.buf = append(r.buf, '\n')
	_, r.err = r.w.Write(r.buf)
}

// Err returns the first write error; after one, events are dropped.
func (r *LineReporter) Err() error { return r.err }

func (r *LineReporter) describe(e Event) string {
	switch e.Type {
	case EventStart:
		return "started"
	case EventCheck:
		return "checked: " + string(e.Action)
	case EventApply:
		return "applying: " + string(e.Action)
	case EventDone:
		word := string(e.Status)
		switch e.Status {
		case StatusChanged:
			word = "applied"
		case StatusPlanned:
			word = "planned: " + string(e.Action)
		}
		return fmt.Sprintf("%s (%s)", word, seconds(e.Duration))
	case EventFailed:
		return fmt.Sprintf("failed (%s): %s", seconds(e.Duration), oneLine(r.opt.redact(e.Err)))
	case EventSkipped:
		return fmt.Sprintf("skipped: %s failed", e.Cause)
	case EventCancelled:
		if e.Duration > 0 {
			return fmt.Sprintf("cancelled (%s)", seconds(e.Duration))
		}
		return "cancelled"
	}
	return e.Type
}

// oneLine keeps a multi-line error on its event's line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}

// JSONReporter writes one JSON object per event and line. Field names are
// part of the CLI's machine interface and must not change:
// time, type, step, host, action, status, error, cause, durationMs.
type JSONReporter struct {
	enc *json.Encoder
	opt ReportOptions
	err error
}

var _ Reporter = (*JSONReporter)(nil)

// NewJSONReporter returns a JSONReporter writing to w.
func NewJSONReporter(w io.Writer, opt ReportOptions) *JSONReporter {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &JSONReporter{enc: enc, opt: opt}
}

type jsonEvent struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	Step       string    `json:"step"`
	Host       string    `json:"host,omitempty"`
	Action     string    `json:"action,omitempty"`
	Status     string    `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	Cause      string    `json:"cause,omitempty"`
	DurationMS float64   `json:"durationMs,omitempty"`
}

// Event writes e as one JSON line.
func (r *JSONReporter) Event(e Event) {
	if r.err != nil {
		return
	}
	r.err = r.enc.Encode(jsonEvent{
		Time:       e.Time,
		Type:       e.Type,
		Step:       e.StepID,
		Host:       e.Host,
		Action:     string(e.Action),
		Status:     string(e.Status),
		Error:      r.opt.redact(e.Err),
		Cause:      e.Cause,
		DurationMS: float64(e.Duration.Microseconds()) / 1000,
	})
}

// Err returns the first write error; after one, events are dropped.
func (r *JSONReporter) Err() error { return r.err }
