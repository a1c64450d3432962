package testenv

import (
	"errors"
	"path/filepath"
)

// ProgramOptions configures StartProgram.
type ProgramOptions struct {
	// Name names the program in logs and errors, e.g. "upstream".
	Name string
	// Path is the executable; Args its arguments.
	Path string
	Args []string
	// Env is added to the current environment.
	Env map[string]string
	// ReadyURL is polled until it answers 200.
	ReadyURL string
}

// Program is a helper process started by StartProgram, such as a benchmark's upstream server.
type Program struct {
	proc *process
}

// StartProgram runs an executable in its own process group, its output in a log file, and
// waits until ReadyURL answers 200. tb's cleanup kills it.
func StartProgram(tb TB, o ProgramOptions) (*Program, error) {
	tb.Helper()
	if o.Name == "" || o.Path == "" || o.ReadyURL == "" {
		return nil, errors.New("testenv: StartProgram: Name, Path and ReadyURL are required")
	}
	dir := tb.TempDir()
	p := newProcess(o.Name, logFile(dir, filepath.Base(o.Name)), o.Path, o.Args, childEnv(nil, o.Env), dir)
	registerCleanup(tb, p)
	if err := p.start(); err != nil {
		return nil, err
	}
	if err := p.waitReady(StartTimeout, probeOK(o.ReadyURL)); err != nil {
		_ = p.kill()
		return nil, err
	}
	return &Program{proc: p}, nil
}

// PID returns the process id, or 0 when the program is not running.
func (p *Program) PID() int { return p.proc.pid() }

// Stop terminates the program gracefully (killing it after a grace time).
func (p *Program) Stop() error { return p.proc.stop() }

// Logs returns the program's output so far.
func (p *Program) Logs() string { return p.proc.logs() }
