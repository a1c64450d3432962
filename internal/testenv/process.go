package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// StartTimeout bounds how long a component may take to become ready.
	StartTimeout = 60 * time.Second

	// stopTimeout bounds how long a terminated process may take to exit before it is killed.
	stopTimeout = 15 * time.Second

	// tailLines is how many log lines errors and failure dumps include.
	tailLines = 60
)

// ErrNotRunning is returned when a process that is not running is asked to stop.
var ErrNotRunning = errors.New("testenv: process not running")

// StartError reports a component that did not become ready. It carries the end of the
// component's log.
type StartError struct {
	Name    string // component name, e.g. "nanomdm"
	Err     error  // what went wrong
	LogPath string // the component's log file
	LogTail string // the last lines of the log
}

// Error implements error.
func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "testenv: starting %s: %v", e.Name, e.Err)
	if e.LogTail != "" {
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", e.LogPath, e.LogTail)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *StartError) Unwrap() error { return e.Err }

// process runs one executable in its own process group, its stdout and stderr appended to a
// log file. It can be stopped and started again; every start appends to the same log.
type process struct {
	name    string
	path    string
	args    []string
	env     []string
	dir     string
	logPath string

	mu sync.Mutex
	// attr, when set, gives the process attributes instead of
	// sysProcAttr (another user, say, named by user in the log).
	attr func() *syscall.SysProcAttr
	user string
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
	err  error         // the current run's exit error, valid once done is closed
}

// newProcess prepares (but does not start) a process. env is the complete environment.
func newProcess(name, logPath, path string, args, env []string, dir string) *process {
	return &process{name: name, path: path, args: args, env: env, dir: dir, logPath: logPath}
}

// start starts the process. It fails when the process is already running.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("testenv: %s already running", p.name)
		}
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("testenv: %s log: %w", p.name, err)
	}
	// Only the name: arguments may carry secrets such as NanoMDM's API key.
	who, attr := p.name, sysProcAttr()
	if p.attr != nil {
		who, attr = p.name+" as "+p.user, p.attr()
	}
	fmt.Fprintf(f, "=== testenv: starting %s at %s\n", who, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = attr
	err = cmd.Start()
	f.Close() // the child holds its own copy
	if err != nil {
		return fmt.Errorf("testenv: starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// exited returns a channel closed when the current run exits, or nil when never started.
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// running reports whether the process has been started and has not exited.
func (p *process) running() bool {
	done := p.exited()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// exitErr returns the exit error of the last run (nil while running or after a clean exit).
func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// stop terminates the process group gracefully, killing it after stopTimeout.
func (p *process) stop() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return ErrNotRunning
	}
	select {
	case <-done:
		return ErrNotRunning
	default:
	}
	_ = terminateGroup(cmd.Process)
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
	}
	return p.kill()
}

// kill kills the process group at once and waits for the process to exit.
func (p *process) kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return ErrNotRunning
	}
	select {
	case <-done:
		// Once reaped, the group id may belong to someone else: do not signal it.
		return ErrNotRunning
	default:
	}
	_ = killGroup(cmd.Process)
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("testenv: %s (pid %d) did not exit after SIGKILL", p.name, cmd.Process.Pid)
	}
}

// logs returns the whole log.
func (p *process) logs() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	return string(b)
}

// tail returns the last n lines of the log.
func (p *process) tail(n int) string {
	return lastLines(p.logs(), n)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startErr wraps err in a *StartError carrying the log tail.
func (p *process) startErr(err error) error {
	return &StartError{Name: p.name, Err: err, LogPath: p.logPath, LogTail: p.tail(tailLines)}
}

// waitReady polls ready until it returns nil, the process exits, or timeout passes.
func (p *process) waitReady(timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := p.exited()
	var last error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		last = ready(attempt)
		cancelAttempt()
		if last == nil {
			return nil
		}
		select {
		case <-done:
			return p.startErr(fmt.Errorf("exited before becoming ready: %v", p.exitErr()))
		case <-ctx.Done():
			return p.startErr(fmt.Errorf("not ready after %s: %w", timeout, last))
		case <-tick.C:
		}
	}
}

// registerCleanup makes tb dump the log tail of p when it failed, then kill p's process group.
func registerCleanup(tb TB, p *process) {
	tb.Cleanup(func() {
		if failed(tb) {
			tb.Logf("--- last lines of %s log (%s) ---\n%s", p.name, p.logPath, p.tail(4*tailLines))
		}
		if err := p.kill(); err != nil && !errors.Is(err, ErrNotRunning) {
			tb.Logf("testenv: %v", err)
		}
	})
}

// childEnv returns the current environment without the variables whose names start with one
// of dropPrefixes, followed by set (sorted for a stable order).
func childEnv(dropPrefixes []string, set map[string]string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		for _, pfx := range dropPrefixes {
			if strings.HasPrefix(name, pfx) {
				continue next
			}
		}
		if _, ok := set[name]; ok {
			continue
		}
		env = append(env, kv)
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+set[k])
	}
	return env
}

// logFile returns the log path for a component in dir.
func logFile(dir, name string) string {
	return filepath.Join(dir, name+".log")
}
