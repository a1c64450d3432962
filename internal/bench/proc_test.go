package bench

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		file string
		want time.Duration
	}{
		{"stat-caddy.txt", (1234 + 567) * 10 * time.Millisecond},
		{"stat-parens.txt", 3 * time.Second}, // "(my (odd) name)": fields counted from the last ')'
	}
	for _, tc := range tests {
		got, err := ParseStat(readTestdata(t, tc.file))
		if err != nil || got != tc.want {
			t.Errorf("%s: ParseStat = %v, %v; want %v", tc.file, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "12 caddy S 1", "12 (caddy) S 1 2 3", "12 (caddy) S 1 1 1 0 -1 0 0 0 0 0 x 5 0 0"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) succeeded", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		file string
		want Memory
	}{
		{"status-caddy.txt", Memory{RSS: 61240 << 10, HWM: 75432 << 10, Anon: 30120 << 10, File: 31120 << 10}},
		// Caddy with a memory-mapped store: most of the resident set is
		// file-backed.
		{"status-mapped-store.txt", Memory{RSS: 702140 << 10, HWM: 710348 << 10, Anon: 168304 << 10, File: 533724 << 10, Shmem: 112 << 10}},
	}
	for _, tc := range tests {
		got, err := ParseStatus(readTestdata(t, tc.file))
		if err != nil || got != tc.want {
			t.Errorf("%s: ParseStatus = %+v, %v; want %+v", tc.file, got, err, tc.want)
		}
		if got.RSS != got.Anon+got.File+got.Shmem {
			t.Errorf("%s: VmRSS %d is not RssAnon + RssFile + RssShmem", tc.file, got.RSS)
		}
	}
	const whole = "VmHWM:\t12 kB\nVmRSS:\t10 kB\nRssAnon:\t6 kB\nRssFile:\t4 kB\nRssShmem:\t0 kB\n"
	if _, err := ParseStatus([]byte(whole)); err != nil {
		t.Fatalf("ParseStatus of the minimal status: %v", err)
	}
	for _, bad := range []string{
		"Name:\tx\n",
		"VmHWM:\t12 kB\n",
		"VmHWM:\t12 kB\nVmRSS:\t10 kB\n", // before Linux 4.5: no RssAnon, RssFile, RssShmem
		strings.Replace(whole, "RssFile:\t4 kB\n", "", 1),
		strings.Replace(whole, "RssShmem:\t0 kB\n", "", 1),
		strings.Replace(whole, "10 kB", "many kB", 1),
		strings.Replace(whole, "12 kB", "12 MB", 1),
		strings.Replace(whole, "6 kB", "-6 kB", 1),
		strings.Replace(whole, "4 kB", "9223372036854775807 kB", 1), // overflows in bytes
		strings.Replace(whole, "6 kB", "6", 1),
	} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) succeeded", bad)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		if _, err := ReadProc(0); err == nil {
			t.Fatal("ReadProc succeeded without /proc")
		}
		return
	}
	// Burn a little CPU so that the counters move.
	before, err := ReadProc(0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<20) // and raise the peak
	for i := range buf {
		buf[i] = byte(i)
	}
	var after ProcSample
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		for x := 0; x < 1<<20; x++ {
			buf[(x*4099)%len(buf)]++
		}
		if after, err = ReadProc(0); err != nil {
			t.Fatal(err)
		}
		if after.CPU > before.CPU {
			break
		}
	}
	if after.CPU <= before.CPU || after.RSS <= 0 || after.HWM < after.RSS || after.HWM < 64<<20 {
		t.Errorf("before %+v, after %+v", before, after)
	}
	// The buffer is heap: anonymous. The test binary's code is file-backed.
	if after.Anon < 64<<20 || after.File <= 0 || after.RSS != after.Anon+after.File+after.Shmem {
		t.Errorf("resident set parts %+v: want anon ≥ 64 MiB, file > 0, and their sum the RSS", after.Memory)
	}
	buf = nil
	debug.FreeOSMemory()
	if err := ResetPeakRSS(os.Getpid()); err != nil {
		t.Fatalf("ResetPeakRSS: %v", err)
	}
	reset, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if reset.HWM >= after.HWM-32<<20 {
		t.Errorf("peak after reset %d, before %d: the 64 MiB buffer is still counted", reset.HWM, after.HWM)
	}
}

func TestMachine(t *testing.T) {
	m := ReadMachine()
	if m.CPUs != runtime.NumCPU() || m.Go != runtime.Version() || m.OS != runtime.GOOS {
		t.Errorf("machine %+v", m)
	}
	if got := cpuModel([]byte("processor\t: 0\nmodel name\t:  AMD   EPYC 7B13\nflags\t: x\n")); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := memTotalMiB([]byte("MemTotal:       24683656 kB\nMemFree: 1 kB\n")); got != 24105 {
		t.Errorf("memTotalMiB = %d", got)
	}
}
