// Command openwatch plays another user on a test host: started as root, it
// becomes uid/gid 65534, watches directories with inotify and opens every
// new file the moment it appears, as an attacker racing an upload would.
// An fd opened while a file was readable stays readable after a chmod, so
// when stdin closes it reads every fd it holds and prints, per file, whether
// the secret marker (its first argument) was in it.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

func main() {
	marker, dirs := os.Args[1], os.Args[2:]
	if err := becomeNobody(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		fmt.Println("error: inotify:", err)
		os.Exit(1)
	}
	w := &watcher{fd: fd, dirs: map[int32]string{}}
	for _, d := range dirs {
		if err := w.watch(d); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	go w.loop()
	fmt.Println("ready")
	<-done
	w.report(marker)
}

func becomeNobody() error {
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setgid(65534); err != nil {
		return err
	}
	return syscall.Setuid(65534)
}

type watcher struct {
	mu     sync.Mutex
	fd     int
	dirs   map[int32]string
	opened []*os.File
	seen   []string
}

func (w *watcher) watch(dir string) error {
	wd, err := syscall.InotifyAddWatch(w.fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w.dirs[int32(wd)] = dir
	return nil
}

func (w *watcher) loop() {
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(w.fd, buf)
		if err != nil {
			return
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			w.mu.Lock()
			p := filepath.Join(w.dirs[ev.Wd], name)
			if ev.Mask&syscall.IN_ISDIR != 0 {
				// A staging directory: follow it if it is still open to us.
				w.watch(p)
				w.mu.Unlock()
				continue
			}
			w.seen = append(w.seen, p)
			if f, err := os.Open(p); err == nil {
				w.opened = append(w.opened, f)
			}
			w.mu.Unlock()
		}
	}
}

func (w *watcher) report(marker string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	fmt.Fprintf(out, "seen %d files\n", len(w.seen))
	for _, f := range w.opened {
		b, _ := io.ReadAll(f)
		fmt.Fprintf(out, "opened %s bytes=%d secret=%v\n", f.Name(), len(b), strings.Contains(string(b), marker))
	}
}
