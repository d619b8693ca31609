package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provision/host/hosttest"
)

// The lock runs real shell commands on a local sh host in a temp dir.
func localFile(t *testing.T) File {
	dir := t.TempDir()
	return File{Host: hosttest.NewLocal("h1", dir, nil), HostName: "h1", Dir: filepath.Join(dir, "clusterctl")}
}

func TestAcquireReleaseAcquire(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	l, err := f.Acquire(ctx, Options{Command: "apply", Owner: "ann@laptop", PID: 42})
	if err != nil {
		t.Fatal(err)
	}
	info, err := f.Read(ctx)
	if err != nil || info == nil || info.ID != l.Info.ID || info.Owner != "ann@laptop" || info.PID != 42 || info.Host != "h1" {
		t.Fatalf("Read = %+v, %v; want the holder %+v", info, err, l.Info)
	}
	if st, err := os.Stat(filepath.Join(f.Dir, "lock.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v %v, want mode 0600", st, err)
	}
	_, err = f.Acquire(ctx, Options{Command: "apply", Owner: "bob@ci"})
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLocked) || held.Stale {
		t.Fatalf("second Acquire = %v, want a fresh *HeldError", err)
	}
	for _, want := range []string{"ann@laptop", "pid 42", "apply", l.Info.ID, "host h1", "wait for it to finish"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if info, err := f.Read(ctx); err != nil || info != nil {
		t.Fatalf("after release Read = %+v, %v; want unlocked", info, err)
	}
	l2, err := f.Acquire(ctx, Options{Command: "reset"})
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	if l2.Info.ID == l.Info.ID {
		t.Fatal("lock IDs repeat")
	}
	_ = l2.Release(ctx)
}

// Many takers at once: exactly one wins, every other is told who.
func TestAcquireRace(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	var mu sync.Mutex
	var won []*Lock
	var lost int
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := f.Acquire(ctx, Options{Command: "apply"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, l)
			case errors.Is(err, ErrLocked):
				lost++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 || lost != 7 {
		t.Fatalf("%d won, %d refused; want 1 and 7", len(won), lost)
	}
	_ = won[0].Release(ctx)
}

func TestStaleLockAndForceUnlock(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	past := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l, err := f.Acquire(ctx, Options{Command: "apply", Owner: "gone@ci", Now: func() time.Time { return past }})
	if err != nil {
		t.Fatal(err)
	}
	l.stop() // the holder died: no more heartbeats, no release
	<-l.done

	_, err = f.Acquire(ctx, Options{Command: "apply"})
	var held *HeldError
	if !errors.As(err, &held) || !held.Stale {
		t.Fatalf("Acquire over a dead holder = %v, want a stale *HeldError", err)
	}
	if !strings.Contains(err.Error(), "STALE") || !strings.Contains(err.Error(), "clusterctl force-unlock "+l.Info.ID) {
		t.Errorf("error %q does not name the stale lock and how to release it", err)
	}

	for _, bad := range []string{"", "x", "'; rm -rf / #", "abcdefgh12345678"} {
		if _, err := f.ForceUnlock(ctx, bad); err == nil {
			t.Errorf("ForceUnlock(%q) released a lock it does not name", bad)
		}
	}
	if info, _ := f.Read(ctx); info == nil {
		t.Fatal("a wrong ID removed the lock")
	}
	holder, err := f.ForceUnlock(ctx, l.Info.ID)
	if err != nil || holder.Owner != "gone@ci" {
		t.Fatalf("ForceUnlock = %+v, %v", holder, err)
	}
	if _, err := f.ForceUnlock(ctx, l.Info.ID); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second ForceUnlock = %v, want ErrNotHeld", err)
	}
	l2, err := f.Acquire(ctx, Options{Command: "apply"})
	if err != nil {
		t.Fatalf("Acquire after force-unlock: %v", err)
	}
	_ = l2.Release(ctx)
}

// A holder whose lock was force-unlocked and retaken must not remove the
// new holder's lock when it finally releases.
func TestReleaseKeepsSomebodyElsesLock(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	old, err := f.Acquire(ctx, Options{Command: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ForceUnlock(ctx, old.Info.ID); err != nil {
		t.Fatal(err)
	}
	cur, err := f.Acquire(ctx, Options{Command: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Release(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := f.Read(ctx)
	if err != nil || info == nil || info.ID != cur.Info.ID {
		t.Fatalf("after the old holder's release: %+v, %v; want %s still held", info, err, cur.Info.ID)
	}
	_ = cur.Release(ctx)
}

func TestGarbageLockFile(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Dir, "lock.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := f.Acquire(ctx, Options{Command: "apply"})
	if err == nil || !strings.Contains(err.Error(), "unreadable") || !strings.Contains(err.Error(), "lock.json") {
		t.Fatalf("Acquire over garbage = %v, want an error naming the unreadable file", err)
	}
	if _, err := f.Read(ctx); err == nil {
		t.Fatal("Read of garbage succeeded")
	}
}

// The heartbeat keeps the lock fresh, and notices when it is taken away.
func TestHeartbeat(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); clock = clock.Add(time.Minute); return clock }
	warned := make(chan string, 10)
	l, err := f.Acquire(ctx, Options{Command: "apply", Now: now, Every: 20 * time.Millisecond, Warn: func(m string) { warned <- m }})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := f.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Heartbeat.After(l.Info.Started) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat never moved")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.ForceUnlock(ctx, l.Info.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-warned:
		if !strings.Contains(m, "released by someone else") {
			t.Fatalf("warning %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("losing the lock was not noticed")
	}
	if l.Lost() == nil {
		t.Fatal("Lost() = nil after force-unlock")
	}
	if info, _ := f.Read(ctx); info != nil {
		t.Fatalf("the heartbeat recreated a force-unlocked lock: %+v", info)
	}
	_ = l.Release(ctx)
}

// A run killed on this machine leaves its lock behind; the next run here
// sees the holder's process is gone and takes the lock over. A holder on
// another machine (or still running) is never taken over.
func TestDeadLocalHolderIsTakenOver(t *testing.T) {
	ctx := context.Background()
	f := localFile(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	old, err := f.Acquire(ctx, Options{Command: "apply", PID: dead.Process.Pid, ProcStart: 1})
	if err != nil {
		t.Fatal(err)
	}
	old.stop() // killed: no heartbeat, no release
	<-old.done
	var warned []string
	l, err := f.Acquire(ctx, Options{Command: "apply", Warn: func(m string) { warned = append(warned, m) }})
	if err != nil {
		t.Fatalf("Acquire over a dead local holder: %v", err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "took over lock "+old.Info.ID) {
		t.Errorf("warnings %q", warned)
	}
	_ = l.Release(ctx)

	// The same dead pid, but another machine's: refused.
	other, err := f.Acquire(ctx, Options{Command: "apply", Owner: "ci@elsewhere", PID: dead.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	other.stop()
	<-other.done
	if _, err := f.Acquire(ctx, Options{Command: "apply"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire over another machine's holder = %v, want ErrLocked", err)
	}
	// A live local holder (this test process): refused.
	if _, err := f.ForceUnlock(ctx, other.Info.ID); err != nil {
		t.Fatal(err)
	}
	live, err := f.Acquire(ctx, Options{Command: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Acquire(ctx, Options{Command: "apply"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire over a live local holder = %v, want ErrLocked", err)
	}
	_ = live.Release(ctx)
}
