//go:build linux

package modbus

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// busLock is the exclusive advisory lock that makes an RTU the one master of its serial
// device: flock(2) LOCK_EX on a descriptor of the device opened for the lock alone, held
// until release. flock locks belong to the open file description, so two opens in one
// process conflict as two processes do; the kernel drops the lock when the descriptor is
// closed, also when the process dies. The lock is on the device node's inode: every path
// to that node (symlinks such as /dev/serial/by-id/..., bind mounts of /dev) meets it; a
// second node made with mknod for the same device number does not. It is advisory: it
// stops programs that take it (OpenRTU, flock(1)), not a terminal program that merely
// opens the device.
type busLock struct {
	fd int
}

// lockBus opens path (the device, symlinks resolved) read-only, without making it a
// controlling terminal and without waiting for carrier (O_NONBLOCK), and takes
// LOCK_EX|LOCK_NB on it. Another holder of the lock (EWOULDBLOCK), or an exclusive open
// of the terminal by another process (TIOCEXCL: open fails with EBUSY unless the caller
// has CAP_SYS_ADMIN), gives a *BusInUseError for device naming the holders. Other errors
// are the system's (e.g. ENOENT, EACCES).
func lockBus(device, path string) (*busLock, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.EBUSY {
		return nil, busInUse(device, path, err)
	}
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		_ = unix.Close(fd) // before looking for holders: not to be found among them
		if err == unix.EWOULDBLOCK {
			return nil, busInUse(device, path, err)
		}
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return &busLock{fd: fd}, nil
}

// release closes the lock's descriptor, which drops the lock.
func (l *busLock) release() error {
	return unix.Close(l.fd)
}

// busHolders finds who holds the device at path: the processes listed in /proc/locks
// with a lock on its inode (matched by the device number of its filesystem and its inode
// number), or, when none is listed, the processes with a descriptor open on it (a scan
// of /proc/*/fd, which only sees processes this one may inspect). Nil when none is found.
// Cost: one read of /proc/locks (well under 1 ms); the scan reads one symlink per open
// descriptor of every process (a few ms on a gateway-sized system).
func busHolders(path string) []BusHolder {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil
	}
	var pids []int
	if locks, err := os.ReadFile("/proc/locks"); err == nil {
		pids = lockHolders(locks, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	}
	if len(pids) == 0 {
		pids = openHolders(path)
	}
	holders := make([]BusHolder, 0, len(pids))
	for _, pid := range pids {
		holders = append(holders, BusHolder{PID: pid, Command: processCommand(pid)})
	}
	if len(holders) == 0 {
		return nil
	}
	return holders
}

// lockHolders returns the pids (ascending, each once) that hold a lock on the inode ino
// of the filesystem with device number major:minor, from the text of /proc/locks. A
// line is "id: TYPE ADVISORY|MANDATORY READ|WRITE pid maj:min:ino start end", with maj
// and min in hex (fs/locks.c, lock_get_status: "%d %02x:%02x:%lu"); lines of waiters
// ("id: -> TYPE ...") are skipped, as are pids the kernel could not translate into
// this pid namespace (0 or -1, also the pid field of OFD locks).
func lockHolders(locks []byte, major, minor uint32, ino uint64) []int {
	var pids []int
	for line := range bytes.Lines(locks) {
		f := strings.Fields(string(line))
		if len(f) < 6 || f[1] == "->" {
			continue
		}
		id := strings.Split(f[5], ":")
		if len(id) != 3 {
			continue
		}
		maj, err1 := strconv.ParseUint(id[0], 16, 32)
		mnr, err2 := strconv.ParseUint(id[1], 16, 32)
		in, err3 := strconv.ParseUint(id[2], 10, 64)
		pid, err4 := strconv.Atoi(f[4])
		if err := errors.Join(err1, err2, err3, err4); err != nil || pid <= 0 {
			continue
		}
		if uint32(maj) == major && uint32(mnr) == minor && in == ino && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// openHolders returns the pids (ascending) of the processes with a descriptor open on
// path (symlinks resolved), from the links in /proc/<pid>/fd; processes this one may
// not inspect are skipped.
func openHolders(path string) []int {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && target == path {
				pids = append(pids, pid)
				break
			}
		}
	}
	slices.Sort(pids)
	return pids
}

// processCommand is the command line of pid (see BusHolder.Command).
func processCommand(pid int) string {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(bytes.Trim(b, "\x00")) > 0 {
		return formatCommand(b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		return "[" + strings.TrimSpace(string(b)) + "]"
	}
	return ""
}
