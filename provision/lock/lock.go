// Package lock keeps two operators (or two CI jobs) from changing one
// cluster at once: a lock file on one control plane (the spec's first),
// taken atomically, kept alive by a heartbeat and released at the end.
package lock

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/provision/host"
)

// Where the lock lives on the host, and how it is kept alive.
const (
	DefaultDir = "/var/lib/clusterctl"
	// A holder rewrites its heartbeat this often; a lock whose heartbeat
	// is older than StaleAfter has lost its holder (killed, laptop closed).
	HeartbeatEvery = 15 * time.Second
	StaleAfter     = 2 * time.Minute
)

// Info is what the lock file says of its holder.
type Info struct {
	ID    string `json:"id"`
	Owner string `json:"owner"` // user@machine
	PID   int    `json:"pid"`
	// MachineID (a hash of the holder's machine ID) and ProcStart (its
	// process's start time, clock ticks after boot) say which process on
	// which machine holds the lock: only that machine may take a dead
	// holder's lock over. Locks written before them have neither.
	MachineID string `json:"machineID,omitempty"`
	ProcStart uint64 `json:"procStart,omitempty"`
	// Record is the sha256 of the cluster's state record the holder read
	// after taking the lock: which record it planned against.
	Record  string    `json:"record,omitempty"`
	Command string    `json:"command"`
	Host    string    `json:"host"` // the host that holds the lock file
	Started time.Time `json:"started"`
	// Heartbeat is the lock file's modification time: the holder touches
	// the file (never rewrites it), so a lock removed by force-unlock can
	// not be brought back by a late heartbeat.
	Heartbeat time.Time `json:"heartbeat"`
}

// Stale reports whether the holder stopped beating before now.
func (i Info) Stale(now time.Time) bool { return now.Sub(i.Heartbeat) > StaleAfter }

func (i Info) String() string {
	return fmt.Sprintf("%s (pid %d, %q) since %s", i.Owner, i.PID, i.Command, i.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// ErrLocked: somebody else holds the lock.
var ErrLocked = errors.New("the cluster is locked")

// HeldError says who holds the lock, since when, and what to do.
type HeldError struct {
	Holder Info
	Now    time.Time
	Stale  bool
}

func (e *HeldError) Error() string {
	age := e.Now.Sub(e.Holder.Started).Round(time.Second)
	beat := e.Now.Sub(e.Holder.Heartbeat).Round(time.Second)
	if e.Stale {
		return fmt.Sprintf("%v by %s (%s ago) on host %s, lock ID %s; the lock is STALE: its heartbeat stopped %s ago, so its holder is probably gone; "+
			"make sure it is, then release it with: clusterctl force-unlock %s SPEC",
			ErrLocked, e.Holder, age, e.Holder.Host, e.Holder.ID, beat, e.Holder.ID)
	}
	return fmt.Sprintf("%v by %s (%s ago) on host %s, lock ID %s, last heartbeat %s ago; wait for it to finish",
		ErrLocked, e.Holder, age, e.Holder.Host, e.Holder.ID, beat)
}

func (e *HeldError) Unwrap() error { return ErrLocked }

// File is the lock file on one host.
type File struct {
	Host     host.Host
	HostName string // the spec's name of the host
	Dir      string // DefaultDir when empty
}

func (f File) dir() string {
	if f.Dir == "" {
		return DefaultDir
	}
	return f.Dir
}

func (f File) path() string { return f.dir() + "/lock.json" }

// Lock is a held lock. Release it when the work is done.
type Lock struct {
	Info Info
	file File
	stop context.CancelFunc
	done chan struct{}
	mu   sync.Mutex
	lost error // set when a heartbeat found the lock gone or taken
}

// Options say who takes the lock. Empty fields are filled from the
// process (user, machine, pid and its start time) and the clock.
type Options struct {
	Command   string
	Owner     string
	MachineID string
	PID       int
	ProcStart uint64 // filled only with PID
	Now       func() time.Time
	takeover  bool // a dead local holder's lock was released once already
	// Every is the heartbeat interval (HeartbeatEvery when 0).
	Every time.Duration
	// Warn receives heartbeat problems (the walk goes on: losing the lock
	// midway is reported, not fatal).
	Warn func(msg string)
}

var idRE = regexp.MustCompile(`^[a-z0-9]{8,32}$`)

func newID() string { return strings.ToLower(rand.Text())[:16] }

// Markers of the acquire script's answer.
const (
	markAcquired = "@@lock-acquired"
	markHeld     = "@@lock-held"
	markGone     = "@@lock-gone"
	markNotOurs  = "@@lock-not-ours"
)

// Acquire takes the lock on h or says who holds it (*HeldError). The lock
// file is created with a hard link, which fails when the file exists: two
// clusterctl runs racing cannot both win.
func (f File) Acquire(ctx context.Context, o Options) (*Lock, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Every <= 0 {
		o.Every = HeartbeatEvery
	}
	now := o.Now().UTC().Truncate(time.Second)
	info := Info{ID: newID(), Owner: o.Owner, MachineID: o.MachineID, PID: o.PID, ProcStart: o.ProcStart,
		Command: o.Command, Host: f.HostName, Started: now, Heartbeat: now}
	if info.Owner == "" {
		info.Owner = whoami()
	}
	if info.MachineID == "" {
		info.MachineID = MachineID()
	}
	if info.PID == 0 {
		info.PID = os.Getpid()
		info.ProcStart, _, _ = procStart(info.PID)
	}
	doc, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	path := host.Quote(f.path())
	tmp := host.Quote(f.path() + "." + info.ID)
	line := "umask 077; mkdir -p " + host.Quote(f.dir()) + " && printf '%s\\n' " + host.Quote(string(doc)) + " > " + tmp +
		" && touch -c -d @" + strconv.FormatInt(now.Unix(), 10) + " " + tmp +
		" && if ln " + tmp + " " + path + " 2>/dev/null; then rm -f " + tmp + "; echo " + markAcquired +
		"; else rm -f " + tmp + "; echo " + markHeld + "; " + showHeld(path) + "; fi"
	out, err := run(ctx, f.Host, line)
	if err != nil {
		return nil, fmt.Errorf("take the lock on %s: %w", f.HostName, err)
	}
	head, body, _ := strings.Cut(out, "\n")
	switch head {
	case markAcquired:
	case markHeld:
		holder, err := parseInfo(body)
		if err != nil {
			return nil, fmt.Errorf("the cluster is locked, and the lock file %s on %s is unreadable (%v): remove it by hand once nobody is applying", f.path(), f.HostName, err)
		}
		// A holder on this machine whose process is gone (killed) cannot
		// come back: its lock is taken over at once instead of waiting for
		// its heartbeat to go stale.
		if !o.takeover && deadOwnHolder(holder, info, procStart) {
			if _, err := f.ForceUnlock(ctx, holder.ID); err != nil {
				return nil, fmt.Errorf("release the lock %s left by pid %d, which is no longer running: %w", holder.ID, holder.PID, err)
			}
			if o.Warn != nil {
				o.Warn(fmt.Sprintf("took over lock %s on %s: its holder, pid %d on this machine, is no longer running", holder.ID, f.HostName, holder.PID))
			}
			o.takeover = true
			return f.Acquire(ctx, o)
		}
		return nil, &HeldError{Holder: holder, Now: now, Stale: holder.Stale(now)}
	default:
		return nil, fmt.Errorf("take the lock on %s: unexpected answer %.80q", f.HostName, out)
	}
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l := &Lock{Info: info, file: f, stop: stop, done: make(chan struct{})}
	go l.beat(hctx, o)
	return l, nil
}

// beat rewrites the heartbeat while the lock is held, only while the file
// still holds our ID (force-unlock may have taken it).
func (l *Lock) beat(ctx context.Context, o Options) {
	defer close(l.done)
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		info := l.holder()
		path := host.Quote(l.file.path())
		// touch -c never creates: a removed lock stays removed.
		line := "if grep -qF " + host.Quote(`"id":"`+info.ID+`"`) + " " + path + " 2>/dev/null; then touch -c -d @" +
			strconv.FormatInt(o.Now().Unix(), 10) + " " + path + "; else echo " + markGone + "; fi"
		rctx, cancel := context.WithTimeout(ctx, max(o.Every, 5*time.Second))
		out, err := run(rctx, l.file.Host, line)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if o.Warn != nil {
				o.Warn(fmt.Sprintf("lock heartbeat on %s failed (will retry): %v", l.file.HostName, err))
			}
		case strings.HasPrefix(out, markGone):
			l.mu.Lock()
			l.lost = fmt.Errorf("the lock %s on %s was released by someone else (force-unlock?) while this run held it", info.ID, l.file.HostName)
			l.mu.Unlock()
			if o.Warn != nil {
				o.Warn(l.lost.Error())
			}
			return
		}
	}
}

func (l *Lock) holder() Info {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Info
}

// NoteRecord writes the digest of the state record read under the lock
// into the lock file (a new file renamed over it, only while it holds our
// ID), so a later reader can tell which record the holder planned against.
func (l *Lock) NoteRecord(ctx context.Context, digest string) error {
	l.mu.Lock()
	l.Info.Record = digest
	info := l.Info
	l.mu.Unlock()
	doc, err := json.Marshal(info)
	if err != nil {
		return err
	}
	path := host.Quote(l.file.path())
	tmp := host.Quote(l.file.path() + "." + info.ID)
	line := "umask 077; printf '%s\\n' " + host.Quote(string(doc)) + " > " + tmp +
		" && if grep -qF " + host.Quote(`"id":"`+info.ID+`"`) + " " + path + " 2>/dev/null; then mv -f " + tmp + " " + path +
		"; else rm -f " + tmp + "; echo " + markGone + "; fi"
	out, err := run(ctx, l.file.Host, line)
	if err != nil {
		return fmt.Errorf("note the state record in the lock on %s: %w", l.file.HostName, err)
	}
	if strings.HasPrefix(out, markGone) {
		return fmt.Errorf("note the state record in the lock on %s: the lock %s is no longer held", l.file.HostName, info.ID)
	}
	return nil
}

// Lost is non-nil when the lock was taken away while held.
func (l *Lock) Lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Release stops the heartbeat and removes the lock file if it is still
// ours. It runs even after the caller's context was cancelled (Ctrl-C).
func (l *Lock) Release(ctx context.Context) error {
	l.stop()
	<-l.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	path := host.Quote(l.file.path())
	line := "if grep -qF " + host.Quote(`"id":"`+l.Info.ID+`"`) + " " + path + " 2>/dev/null; then rm -f " + path + "; fi"
	if _, err := run(ctx, l.file.Host, line); err != nil {
		return fmt.Errorf("release the lock %s on %s: %w (release it with: clusterctl force-unlock %s SPEC)", l.Info.ID, l.Info.Host, err, l.Info.ID)
	}
	return nil
}

// Read returns the lock file's holder, or nil when nobody holds it.
func (f File) Read(ctx context.Context) (*Info, error) {
	path := host.Quote(f.path())
	out, err := run(ctx, f.Host, "if [ -e "+path+" ]; then echo "+markHeld+"; "+showHeld(path)+"; else echo "+markGone+"; fi")
	if err != nil {
		return nil, fmt.Errorf("read the lock: %w", err)
	}
	head, body, _ := strings.Cut(out, "\n")
	switch head {
	case markGone:
		return nil, nil
	case markHeld:
		i, err := parseInfo(body)
		if err != nil {
			return nil, fmt.Errorf("read the lock %s: %w", f.path(), err)
		}
		return &i, nil
	}
	return nil, fmt.Errorf("read the lock: unexpected answer %.80q", out)
}

// ErrNotHeld: force-unlock was given an ID that does not hold the lock.
var ErrNotHeld = errors.New("no such lock")

// ForceUnlock removes the lock when it has the given ID; the ID is asked
// for so a typo or an old command line cannot remove somebody else's lock.
func (f File) ForceUnlock(ctx context.Context, id string) (*Info, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("%q is not a lock ID (the error that refused your command names it)", id)
	}
	holder, err := f.Read(ctx)
	if err != nil {
		return nil, err
	}
	if holder == nil {
		return nil, fmt.Errorf("%w: the cluster is not locked", ErrNotHeld)
	}
	if holder.ID != id {
		return nil, fmt.Errorf("%w: the lock's ID is %s (held by %s), not %s", ErrNotHeld, holder.ID, holder, id)
	}
	path := host.Quote(f.path())
	line := "if grep -qF " + host.Quote(`"id":"`+id+`"`) + " " + path + "; then rm -f " + path + "; else echo " + markNotOurs + "; fi"
	out, err := run(ctx, f.Host, line)
	if err != nil {
		return nil, fmt.Errorf("remove the lock: %w", err)
	}
	if strings.HasPrefix(out, markNotOurs) {
		return nil, fmt.Errorf("%w: the lock changed hands while removing it; look again", ErrNotHeld)
	}
	return holder, nil
}

// showHeld prints the lock file's modification time (the heartbeat, in
// seconds since the epoch) and then its content.
func showHeld(path string) string { return "stat -c %Y " + path + " && cat " + path }

func parseInfo(body string) (Info, error) {
	mtime, doc, _ := strings.Cut(strings.TrimSpace(body), "\n")
	secs, err := strconv.ParseInt(strings.TrimSpace(mtime), 10, 64)
	if err != nil {
		return Info{}, fmt.Errorf("lock file time %q: %w", mtime, err)
	}
	var i Info
	if err := json.Unmarshal([]byte(doc), &i); err != nil {
		return Info{}, err
	}
	i.Heartbeat = time.Unix(secs, 0).UTC()
	if !idRE.MatchString(i.ID) {
		return Info{}, fmt.Errorf("lock ID %q is malformed", i.ID)
	}
	return i, nil
}

func run(ctx context.Context, h host.Host, line string) (string, error) {
	var out bytes.Buffer
	err := h.Run(ctx, host.Cmd{Line: line, Stdout: &out})
	return out.String(), err
}

func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	machine, err := os.Hostname()
	if err != nil {
		machine = "unknown"
	}
	return name + "@" + machine
}
