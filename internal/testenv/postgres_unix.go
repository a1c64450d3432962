//go:build unix

package testenv

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// osUser is a user a server runs as.
type osUser struct {
	name     string
	uid, gid uint32
}

// serverUser returns the user PostgreSQL runs as: nil (the current user)
// unless that is root, which PostgreSQL refuses; then "postgres" or else
// "nobody".
func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &osUser{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, errors.New("testenv: postgres: running as root, and there is neither a postgres nor a nobody user to run PostgreSQL as")
}

// chownTree gives dir and everything under it to u (nothing for nil).
func chownTree(dir string, u *osUser) error {
	if u == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(u.uid), int(u.gid))
	})
}

// runAs returns process attributes that run a one-shot command as u, in
// its own process group.
func runAs(u *osUser) *syscall.SysProcAttr {
	a := sysProcAttr()
	if u != nil {
		a.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid}
	}
	return a
}

// startAs is process.start for a process that runs as u (as process.start
// when u is nil): the same log, process group and death signal, with the
// credentials set before the program starts, so that the death signal
// survives the change of user.
func startAs(p *process, u *osUser) error {
	if u != nil {
		p.mu.Lock()
		p.attr, p.user = func() *syscall.SysProcAttr { return runAs(u) }, u.name
		p.mu.Unlock()
	}
	return p.start()
}

// interrupt asks the postmaster for a fast shutdown.
func interrupt(pid int) error { return syscall.Kill(pid, syscall.SIGINT) }

// killServer kills the postmaster and, where /proc lists them, its
// children, which PostgreSQL puts in process groups of their own, and
// waits until they are gone: a new server refuses to start while one of
// them still holds the old one's shared memory.
func killServer(p *process) error {
	pid := p.pid()
	if pid == 0 {
		return ErrNotRunning
	}
	kids := children(pid)
	err := p.kill()
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	deadline := time.Now().Add(stopTimeout)
	for _, k := range kids {
		for alive(k) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return err
}

// children lists the processes whose parent is pid, from /proc; nil
// where there is no /proc.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(child); ok && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// procStat reads the parent and state of pid from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}
