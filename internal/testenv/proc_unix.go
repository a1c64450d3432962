//go:build unix

package testenv

import (
	"os"
	"syscall"
)

// sysProcAttr puts the child in its own process group so that the whole group can be signalled,
// and (on Linux) kills it when the test process dies.
func sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(a)
	return a
}

// terminateGroup sends SIGTERM to p's process group.
func terminateGroup(p *os.Process) error {
	return syscall.Kill(-p.Pid, syscall.SIGTERM)
}

// killGroup sends SIGKILL to p's process group.
func killGroup(p *os.Process) error {
	return syscall.Kill(-p.Pid, syscall.SIGKILL)
}
