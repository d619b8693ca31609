package lock

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// machineIDFiles hold the machine's ID on systemd and D-Bus systems.
var machineIDFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// MachineID names this machine in lock files: two laptops cloned from one
// image share user@hostname but not their machine ID. It is
// /etc/machine-id (or D-Bus's copy), else a random ID kept in the user's
// config dir (clusterctl/machine-id); "" when none can be had, and a lock
// without one is never taken over automatically. The raw ID is
// confidential (machine-id(5)): only a keyed hash of it is written.
func MachineID() string {
	for _, f := range machineIDFiles {
		if id := readID(f); id != "" {
			return hashID(id)
		}
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	id, err := persistedID(filepath.Join(dir, "clusterctl", "machine-id"))
	if err != nil {
		return ""
	}
	return hashID(id)
}

func readID(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	id := strings.TrimSpace(string(b))
	if len(id) < 16 || strings.Trim(id, "0") == "" { // empty or "uninitialized" images
		return ""
	}
	return id
}

// persistedID reads the ID kept in file, creating it once.
func persistedID(file string) (string, error) {
	if id := readID(file); id != "" {
		return id, nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another run created it meanwhile
		if id := readID(file); id != "" {
			return id, nil
		}
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	id := hex.EncodeToString(b)
	if _, err := f.WriteString(id + "\n"); err != nil {
		return "", err
	}
	return id, nil
}

// hashID is the application-specific ID machine-id(5) asks for.
func hashID(id string) string {
	m := hmac.New(sha256.New, []byte("clusterctl lock holder"))
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// procStart is the start time of process pid (clock ticks after boot,
// /proc/PID/stat field 22): with the PID it names one process, even once
// the PID is reused. running is false when no such process exists.
func procStart(pid int) (start uint64, running bool, err error) {
	if pid <= 0 {
		return 0, false, nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, true, err
	}
	// The command name (field 2) may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, true, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:])) // fields 3, 4, ...
	if len(fields) < 20 {
		return 0, true, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, true, fmt.Errorf("/proc/%d/stat starttime: %w", pid, err)
	}
	return start, true, nil
}

// deadOwnHolder reports whether holder's lock is this machine's own and
// its process is gone: same user@host and machine ID, and its PID runs no
// process, or one started at another time (the PID was reused). A lock
// written without a machine ID or start time (older clusterctl) is never
// ours. A process that cannot be looked at counts as running.
func deadOwnHolder(holder, self Info, proc func(pid int) (uint64, bool, error)) bool {
	if holder.Owner != self.Owner || holder.MachineID == "" || holder.MachineID != self.MachineID || holder.ProcStart == 0 {
		return false
	}
	start, running, err := proc(holder.PID)
	if err != nil {
		return false
	}
	return !running || start != holder.ProcStart
}
