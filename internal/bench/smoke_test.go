package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestHarnessEndToEnd runs every phase with tiny sizes against the real
// processes (configuration C included, on a private PostgreSQL server)
// and checks that the figures are sane: traffic flowed, nothing failed,
// the counters moved.
func TestHarnessEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	profiles := t.TempDir()
	r, err := Run(ctx, Options{
		TB: t, Logf: t.Logf,
		Devices: 50, Connections: 4, Duration: 2 * time.Second, Warmup: 300 * time.Millisecond, Rounds: 1,
		RateFraction: 0.5, ResultShare: 0.2, MaxRequests: 1_000_000,
		Upstreams:         []Upstream{UpstreamFast, UpstreamNanoMDM},
		Postgres:          true,
		ScaleSizes:        []int{100, 300},
		EnrollConcurrency: 2, EnrollMax: 6, EnrollDuration: time.Minute, EnrollUsers: 2,
		ProfileDir: profiles,
	})
	if err != nil {
		t.Fatal(err)
	}

	if len(r.Rounds) != 12 || len(r.Load) != 12 {
		t.Fatalf("%d round figures, %d aggregated; want 12 and 12 (2 upstreams × A, B, C × max, fixed)", len(r.Rounds), len(r.Load))
	}
	for _, f := range r.Load {
		name := string(f.Upstream) + " " + string(f.Config) + " " + f.Mode
		if f.RPS <= 0 || f.OK == 0 || f.Requests != f.OK || len(f.Errors) != 0 {
			t.Errorf("%s: %.0f req/s, %d of %d ok, errors %v", name, f.RPS, f.OK, f.Requests, f.Errors)
		}
		if f.Latency.P50 <= 0 || f.Latency.P50 > f.Latency.P99 || f.Latency.P99 > f.Latency.Max {
			t.Errorf("%s: latency %+v", name, f.Latency)
		}
		if f.CaddyCPU <= 0 || f.UpstreamCPU <= 0 || f.CaddyRSSMiB < 10 {
			t.Errorf("%s: caddy %.4f CPU-s/1k, upstream %.4f, peak RSS %.1f MiB", name, f.CaddyCPU, f.UpstreamCPU, f.CaddyRSSMiB)
		}
		checkRSSParts(t, name, f.CaddyRSSMiB, f.CaddyAnonRSSMiB, f.CaddyFileRSSMiB)
		if f.Mode == ModeFixed && (f.Rate <= 0 || f.RPS < 0.5*f.Rate || f.RPS > 1.1*f.Rate) {
			t.Errorf("%s: %.0f req/s at a fixed rate of %.0f", name, f.RPS, f.Rate)
		}
		// Only C has a database; its Caddy used it: the server worked
		// and Caddy's pool held connections to it.
		if c := f.Config == ConfigC; c != (f.PostgresCPU > 0) || c != (f.PostgresConns > 0) {
			t.Errorf("%s: PostgreSQL %.4f CPU-s/1k, %d connections", name, f.PostgresCPU, f.PostgresConns)
		}
	}
	if len(r.Ratios) != 12 || len(r.Added) != 6 {
		t.Errorf("%d ratios, %d added latencies; want 12 (B/A, C/A, C/B × 2 upstreams × 2 modes) and 6", len(r.Ratios), len(r.Added))
	}
	for _, x := range r.Ratios {
		if x.RPS <= 0 || x.CaddyCPU <= 0 || x.RSS <= 0 || x.AnonRSS <= 0 {
			t.Errorf("ratio %+v", x)
		}
	}
	if r.Setup.PreloadSeconds <= 0 || r.Setup.NanoMDMSeconds <= 0 || r.Setup.PostgresPreloadSeconds <= 0 {
		t.Errorf("setup %+v", r.Setup)
	}
	if p := r.Postgres; p == nil || p.Devices != 50 || p.StoreMiB <= 0 || len(p.Sizing) != 2 {
		t.Errorf("postgres figures %+v", p)
	} else {
		for _, s := range p.Sizing {
			if s.LookupsPerSecond <= 0 || s.CaddyCPU <= 0 || s.PostgresCPU <= 0 || s.Connections <= 0 || s.PushSeconds <= 0 || s.StoreMiB <= p.StoreMiB {
				t.Errorf("sizing %+v", s)
			}
		}
	}

	if len(r.Scale) != 2 {
		t.Fatalf("%d scale figures, want 2", len(r.Scale))
	}
	for _, s := range r.Scale {
		if s.RPS <= 0 || len(s.Errors) != 0 || s.StoreMiB <= 0 || s.ReopenSeconds <= 0 || s.CaddyReadySeconds <= 0 || s.CaddyRSSMiB < 10 {
			t.Errorf("scale %+v", s)
		}
		checkRSSParts(t, fmt.Sprintf("scale %d", s.Tokens), s.CaddyRSSMiB, s.CaddyAnonRSSMiB, s.CaddyFileRSSMiB)
	}

	e := r.Enrollment
	if e == nil || e.Completed != 6 || e.Started != 6 || len(e.Errors) != 0 || e.PerSecond <= 0 || e.Latency.Count != 6 {
		t.Fatalf("enrollment %+v", e)
	}
	if e.CaddyCPUms <= 0 {
		t.Errorf("enrollment: Caddy's CPU did not move (%.2f ms per enrollment)", e.CaddyCPUms)
	}

	if len(r.Profiles) != 4 { // CPU and allocations of B and of C
		t.Fatalf("profiles %v", r.Profiles)
	}
	for _, p := range r.Profiles {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", p, err)
		}
	}
	if len(r.Targets) != 15 {
		t.Errorf("%d targets, want 15", len(r.Targets))
	}
	for _, x := range r.Targets {
		if x.Status != StatusMet && x.Status != StatusMissed && x.Status != StatusNotMeasured {
			t.Errorf("target %+v", x)
		}
	}
	if r.Machine.CPUs == 0 || r.Seconds <= 0 {
		t.Errorf("machine %+v, %v s", r.Machine, r.Seconds)
	}
}

// checkRSSParts: Caddy has a heap and a mapped executable, and neither
// part exceeds the peak of the whole (give or take the rounding).
func checkRSSParts(t *testing.T, name string, peak, anon, file float64) {
	t.Helper()
	if anon <= 0 || file <= 0 || anon > peak+0.1 || file > peak+0.1 {
		t.Errorf("%s: peak RSS %.1f MiB, anon %.1f MiB, file %.1f MiB", name, peak, anon, file)
	}
}
