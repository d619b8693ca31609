package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The takeover rule: only this machine's own lock, whose process is gone.
func TestDeadOwnHolder(t *testing.T) {
	self := Info{Owner: "ubuntu@ubuntu", MachineID: "aaaa", PID: 100, ProcStart: 5000}
	procs := map[int]uint64{42: 7000} // pid 42 runs, started at 7000
	proc := func(pid int) (uint64, bool, error) {
		s, ok := procs[pid]
		return s, ok, nil
	}
	cases := []struct {
		name   string
		holder Info
		want   bool
	}{
		{"same user@host, other machine, dead pid", Info{Owner: "ubuntu@ubuntu", MachineID: "bbbb", PID: 41, ProcStart: 6000}, false},
		{"same machine, dead pid", Info{Owner: "ubuntu@ubuntu", MachineID: "aaaa", PID: 41, ProcStart: 6000}, true},
		{"same machine, pid reused by a later process", Info{Owner: "ubuntu@ubuntu", MachineID: "aaaa", PID: 42, ProcStart: 6000}, true},
		{"same machine, live holder", Info{Owner: "ubuntu@ubuntu", MachineID: "aaaa", PID: 42, ProcStart: 7000}, false},
		{"same machine, other user", Info{Owner: "root@ubuntu", MachineID: "aaaa", PID: 41, ProcStart: 6000}, false},
		{"old lock file: no machine ID", Info{Owner: "ubuntu@ubuntu", PID: 41}, false},
		{"old lock file: no start time", Info{Owner: "ubuntu@ubuntu", MachineID: "aaaa", PID: 41}, false},
	}
	for _, c := range cases {
		if got := deadOwnHolder(c.holder, self, proc); got != c.want {
			t.Errorf("%s: taken over = %v, want %v", c.name, got, c.want)
		}
	}
	broken := func(int) (uint64, bool, error) { return 0, true, errors.New("permission denied") }
	if deadOwnHolder(Info{Owner: "ubuntu@ubuntu", MachineID: "aaaa", PID: 41, ProcStart: 6000}, self, broken) {
		t.Error("a process that cannot be looked at is taken for dead")
	}
}

func TestProcStart(t *testing.T) {
	start, running, err := procStart(os.Getpid())
	if err != nil || !running || start == 0 {
		t.Fatalf("procStart(self) = %d, %v, %v", start, running, err)
	}
	again, _, _ := procStart(os.Getpid())
	if again != start {
		t.Fatalf("start time moved: %d then %d", start, again)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if _, running, err := procStart(dead.Process.Pid); running || err != nil {
		t.Fatalf("a finished process runs: %v, %v", running, err)
	}
}

// Two machines cloned from one image (same user@hostname) never take each
// other's lock, even when the holder's PID is not running here.
func TestAcquireOtherMachineSameOwner(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	theirs, err := f.Acquire(ctx, Options{Command: "apply", Owner: "ubuntu@ubuntu", MachineID: "bbbb", PID: dead.Process.Pid, ProcStart: 1})
	if err != nil {
		t.Fatal(err)
	}
	theirs.stop()
	<-theirs.done
	if _, err := f.Acquire(ctx, Options{Command: "apply", Owner: "ubuntu@ubuntu", MachineID: "aaaa"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire over another machine's lock = %v, want ErrLocked", err)
	}
	// The same lock seen from its own machine: taken over.
	l, err := f.Acquire(ctx, Options{Command: "apply", Owner: "ubuntu@ubuntu", MachineID: "bbbb"})
	if err != nil {
		t.Fatalf("Acquire over this machine's dead holder: %v", err)
	}
	_ = l.Release(ctx)
}

// A live PID that now runs another process (started at another time) is
// a reused PID: the holder is gone.
func TestAcquireReusedPID(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	start, _, err := procStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	old, err := f.Acquire(ctx, Options{Command: "apply", Owner: "ann@laptop", MachineID: "aaaa", PID: os.Getpid(), ProcStart: start + 1})
	if err != nil {
		t.Fatal(err)
	}
	old.stop()
	<-old.done
	l, err := f.Acquire(ctx, Options{Command: "apply", Owner: "ann@laptop", MachineID: "aaaa"})
	if err != nil {
		t.Fatalf("Acquire over a reused PID: %v", err)
	}
	// And this live holder, with its true start time, is held.
	if _, err := f.Acquire(ctx, Options{Command: "apply", Owner: "ann@laptop", MachineID: "aaaa"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire over a live holder = %v, want ErrLocked", err)
	}
	_ = l.Release(ctx)
}

func TestMachineIDFallback(t *testing.T) {
	file := filepath.Join(t.TempDir(), "clusterctl", "machine-id")
	a, err := persistedID(file)
	if err != nil || len(a) != 32 {
		t.Fatalf("persistedID = %q, %v", a, err)
	}
	if b, _ := persistedID(file); b != a {
		t.Fatalf("the persisted ID changed: %q then %q", a, b)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v, want mode 0600", file, st, err)
	}
	if h := hashID(a); len(h) != 32 || strings.Contains(h, a) {
		t.Fatalf("hashID = %q", h)
	}
	if readID(writeTemp(t, "00000000000000000000000000000000\n")) != "" || readID(writeTemp(t, "\n")) != "" {
		t.Error("an empty or zero machine ID is used")
	}
}

func writeTemp(t *testing.T, s string) string {
	f := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// The digest of the record read under the lock is written into the lock
// file while it is ours, and never into somebody else's.
func TestNoteRecord(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	l, err := f.Acquire(ctx, Options{Command: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Info.MachineID == "" || l.Info.ProcStart == 0 {
		t.Errorf("holder %+v lacks its machine ID or start time", l.Info)
	}
	digest := strings.Repeat("ab", 32)
	if err := l.NoteRecord(ctx, digest); err != nil {
		t.Fatal(err)
	}
	info, err := f.Read(ctx)
	if err != nil || info == nil || info.Record != digest || info.ID != l.Info.ID || info.ProcStart != l.Info.ProcStart {
		t.Fatalf("Read = %+v, %v; want the record digest noted", info, err)
	}
	if st, err := os.Stat(filepath.Join(f.Dir, "lock.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v %v, want mode 0600", st, err)
	}
	if _, err := f.ForceUnlock(ctx, l.Info.ID); err != nil {
		t.Fatal(err)
	}
	other, err := f.Acquire(ctx, Options{Command: "reset", Owner: "bob@ci"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.NoteRecord(ctx, digest); err == nil || !strings.Contains(err.Error(), "no longer held") {
		t.Fatalf("NoteRecord on a lost lock = %v", err)
	}
	if info, _ := f.Read(ctx); info == nil || info.ID != other.Info.ID || info.Record != "" {
		t.Fatalf("somebody else's lock was rewritten: %+v", info)
	}
	_ = other.Release(ctx)
	_ = l.Release(ctx)
}
