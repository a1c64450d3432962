package testenv

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestScopeRunsCleanupsLastFirst(t *testing.T) {
	var logged []string
	s, err := NewScope(func(format string, args ...any) { logged = append(logged, format) })
	if err != nil {
		t.Fatal(err)
	}
	dir := s.TempDir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	if dir2 := s.TempDir(); dir2 == dir {
		t.Fatal("TempDir returned the same directory twice")
	}
	var order []int
	s.Cleanup(func() { order = append(order, 1) })
	s.Cleanup(func() { order = append(order, 2) })
	s.Logf("hello")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("cleanup order = %v, want [2 1]", order)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temp dir still there after Close: %v", err)
	}
	if len(logged) != 1 || logged[0] != "hello" {
		t.Errorf("logged = %v", logged)
	}
}

// shProcess prepares /bin/sh -c script with its log in a temp dir.
func shProcess(t *testing.T, script string) *process {
	t.Helper()
	dir := t.TempDir()
	return newProcess("sh", logFile(dir, "sh"), "/bin/sh", []string{"-c", script}, os.Environ(), dir)
}

func TestStartErrorCarriesLogTail(t *testing.T) {
	p := shProcess(t, "echo first line; echo boom >&2; exit 3")
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	err := p.waitReady(10*time.Second, func(context.Context) error { return errors.New("not yet") })
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatalf("error = %v, want *StartError", err)
	}
	if !strings.Contains(se.LogTail, "boom") || !strings.Contains(se.Error(), "exited before becoming ready") {
		t.Errorf("StartError does not show the log or cause:\n%v", se)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	p := shProcess(t, "exec sleep 30")
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	start := time.Now()
	err := p.waitReady(300*time.Millisecond, func(context.Context) error { return errors.New("still booting") })
	if err == nil || !strings.Contains(err.Error(), "still booting") {
		t.Fatalf("error = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("waitReady took %s", time.Since(start))
	}
}

func TestKillTakesTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The shell starts a grandchild and waits; killing the group must end both.
	p := shProcess(t, "sleep 300 & echo $! > "+pidFile+"; wait")
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for child == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		time.Sleep(20 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("grandchild pid not written")
	}
	if !p.running() {
		t.Fatal("not running")
	}
	if err := p.kill(); err != nil {
		t.Fatal(err)
	}
	if p.running() {
		t.Fatal("still running after kill")
	}
	deadline = time.Now().Add(10 * time.Second)
	for syscall.Kill(child, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived the group kill", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.kill(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("second kill = %v, want ErrNotRunning", err)
	}
}

func TestStopIsGracefulAndRestartable(t *testing.T) {
	p := shProcess(t, `trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 0.05; done`)
	for i := 0; i < 2; i++ {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		if err := p.waitReady(10*time.Second, func(context.Context) error {
			if strings.Count(p.logs(), "up") <= i {
				return errors.New("no banner")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Count(p.logs(), "got TERM"); got != 2 {
		t.Errorf("log has %d TERM lines, want 2:\n%s", got, p.logs())
	}
	if got := strings.Count(p.logs(), "=== testenv: starting sh"); got != 2 {
		t.Errorf("log has %d start markers, want 2", got)
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port <= 0 || port > 65535 {
		t.Fatalf("port %d", port)
	}
	// Below the ephemeral range (outgoing connections cannot take it), never
	// twice, and free for TCP and UDP on every interface.
	seen := map[int]bool{port: true}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p >= ephemeralStart() || seen[p] {
			t.Fatalf("port %d: in the ephemeral range (from %d) or handed out twice", p, ephemeralStart())
		}
		seen[p] = true
	}
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if bindable(l.Addr().(*net.TCPAddr).Port) {
		t.Fatal("a port in use counted as bindable")
	}
}

func TestChildEnv(t *testing.T) {
	t.Setenv("TESTENV_DROP_ME", "x")
	t.Setenv("TESTENV_KEEP", "y")
	t.Setenv("TESTENV_SET", "old")
	env := childEnv([]string{"TESTENV_DROP"}, map[string]string{"TESTENV_SET": "new"})
	has := func(kv string) bool {
		for _, e := range env {
			if e == kv {
				return true
			}
		}
		return false
	}
	if has("TESTENV_DROP_ME=x") || !has("TESTENV_KEEP=y") || !has("TESTENV_SET=new") || has("TESTENV_SET=old") {
		t.Errorf("childEnv = %v", env)
	}
}
