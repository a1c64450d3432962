package testenv

import "syscall"

// setDeathSignal makes the kernel kill the child when the test process goes away without
// running its cleanups (for example on a test timeout).
func setDeathSignal(a *syscall.SysProcAttr) {
	a.Pdeathsig = syscall.SIGKILL
}
