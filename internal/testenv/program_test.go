package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

func TestStartProgram(t *testing.T) {
	bin, err := BuildPackage("testenv-serve", "./internal/testenv/testdata/serve")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(bin)
		os.Remove(filepath.Join(filepath.Dir(bin), ".testenv-serve.lock"))
	})
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := StartProgram(t, ProgramOptions{Name: "serve", Path: bin, Env: map[string]string{"LISTEN": addr}, ReadyURL: "http://" + addr + "/"})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	if pid <= 0 {
		t.Fatalf("PID() = %d while running", pid)
	}
	if runtime.GOOS == "linux" {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		if err != nil || filepath.Base(exe) != filepath.Base(bin) {
			t.Errorf("/proc/%d/exe = %q (%v), want the program", pid, exe, err)
		}
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if p.PID() != 0 {
		t.Errorf("PID() = %d after Stop", p.PID())
	}
	if err := p.Stop(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("second Stop = %v, want ErrNotRunning", err)
	}
}

func TestStartProgramNeedsReadyURL(t *testing.T) {
	if _, err := StartProgram(t, ProgramOptions{Name: "x", Path: "/bin/true"}); err == nil {
		t.Error("StartProgram without ReadyURL succeeded")
	}
}
