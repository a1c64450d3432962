package bench

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// result makes a load result of n requests of latency lat over elapsed.
func result(n int, lat, elapsed time.Duration, errs map[string]uint64) *LoadResult {
	h := &Histogram{}
	for i := 0; i < n; i++ {
		h.Record(lat)
	}
	var bad uint64
	for _, c := range errs {
		bad += c
	}
	return &LoadResult{Requests: uint64(n), OK: uint64(n) - bad, Errors: errs, Elapsed: elapsed, Latency: h}
}

func TestFiguresAndAggregate(t *testing.T) {
	r1 := figures(UpstreamFast, ConfigA, ModeMax, 1, 0, result(1000, 200*time.Microsecond, time.Second, nil),
		usage{caddy: 500 * time.Millisecond, upstream: 100 * time.Millisecond, self: 50 * time.Millisecond,
			rss: 60 << 20, anon: 35 << 20, file: 25 << 20})
	if r1.RPS != 1000 || r1.CaddyCPU != 0.5 || r1.UpstreamCPU != 0.1 || r1.LoadgenCPU != 0.05 || r1.CaddyRSSMiB != 60 ||
		r1.CaddyAnonRSSMiB != 35 || r1.CaddyFileRSSMiB != 25 || r1.Latency.P50 != 200 || r1.Seconds != 1 {
		t.Fatalf("figures: %+v", r1)
	}
	r2 := figures(UpstreamFast, ConfigA, ModeMax, 2, 0, result(3000, 400*time.Microsecond, time.Second, map[string]uint64{"401": 3}),
		usage{caddy: time.Second, rss: 70 << 20, anon: 30 << 20, file: 40 << 20})
	agg := aggregate([]LoadFigures{r1, r2})
	if len(agg) != 1 {
		t.Fatalf("aggregate: %d entries, want 1", len(agg))
	}
	a := agg[0]
	// 4000 requests in 2 s; 1.5 CPU-s over 4000 requests; the larger
	// peaks, each on its own.
	if a.Round != 0 || a.Requests != 4000 || a.OK != 3997 || a.RPS != 2000 || a.CaddyCPU != 0.375 || a.CaddyRSSMiB != 70 ||
		a.CaddyAnonRSSMiB != 35 || a.CaddyFileRSSMiB != 40 ||
		math.Abs(a.Latency.P50-400) > 1 || a.Latency.Max != 400 || !reflect.DeepEqual(a.Errors, map[string]uint64{"401": 3}) {
		t.Errorf("aggregate: %+v", a)
	}
}

func TestCompare(t *testing.T) {
	mk := func(up Upstream, cfg Config, mode string, rps float64, p50, p99 float64, cpu, rss, anon float64) LoadFigures {
		return LoadFigures{Upstream: up, Config: cfg, Mode: mode, RPS: rps, Rate: 500,
			Latency: Summary{P50: p50, P90: p50 * 2, P99: p99, Max: p99 * 2}, CaddyCPU: cpu, CaddyRSSMiB: rss,
			CaddyAnonRSSMiB: anon, CaddyFileRSSMiB: rss - anon}
	}
	load := []LoadFigures{
		mk(UpstreamFast, ConfigA, ModeMax, 1000, 100, 400, 0.2, 50, 25),
		mk(UpstreamFast, ConfigA, ModeFixed, 500, 80, 300, 0.25, 50, 25),
		mk(UpstreamFast, ConfigB, ModeMax, 900, 120, 500, 0.25, 75, 30), // the file-backed part grows more
		mk(UpstreamFast, ConfigB, ModeFixed, 500, 110, 420, 0.3, 75, 37.5),
		mk(UpstreamFast, ConfigC, ModeMax, 800, 150, 600, 0.3, 60, 40),
		mk(UpstreamFast, ConfigC, ModeFixed, 500, 160, 500, 0.36, 60, 40),
		mk(UpstreamNanoMDM, ConfigA, ModeMax, 300, 1000, 3000, 0.3, 50, 25), // no B, no C: no ratio
	}
	ratios, added := compare(load)
	want := []Ratio{
		{Upstream: UpstreamFast, Mode: ModeMax, Config: ConfigB, Base: ConfigA, RPS: 0.9, P50: 1.2, P90: 1.2, P99: 1.25, Max: 1.25, CaddyCPU: 1.25, RSS: 1.5, AnonRSS: 1.2},
		{Upstream: UpstreamFast, Mode: ModeFixed, Config: ConfigB, Base: ConfigA, RPS: 1, P50: 1.375, P90: 1.375, P99: 1.4, Max: 1.4, CaddyCPU: 1.2, RSS: 1.5, AnonRSS: 1.5},
		{Upstream: UpstreamFast, Mode: ModeMax, Config: ConfigC, Base: ConfigA, RPS: 0.8, P50: 1.5, P90: 1.5, P99: 1.5, Max: 1.5, CaddyCPU: 1.5, RSS: 1.2, AnonRSS: 1.6},
		{Upstream: UpstreamFast, Mode: ModeFixed, Config: ConfigC, Base: ConfigA, RPS: 1, P50: 2, P90: 2, P99: 1.667, Max: 1.667, CaddyCPU: 1.44, RSS: 1.2, AnonRSS: 1.6},
		{Upstream: UpstreamFast, Mode: ModeMax, Config: ConfigC, Base: ConfigB, RPS: 0.889, P50: 1.25, P90: 1.25, P99: 1.2, Max: 1.2, CaddyCPU: 1.2, RSS: 0.8, AnonRSS: 1.333},
		{Upstream: UpstreamFast, Mode: ModeFixed, Config: ConfigC, Base: ConfigB, RPS: 1, P50: 1.455, P90: 1.455, P99: 1.19, Max: 1.19, CaddyCPU: 1.2, RSS: 0.8, AnonRSS: 1.067},
	}
	if !reflect.DeepEqual(ratios, want) {
		t.Errorf("ratios\n got %+v\nwant %+v", ratios, want)
	}
	wantAdded := []AddedLatency{
		{Upstream: UpstreamFast, Config: ConfigB, Base: ConfigA, Rate: 500, P50: 30, P90: 60, P99: 120},
		{Upstream: UpstreamFast, Config: ConfigC, Base: ConfigA, Rate: 500, P50: 80, P90: 160, P99: 200},
		{Upstream: UpstreamFast, Config: ConfigC, Base: ConfigB, Rate: 500, P50: 50, P90: 100, P99: 80},
	}
	if !reflect.DeepEqual(added, wantAdded) {
		t.Errorf("added\n got %+v\nwant %+v", added, wantAdded)
	}
}

// TestPairOfOldReports: ratios and added latencies of reports from
// before configuration C name no configurations and are B / A.
func TestPairOfOldReports(t *testing.T) {
	if c, base := (Ratio{}).Pair(); c != ConfigB || base != ConfigA {
		t.Errorf("Ratio{}.Pair() = %s, %s", c, base)
	}
	if c, base := (AddedLatency{}).Pair(); c != ConfigB || base != ConfigA {
		t.Errorf("AddedLatency{}.Pair() = %s, %s", c, base)
	}
	if c, base := (Ratio{Config: ConfigC, Base: ConfigB}).Pair(); c != ConfigC || base != ConfigB {
		t.Errorf("C / B Pair() = %s, %s", c, base)
	}
}

// TestEvaluateTakesBOverA: the targets are about B; C's ratios and
// added latencies, listed first here, do not stand in for B's.
func TestEvaluateTakesBOverA(t *testing.T) {
	r := &Report{
		Ratios: []Ratio{
			{Upstream: UpstreamFast, Mode: ModeMax, Config: ConfigC, Base: ConfigA, RPS: 0.5},
			{Upstream: UpstreamFast, Mode: ModeMax, RPS: 0.95}, // an old report's B / A
		},
		Added: []AddedLatency{
			{Upstream: UpstreamFast, Config: ConfigC, Base: ConfigB, P50: 900, P99: 900},
			{Upstream: UpstreamFast, Config: ConfigB, Base: ConfigA, P50: 30, P99: 80},
		},
	}
	for _, x := range Evaluate(r) {
		switch x.Name {
		case "throughput B/A, fast upstream, max rate":
			if x.Status != StatusMet || x.Got != "0.950" {
				t.Errorf("%s: %+v", x.Name, x)
			}
		case "added p50 at a fixed rate, fast upstream", "added p99 at a fixed rate, fast upstream":
			if x.Status != StatusMet {
				t.Errorf("%s: %+v", x.Name, x)
			}
		}
	}
}

func TestPostgresFigures(t *testing.T) {
	load := []LoadFigures{
		{Upstream: UpstreamFast, Config: ConfigB, Mode: ModeMax, RPS: 4000},
		{Upstream: UpstreamFast, Config: ConfigC, Mode: ModeMax, RPS: 2500, CaddyCPU: 0.3, PostgresCPU: 0.2, PostgresConns: 4},
		{Upstream: UpstreamFast, Config: ConfigC, Mode: ModeFixed, RPS: 1000, CaddyCPU: 0.4, PostgresCPU: 0.25, PostgresConns: 3},
		{Upstream: UpstreamNanoMDM, Config: ConfigC, Mode: ModeMax, RPS: 1600, CaddyCPU: 0.35, PostgresCPU: 0.22, PostgresConns: 4},
	}
	added := []AddedLatency{
		{Upstream: UpstreamFast, Config: ConfigB, Base: ConfigA, P50: 10, P99: 20},
		{Upstream: UpstreamFast, Config: ConfigC, Base: ConfigA, P50: 150, P99: 900},
		{Upstream: UpstreamFast, Config: ConfigC, Base: ConfigB, P50: 140, P99: 880},
	}
	got := postgresFigures(load, added, 20_000, 30<<20)
	want := &PostgresFigures{Devices: 20_000, StoreMiB: 30, Sizing: []PostgresSizing{
		// CPU at the fixed rate; 20,000 requests per push to 10k devices;
		// the store halved to 10k devices.
		{Upstream: UpstreamFast, LookupsPerSecond: 2500, CaddyCPU: 0.4, PostgresCPU: 0.25, Connections: 4, AddedP50: 140, AddedP99: 880,
			PushSeconds: 8, PushCaddyCPU: 8, PushPostgresCPU: 5, StoreMiB: 15},
		// No fixed-rate run: the max rate's CPU; no C − B.
		{Upstream: UpstreamNanoMDM, LookupsPerSecond: 1600, CaddyCPU: 0.35, PostgresCPU: 0.22, Connections: 4,
			PushSeconds: 12.5, PushCaddyCPU: 7, PushPostgresCPU: 4.4, StoreMiB: 15},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("postgresFigures\n got %+v\nwant %+v", got, want)
	}
	if p := postgresFigures(load[:1], nil, 20_000, 1); p != nil {
		t.Errorf("postgresFigures without C = %+v, want nil", p)
	}
}

// sampleReport is a complete report with round figures.
func sampleReport() *Report {
	r := &Report{
		Machine:  Machine{CPU: "Test CPU", CPUs: 2, MemoryMiB: 4096, OS: "linux", Arch: "amd64", Go: "go1.26"},
		Started:  time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Seconds:  321,
		Settings: Settings{Devices: 10000, Connections: 32, DurationSeconds: 10, Rounds: 2, RateFraction: 0.5, Upstreams: []Upstream{UpstreamFast}, Postgres: true},
		Setup:    Setup{FleetSeconds: 3, PreloadSeconds: 1, PostgresPreloadSeconds: 7.25, NanoMDMSeconds: 30},
		Load: []LoadFigures{
			{Upstream: UpstreamFast, Config: ConfigA, Mode: ModeMax, RPS: 10000, Latency: Summary{P50: 150, P99: 600}, CaddyRSSMiB: 50},
			{Upstream: UpstreamFast, Config: ConfigA, Mode: ModeFixed, Rate: 5000, RPS: 5000, Latency: Summary{P50: 120, P99: 400}},
			{Upstream: UpstreamFast, Config: ConfigB, Mode: ModeMax, RPS: 9500, Latency: Summary{P50: 160, P99: 650}, Errors: map[string]uint64{"503": 2}},
			{Upstream: UpstreamFast, Config: ConfigB, Mode: ModeFixed, Rate: 5000, RPS: 5000, Latency: Summary{P50: 150, P99: 480}},
			{Upstream: UpstreamFast, Config: ConfigC, Mode: ModeMax, RPS: 6000, Latency: Summary{P50: 250, P99: 900}, CaddyCPU: 0.33,
				PostgresCPU: 0.2468, PostgresConns: 4},
			{Upstream: UpstreamFast, Config: ConfigC, Mode: ModeFixed, Rate: 5000, RPS: 5000, Latency: Summary{P50: 390, P99: 1200}, CaddyCPU: 0.35,
				PostgresCPU: 0.2571, PostgresConns: 4},
		},
		Scale: []ScaleFigures{
			{Tokens: 10_000, RPS: 9000, CaddyRSSMiB: 80, CaddyAnonRSSMiB: 60, CaddyFileRSSMiB: 19.5, ReopenSeconds: 0.05},
			{Tokens: 1_000_000, RPS: 8500, CaddyRSSMiB: 300, CaddyAnonRSSMiB: 120.5, CaddyFileRSSMiB: 178.3, ReopenSeconds: 1.5},
		},
		Enrollment: &EnrollFigures{Concurrency: 8, Started: 400, Completed: 400, Seconds: 20, PerSecond: 20, CaddyCPUms: 3, IdPCPUms: 9},
		GoBench:    []GoBench{{Package: "github.com/mdmauth/mdmauth/internal/gateway", Name: HotPathBenchmark, Iterations: 10, NsPerOp: 29843, BytesPerOp: 13921, AllocsPerOp: 301}},
		Profiles:   []string{"prof/caddy-B-fast-cpu.pprof"},
	}
	r.Ratios, r.Added = compare(r.Load)
	r.Postgres = postgresFigures(r.Load, r.Added, 10000, 12<<20)
	r.Postgres.Version, r.Postgres.SharedBuffers = "15.18", "16MB"
	r.Targets = Evaluate(r)
	return r
}

func TestJSONRoundTrip(t *testing.T) {
	r := sampleReport()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"caddy_cpu_s_per_1k"`, `"caddy_peak_anon_rss_mib": 120.5`, `"postgres_cpu_s_per_1k": 0.2571`,
		`"postgres_connections": 4`, `"base": "B"`, `"lookups_per_s": 6000`, `"postgres_preload_s": 7.25`, `"caddy_peak_file_rss_mib": 178.3`, `"p99_us"`, `"added_latency"`, `"go_benchmarks"`, `"targets"`, `"status": "missed"`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", back, r)
	}
	if _, err := ReadJSON(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("ReadJSON of a missing file succeeded")
	}
}

func TestWriteText(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"Machine: Test CPU, 2 CPUs, 4.0 GiB",
		"A: reverse_proxy alone, B: mdm_auth + reverse_proxy, C: B with the PostgreSQL store (10000 devices, 32 connections, 10 s per run, 2 rounds",
		"preload 1.0 s, PostgreSQL preload 7.2 s",
		"fixed 5000/s", "503×2",
		"PostgreSQL CPU-s/1k  PostgreSQL connections", "0.2571",
		"B / A, C / A, C / B", "B / A  max", "0.950", // throughput ratio B / A
		"C / B  max", "0.632", // C / B: 6000 / 9500
		"C − B       5000", "240.0", "720.0", // p50 and p99 added by PostgreSQL over Badger
		"Latency added at the fixed rate", "30.0", "80.0", // p50 and p99 added by mdm_auth
		"PostgreSQL store (C): sizing per 10,000 devices (PostgreSQL 15.18, shared_buffers 16MB; 10000 devices took 12.0 MiB)",
		"6000", "0.3500", "5.1", // lookups/s, Caddy CPU at the fixed rate, PostgreSQL CPU-s per push (20 × 0.2571)
		"Scale:", "1000000",
		"Caddy peak RSS MiB  anon MiB  file MiB", "300.0               120.5     178.3",
		"anon: RssAnon (heap, stacks)", "page cache the kernel shares and reclaims under pressure", "every 250 ms",
		"Full enrollments through the gateway (8 at a time)",
		"Go benchmarks", "internal/gateway", "29843", "301",
		"Targets", "missed", "not measured", "over by 14.8 µs (99.0 %)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestUpdateDocs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	doc := "# Benchmarks\n\nintro\n\n" + ResultsBegin + "\nold figures\n" + ResultsEnd + "\n\nafter\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDocs(path, sampleReport()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	if strings.Contains(s, "old figures") || !strings.HasPrefix(s, "# Benchmarks\n\nintro\n\n"+ResultsBegin) ||
		!strings.HasSuffix(s, ResultsEnd+"\n\nafter\n") {
		t.Errorf("markers or surrounding text not kept:\n%s", s)
	}
	for _, want := range []string{"### Targets", "| status | target | want | got | gap |", "|---|---:|", "| missed |"} {
		if !strings.Contains(s, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	if err := os.WriteFile(path, []byte("no markers"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDocs(path, sampleReport()); err == nil {
		t.Error("UpdateDocs without markers succeeded")
	}
}
