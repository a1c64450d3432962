//go:build !unix

package testenv

import (
	"errors"
	"syscall"
)

// osUser is a user a server runs as; never needed here.
type osUser struct{}

// serverUser returns nil: the server runs as the current user.
func serverUser() (*osUser, error) { return nil, nil }

// chownTree does nothing.
func chownTree(string, *osUser) error { return nil }

// runAs returns the default process attributes.
func runAs(*osUser) *syscall.SysProcAttr { return sysProcAttr() }

// startAs is process.start.
func startAs(p *process, _ *osUser) error { return p.start() }

// interrupt is not available: Stop kills the server.
func interrupt(int) error { return errors.New("testenv: no signals here") }

// killServer kills the server.
func killServer(p *process) error { return p.kill() }
