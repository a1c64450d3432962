//go:build !unix

package testenv

import (
	"os"
	"syscall"
)

// sysProcAttr returns nil: process groups are a Unix feature.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminateGroup kills p: there is no portable graceful signal.
func terminateGroup(p *os.Process) error { return p.Kill() }

// killGroup kills p.
func killGroup(p *os.Process) error { return p.Kill() }
