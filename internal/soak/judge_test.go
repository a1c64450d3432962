package soak

import (
	"math"
	"strings"
	"testing"
)

// process simulates what a soak samples of a server: a base value with
// noise and spikes, plus what leaks per unit of work.
func process(n int, base, leakPerStep float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		noise := 0.06 * base * math.Sin(float64(i)*1.7) // ±6 %, deterministic
		v[i] = base + noise + leakPerStep*float64(i)
	}
	return v
}

func TestJudgeGrowthPassesAStableServer(t *testing.T) {
	d := DefaultOptions()
	for _, tc := range []struct {
		name string
		v    []float64
		tol  Tolerance
	}{
		{"goroutines", process(30, 140, 0), d.Goroutines},
		{"fds", process(30, 90, 0), d.FDs},
		{"memory", process(30, 120<<20, 0), d.Memory},
		// A garbage collection or a burst of sign-ins in the last third
		// is one sample: the median ignores it.
		{"spike", append(process(27, 140, 0), 140, 900, 140), d.Goroutines},
	} {
		g := JudgeGrowth(tc.name, UnitCount, tc.v, tc.tol)
		if !g.Pass {
			t.Errorf("%s: a stable series failed: %s", tc.name, g.Reason)
		}
	}
}

// TestJudgeGrowthFailsALeakingServer is the leaking variant: the same
// server losing a goroutine per sign-in (a few per sample interval), a
// file descriptor now and then, 3 MiB of memory per interval. Every
// default tolerance catches it.
func TestJudgeGrowthFailsALeakingServer(t *testing.T) {
	d := DefaultOptions()
	for _, tc := range []struct {
		name string
		v    []float64
		tol  Tolerance
		unit string
	}{
		// 5 goroutines per interval: +150 over the run.
		{"goroutines", process(30, 140, 5), d.Goroutines, UnitCount},
		// 3 descriptors per interval: +90 over the run.
		{"fds", process(30, 90, 3), d.FDs, UnitCount},
		// 4 MiB per interval: +120 MiB over the run on a 120 MiB process.
		{"memory", process(30, 120<<20, 4<<20), d.Memory, UnitBytes},
	} {
		g := JudgeGrowth(tc.name, tc.unit, tc.v, tc.tol)
		if g.Pass {
			t.Errorf("%s: a leak passed: first %v, last %v, limit %v", tc.name, g.First, g.Last, g.Limit)
		}
		if !strings.Contains(g.Reason, "grew from") {
			t.Errorf("%s: reason %q", tc.name, g.Reason)
		}
	}
}

func TestJudgeGrowthThirds(t *testing.T) {
	// 9 values: the thirds are [0,3) and [6,9).
	v := []float64{10, 11, 12, 50, 50, 50, 13, 14, 100}
	g := JudgeGrowth("x", UnitCount, v, Tolerance{Rel: 0.1, Abs: 1})
	if g.First != 11 || g.Last != 14 || g.Min != 10 || g.Max != 100 {
		t.Fatalf("first %v last %v min %v max %v, want 11 14 10 100", g.First, g.Last, g.Min, g.Max)
	}
	if want := 11*1.1 + 1; math.Abs(g.Limit-want) > 1e-9 || g.Pass {
		t.Fatalf("limit %v pass %v, want %v and a failure (14 > 13.1)", g.Limit, g.Pass, want)
	}
}

func TestJudgeGrowthNeedsSamples(t *testing.T) {
	g := JudgeGrowth("x", UnitCount, []float64{1, 1, 1, 1, 1}, Tolerance{Rel: 1, Abs: 100})
	if g.Pass || !strings.Contains(g.Reason, "need at least") {
		t.Fatalf("5 samples: pass %v, reason %q", g.Pass, g.Reason)
	}
	if g := JudgeGrowth("x", UnitCount, []float64{1, 1, 1, 1, 1, 1}, Tolerance{}); !g.Pass {
		t.Fatalf("6 equal samples failed: %s", g.Reason)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		v    []float64
		want float64
	}{
		{[]float64{3}, 3}, {[]float64{3, 1}, 2}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), tc.v...)
		if got := median(tc.v); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.v, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.v[i] {
				t.Fatalf("median modified its argument")
			}
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Fatal("median of nothing is not NaN")
	}
}

// healthyStore is a run's store as measured: 1.3 MiB on disk for 0.5 MiB
// live, 700 bytes per token or enrollment written.
func healthyStore() StoreFigures {
	return StoreFigures{
		StartDisk: 100 << 10, Start: StoreContent{Bytes: 200 << 10},
		EndDisk: 1300 << 10, End: StoreContent{Bytes: 500 << 10},
		Written: 440,
	}
}

func TestJudgeStorePassesAHealthyStore(t *testing.T) {
	v := JudgeStore(healthyStore(), DefaultOptions().Store)
	for name, x := range map[string]Verdict{"bound": v.Bound, "overhead": v.Overhead, "growth": v.Growth} {
		if !x.Pass {
			t.Errorf("%s failed: %s (limit %s)", name, x.Measured, x.Limit)
		}
	}
}

// TestJudgeStoreFailsALeakingStore is the leaking variant of the store:
// garbage that is never reclaimed, and records written per request.
func TestJudgeStoreFailsALeakingStore(t *testing.T) {
	l := DefaultOptions().Store

	// Old versions never reclaimed: 400 MiB on disk for 50 MiB live.
	f := healthyStore()
	f.End.Bytes, f.EndDisk, f.Written = 50<<20, 400<<20, 60000
	if v := JudgeStore(f, l); v.Bound.Pass || v.Overhead.Pass {
		t.Errorf("unreclaimed garbage passed: bound %+v, overhead %+v", v.Bound, v.Overhead)
	} else if !v.Growth.Pass {
		t.Errorf("the live data grew legitimately but failed: %+v", v.Growth)
	}

	// A record per request: 3,300 requests of 2 KiB for 440 tokens.
	f = healthyStore()
	f.End.Bytes += 3300 * 2048
	f.EndDisk += 3300 * 2048
	if v := JudgeStore(f, l); v.Growth.Pass {
		t.Errorf("live data growing with requests passed: %+v", v.Growth)
	}

	// Not measured at the end: no verdict is a failure.
	if v := JudgeStore(StoreFigures{}, l); v.Bound.Pass || v.Overhead.Pass || v.Growth.Pass {
		t.Errorf("an unmeasured store passed: %+v", v)
	}
}
