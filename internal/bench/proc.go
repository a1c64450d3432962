package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux reports it as 100 on every architecture Go supports.
const clockTicks = 100

// ErrNoProc is returned where /proc is not available (not Linux).
var ErrNoProc = errors.New("bench: /proc is not available")

// ProcSample is one reading of a process's counters.
type ProcSample struct {
	// CPU is user plus system time since the process started.
	CPU time.Duration
	Memory
}

// Memory is the resident set of a process, in bytes, as
// /proc/<pid>/status reports it.
type Memory struct {
	// RSS is the resident set size now (VmRSS); HWM its peak since the
	// process started or since the peak was last reset (VmHWM,
	// ResetPeakRSS).
	RSS, HWM int64
	// RSS is the sum of three parts, now. Anon is anonymous memory
	// (RssAnon): the heap, stacks and other private pages only the
	// process holds. File is file-backed pages (RssFile): the executable
	// and memory-mapped files, page cache that the kernel shares with
	// other mappings and can drop and read back. Shmem is shared memory
	// (RssShmem). The kernel keeps no peak of the parts.
	Anon, File, Shmem int64
}

// ParseStat returns utime+stime from the contents of /proc/<pid>/stat.
// The command name (field 2) may contain spaces and parentheses, so fields
// are counted from the last ')'.
func ParseStat(b []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, errors.New("bench: stat: no ')' after the command name")
	}
	// After ") " come field 3 (state) onwards; utime and stime are fields
	// 14 and 15, that is the 12th and 13th here.
	fields := strings.Fields(string(b[end+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("bench: stat: %d fields after the command name, want at least 13", len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bench: stat: bad time field %q", f)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// statusFields are the lines ParseStatus reads, all required.
var statusFields = [...]string{"VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"}

// ParseStatus returns the resident set lines (VmRSS, VmHWM, RssAnon,
// RssFile, RssShmem), in bytes, from the contents of /proc/<pid>/status.
// Every one of them must be present (RssAnon and the others since
// Linux 4.5).
func ParseStatus(b []byte) (Memory, error) {
	var m Memory
	dst := [len(statusFields)]*int64{&m.RSS, &m.HWM, &m.Anon, &m.File, &m.Shmem}
	var got [len(statusFields)]bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		i := slices.Index(statusFields[:], name)
		if i < 0 {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("bench: status: unexpected %s line %q", name, sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64>>10 {
			return Memory{}, fmt.Errorf("bench: status: bad %s value %q", name, f[0])
		}
		*dst[i], got[i] = n<<10, true
	}
	if err := sc.Err(); err != nil {
		return Memory{}, err
	}
	for i, ok := range got {
		if !ok {
			return Memory{}, fmt.Errorf("bench: status: no %s line", statusFields[i])
		}
	}
	return m, nil
}

// ReadProc samples the process pid (0: this process).
func ReadProc(pid int) (ProcSample, error) {
	dir := procDir(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if errors.Is(err, os.ErrNotExist) && pid == 0 {
		return ProcSample{}, ErrNoProc
	}
	if err != nil {
		return ProcSample{}, err
	}
	cpu, err := ParseStat(stat)
	if err != nil {
		return ProcSample{}, err
	}
	m, err := readMemory(pid)
	if err != nil {
		return ProcSample{}, err
	}
	return ProcSample{CPU: cpu, Memory: m}, nil
}

// readMemory reads the resident set of pid (0: this process).
func readMemory(pid int) (Memory, error) {
	status, err := os.ReadFile(procDir(pid) + "/status")
	if errors.Is(err, os.ErrNotExist) && pid == 0 {
		return Memory{}, ErrNoProc
	}
	if err != nil {
		return Memory{}, err
	}
	return ParseStatus(status)
}

// ResetPeakRSS resets the process's VmHWM to its current RSS (writing 5
// to /proc/<pid>/clear_refs), so that the next sample's HWM is the peak of
// what ran in between.
func ResetPeakRSS(pid int) error {
	return os.WriteFile(procDir(pid)+"/clear_refs", []byte("5"), 0)
}

func procDir(pid int) string {
	if pid == 0 {
		return "/proc/self"
	}
	return "/proc/" + strconv.Itoa(pid)
}

// statTimes reads, from the contents of /proc/<pid>/stat, the parent's
// pid, the process's own CPU time (utime+stime) and that of its children
// it has waited for (cutime+cstime).
func statTimes(b []byte) (ppid int, self, reaped time.Duration, err error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, 0, 0, errors.New("bench: stat: no ')' after the command name")
	}
	// Fields 3 onwards: ppid is field 4, utime, stime, cutime and cstime
	// are fields 14 to 17 (indexes 1 and 11 to 14 here).
	fields := strings.Fields(string(b[end+1:]))
	if len(fields) < 15 {
		return 0, 0, 0, fmt.Errorf("bench: stat: %d fields after the command name, want at least 15", len(fields))
	}
	if ppid, err = strconv.Atoi(fields[1]); err != nil || ppid < 0 {
		return 0, 0, 0, fmt.Errorf("bench: stat: bad parent pid %q", fields[1])
	}
	var ticks [4]int64
	for i, f := range fields[11:15] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, 0, fmt.Errorf("bench: stat: bad time field %q", f)
		}
		ticks[i] = n
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
	return ppid, tick(ticks[0] + ticks[1]), tick(ticks[2] + ticks[3]), nil
}

// procStat is one process of a /proc scan.
type procStat struct {
	ppid         int
	self, reaped time.Duration
}

// TreeCPU returns the CPU time (user plus system) of the process pid and
// of all its descendants, those still running and those that exited and
// were waited for (a process's cutime and cstime hold its reaped
// children's): the cost of a server that forks a process per connection,
// such as PostgreSQL's postmaster, including connections that ended.
// The difference of two readings is the tree's CPU in between, up to a
// descendant that exits between being read and its parent being read.
func TreeCPU(pid int) (time.Duration, error) {
	entries, err := os.ReadDir("/proc")
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNoProc
	}
	if err != nil {
		return 0, err
	}
	procs := map[int]procStat{}
	for _, en := range entries {
		p, err := strconv.Atoi(en.Name())
		if err != nil || p <= 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + en.Name() + "/stat")
		if err != nil {
			continue // exited since the directory was read
		}
		ppid, self, reaped, err := statTimes(b)
		if err != nil {
			return 0, err
		}
		procs[p] = procStat{ppid: ppid, self: self, reaped: reaped}
	}
	return treeCPU(procs, pid)
}

// treeCPU sums the CPU of root and its descendants in procs.
func treeCPU(procs map[int]procStat, root int) (time.Duration, error) {
	if _, ok := procs[root]; !ok {
		return 0, fmt.Errorf("bench: process %d is not running", root)
	}
	kids := map[int][]int{}
	for p, s := range procs {
		kids[s.ppid] = append(kids[s.ppid], p)
	}
	var total time.Duration
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		s := procs[p]
		total += s.self + s.reaped
		queue = append(queue, kids[p]...)
	}
	return total, nil
}
