package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
)

// TB is the part of testing.TB the environment needs. *testing.T, *testing.B and *testing.F
// satisfy it; programs use a [Scope].
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// failer is implemented by testing.TB. When the TB reports a failure at cleanup time, components
// dump the tail of their logs through Logf.
type failer interface {
	Failed() bool
}

// failed reports whether tb knows it failed.
func failed(tb TB) bool {
	f, ok := tb.(failer)
	return ok && f.Failed()
}

// Scope is a [TB] for programs such as the loopback demo: it logs through a function, hands out
// temporary directories under one root and runs the registered cleanups, last first, on Close.
type Scope struct {
	logf func(format string, args ...any)

	mu       sync.Mutex
	root     string
	n        int
	cleanups []func()
	closed   bool
}

// NewScope returns a Scope that logs through logf (nil discards) and keeps its temporary
// directories under a new directory in os.TempDir.
func NewScope(logf func(format string, args ...any)) (*Scope, error) {
	root, err := os.MkdirTemp("", "mdmauth-testenv-")
	if err != nil {
		return nil, fmt.Errorf("testenv: scope: %w", err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Scope{logf: logf, root: root}, nil
}

// Helper does nothing; it exists to satisfy [TB].
func (s *Scope) Helper() {}

// Logf logs through the function given to NewScope.
func (s *Scope) Logf(format string, args ...any) { s.logf(format, args...) }

// Cleanup registers f to run on Close. Functions run last registered first.
func (s *Scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// TempDir returns a new directory under the scope's root. Like testing.TB's TempDir it does not
// return an error: it panics when the directory cannot be made.
func (s *Scope) TempDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		panic("testenv: TempDir on a closed Scope")
	}
	s.n++
	dir, err := os.MkdirTemp(s.root, strconv.Itoa(s.n)+"-")
	if err != nil {
		panic(fmt.Sprintf("testenv: TempDir: %v", err))
	}
	return dir
}

// Close runs the cleanups, last registered first, and removes the temporary directories.
// Closing twice is a no-op.
func (s *Scope) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cleanups := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()

	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	if err := os.RemoveAll(s.root); err != nil {
		return errors.Join(errors.New("testenv: removing scope directory"), err)
	}
	return nil
}

// RunScoped runs fn in a new Scope, closed when fn returns, with a context
// that SIGINT and SIGTERM end: the frame of a program that runs servers
// (a benchmark, a soak). envLog, when set, receives the environment's own
// messages.
func RunScoped(envLog func(format string, args ...any), fn func(ctx context.Context, s *Scope) error) error {
	scope, err := NewScope(envLog)
	if err != nil {
		return err
	}
	defer scope.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return fn(ctx, scope)
}
