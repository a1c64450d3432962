package bench

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

func TestStatTimes(t *testing.T) {
	ppid, self, reaped, err := statTimes(readTestdata(t, "stat-caddy.txt"))
	if err != nil || ppid != 1 || self != (1234+567)*10*time.Millisecond || reaped != 0 {
		t.Errorf("stat-caddy.txt: ppid %d, self %v, reaped %v, %v", ppid, self, reaped, err)
	}
	// A postmaster: its exited backends' time is in cutime and cstime
	// (fields 16 and 17); the name has spaces and parentheses.
	const postmaster = "900 (postgres (x) y) S 42 900 900 0 -1 4194560 100 5000 0 0 150 50 7000 3000 20 0 1 0 100 1 1 1"
	ppid, self, reaped, err = statTimes([]byte(postmaster))
	if err != nil || ppid != 42 || self != 2*time.Second || reaped != 100*time.Second {
		t.Errorf("postmaster: ppid %d, self %v, reaped %v, %v", ppid, self, reaped, err)
	}
	for _, bad := range []string{
		"",
		"12 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 3", // no cstime
		"12 (x) S p 1 1 0 -1 0 0 0 0 0 1 2 3 4",
		"12 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 -3 4",
		"12 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 3 x",
	} {
		if _, _, _, err := statTimes([]byte(bad)); err == nil {
			t.Errorf("statTimes(%q) succeeded", bad)
		}
	}
}

func TestTreeCPUSums(t *testing.T) {
	s := time.Second
	procs := map[int]procStat{
		1:   {ppid: 0, self: 100 * s},               // init: not in the tree
		900: {ppid: 1, self: 2 * s, reaped: 10 * s}, // the postmaster and the backends it reaped
		901: {ppid: 900, self: 3 * s},               // checkpointer
		902: {ppid: 900, self: 4 * s, reaped: s},    // a backend and a parallel worker it reaped
		903: {ppid: 902, self: 5 * s},               // a grandchild
		950: {ppid: 1, self: 50 * s},                // another server
	}
	got, err := treeCPU(procs, 900)
	if want := 25 * s; err != nil || got != want {
		t.Errorf("treeCPU = %v, %v; want %v", got, err, want)
	}
	if _, err := treeCPU(procs, 4242); err == nil {
		t.Error("treeCPU of a process that is not running succeeded")
	}
}

// TestTreeCPUCountsReapedChildren: a child that burned CPU and was
// waited for is in its parent's tree, though it no longer runs.
func TestTreeCPUCountsReapedChildren(t *testing.T) {
	if runtime.GOOS != "linux" {
		if _, err := TreeCPU(os.Getpid()); err == nil {
			t.Fatal("TreeCPU succeeded without /proc")
		}
		return
	}
	me := os.Getpid()
	tree0, err := TreeCPU(me)
	if err != nil {
		t.Fatal(err)
	}
	self0, err := ReadProc(0)
	if err != nil {
		t.Fatal(err)
	}
	// The shell counts to a bound, so it burns CPU without timing.
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	tree1, err := TreeCPU(me)
	if err != nil {
		t.Fatal(err)
	}
	self1, err := ReadProc(0)
	if err != nil {
		t.Fatal(err)
	}
	// Ticks are 10 ms: allow two of rounding.
	if gotChild := (tree1 - tree0) - (self1.CPU - self0.CPU); child < 50*time.Millisecond || gotChild < child-20*time.Millisecond {
		t.Errorf("the child used %v of CPU; the tree's time less this process's own grew by %v", child, gotChild)
	}
}
