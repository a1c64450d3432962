package soak

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

// sampleSelf runs work between samples of this very process, read the way
// the soak reads Caddy: the goroutine profile over HTTP, /proc/<pid>/fd,
// /proc/<pid>/status, the size of a directory. It returns the judged
// series.
func sampleSelf(t *testing.T, steps int, work func(step int)) (gor, fds, anon []float64) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s := &Sampler{PID: os.Getpid(), AdminURL: srv.URL, StoreDir: t.TempDir(), Client: srv.Client()}
	for i := range steps {
		work(i)
		runtime.GC()
		x, err := s.Sample(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		gor = append(gor, float64(x.Goroutines))
		fds = append(fds, float64(x.FDs))
		anon = append(anon, float64(x.Anon))
	}
	return gor, fds, anon
}

// TestSamplerAndJudgeCatchARealLeak is the soak's growth check on a real
// leaking process, the test itself: each step leaks 10 goroutines, 6 open
// files and 6 MiB of touched memory. The same steps without the leak pass.
func TestSamplerAndJudgeCatchARealLeak(t *testing.T) {
	// Keep memory the leak does not hold from lingering in the resident
	// set between steps.
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	d := DefaultOptions()
	const steps = 18
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	block := make(chan struct{})
	var files []*os.File
	var held [][]byte
	t.Cleanup(func() {
		close(block)
		for _, f := range files {
			f.Close()
		}
	})
	work := func(leak bool) func(int) {
		return func(int) {
			for range 10 {
				done := make(chan struct{})
				go func() {
					if leak {
						<-block
					}
					close(done)
				}()
				if !leak {
					<-done
				}
			}
			for range 6 {
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				if leak {
					files = append(files, f)
				} else {
					f.Close()
				}
			}
			b := make([]byte, 6<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // resident, not just reserved
			}
			if leak {
				held = append(held, b)
			}
		}
	}

	gor, fds, anon := sampleSelf(t, steps, work(false))
	for _, g := range []Growth{
		JudgeGrowth("goroutines", UnitCount, gor, d.Goroutines),
		JudgeGrowth("fds", UnitCount, fds, d.FDs),
		JudgeGrowth("memory", UnitBytes, anon, d.Memory),
	} {
		t.Logf("without a leak, %s: %s → %s (limit %s)", g.Metric, fmtValue(g.First, g.Unit), fmtValue(g.Last, g.Unit), fmtValue(g.Limit, g.Unit))
		if !g.Pass {
			t.Errorf("without a leak, %s failed: %s", g.Metric, g.Reason)
		}
	}

	gor, fds, anon = sampleSelf(t, steps, work(true))
	for _, g := range []Growth{
		JudgeGrowth("goroutines", UnitCount, gor, d.Goroutines),
		JudgeGrowth("fds", UnitCount, fds, d.FDs),
		JudgeGrowth("memory", UnitBytes, anon, d.Memory),
	} {
		t.Logf("with a leak, %s: %s → %s (limit %s)", g.Metric, fmtValue(g.First, g.Unit), fmtValue(g.Last, g.Unit), fmtValue(g.Limit, g.Unit))
		if g.Pass {
			t.Errorf("a leak of %s passed: %s → %s (limit %s)", g.Metric,
				fmtValue(g.First, g.Unit), fmtValue(g.Last, g.Unit), fmtValue(g.Limit, g.Unit))
		}
	}
	runtime.KeepAlive(held)
}

func TestCountFDsAndDirDiskBytes(t *testing.T) {
	before, err := CountFDs(0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if after, err := CountFDs(0); err != nil || after != before+1 {
		t.Fatalf("open files %d after opening one, %d before (err %v)", after, before, err)
	}
	if _, err := f.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// A sparse file: long, but hardly any block allocated.
	g, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	g.Close()
	n, err := DirDiskBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n < 64<<10 || n > 1<<20 {
		t.Fatalf("DirDiskBytes = %d, want the 64 KiB written, not the sparse file's 1 GiB length", n)
	}
}
