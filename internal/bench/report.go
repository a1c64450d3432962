package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// Load modes.
const (
	// ModeMax is closed loop: every connection sends its next request as
	// soon as the answer is in.
	ModeMax = "max"
	// ModeFixed is open loop at a fixed rate (a fraction of A's max).
	ModeFixed = "fixed"
)

// Report is everything one run measured. It is written as JSON and
// rendered as tables; WriteJSON and ReadJSON round-trip it.
type Report struct {
	Machine  Machine   `json:"machine"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Settings Settings  `json:"settings"`
	Setup    Setup     `json:"setup"`
	// Load holds one entry per (upstream, config, mode), over all rounds;
	// Rounds the individual runs in the order they ran.
	Load       []LoadFigures  `json:"load,omitempty"`
	Rounds     []LoadFigures  `json:"rounds,omitempty"`
	Ratios     []Ratio        `json:"ratios,omitempty"`
	Added      []AddedLatency `json:"added_latency,omitempty"`
	Scale      []ScaleFigures `json:"scale,omitempty"`
	Enrollment *EnrollFigures `json:"enrollment,omitempty"`
	// Postgres sums up configuration C (nil without it).
	Postgres *PostgresFigures `json:"postgres,omitempty"`
	GoBench  []GoBench        `json:"go_benchmarks,omitempty"`
	Profiles []string         `json:"profiles,omitempty"`
	Targets  []TargetResult   `json:"targets,omitempty"`
	Notes    []string         `json:"notes,omitempty"`
}

// Machine describes where the figures come from.
type Machine struct {
	CPU       string `json:"cpu"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memory_mib"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Kernel    string `json:"kernel,omitempty"`
	Go        string `json:"go"`
}

// Settings are the sizes the run used.
type Settings struct {
	Devices           int        `json:"devices"`
	Connections       int        `json:"connections"`
	DurationSeconds   float64    `json:"duration_s"`
	WarmupSeconds     float64    `json:"warmup_s"`
	Rounds            int        `json:"rounds"`
	RateFraction      float64    `json:"rate_fraction"`
	ResultShare       float64    `json:"result_share"`
	Upstreams         []Upstream `json:"upstreams"`
	ScaleSizes        []int      `json:"scale_sizes,omitempty"`
	EnrollConcurrency int        `json:"enroll_concurrency,omitempty"`
	EnrollMax         int        `json:"enroll_max,omitempty"`
	// Postgres: configuration C ran.
	Postgres bool `json:"postgres,omitempty"`
}

// Setup times the preparation.
type Setup struct {
	// FleetSeconds: identities and signed requests of the devices.
	FleetSeconds float64 `json:"fleet_s"`
	// PreloadSeconds: writing the fleet's tokens and enrollments.
	PreloadSeconds float64 `json:"preload_s"`
	// NanoMDMSeconds: Authenticate and TokenUpdate of every device.
	NanoMDMSeconds float64 `json:"nanomdm_enroll_s"`
	// PostgresPreloadSeconds: writing them into PostgreSQL (C), vacuum
	// included.
	PostgresPreloadSeconds float64 `json:"postgres_preload_s,omitempty"`
}

// LoadFigures are the figures of one (upstream, config, mode), of one
// round or aggregated over all rounds (Round 0).
type LoadFigures struct {
	Upstream Upstream `json:"upstream"`
	Config   Config   `json:"config"`
	Mode     string   `json:"mode"`
	Round    int      `json:"round,omitempty"`
	// Rate is the requested open-loop rate (ModeFixed).
	Rate     float64           `json:"rate,omitempty"`
	Requests uint64            `json:"requests"`
	OK       uint64            `json:"ok"`
	Errors   map[string]uint64 `json:"errors,omitempty"`
	Seconds  float64           `json:"seconds"`
	RPS      float64           `json:"rps"`
	Latency  Summary           `json:"latency"`
	// CPU seconds per 1,000 answered requests: Caddy, the upstream
	// (fast upstream or NanoMDM) and the load generator.
	CaddyCPU    float64 `json:"caddy_cpu_s_per_1k"`
	UpstreamCPU float64 `json:"upstream_cpu_s_per_1k"`
	LoadgenCPU  float64 `json:"loadgen_cpu_s_per_1k"`
	// PostgresCPU is the same for the database server's process tree
	// (configuration C): the postmaster, its background processes and
	// the backends of Caddy's connections.
	PostgresCPU float64 `json:"postgres_cpu_s_per_1k,omitempty"`
	// PostgresConns is the number of connections Caddy's pool held at
	// the end of the run (C; over rounds the largest).
	PostgresConns int `json:"postgres_connections,omitempty"`
	// CaddyRSSMiB is Caddy's peak resident set during the run (VmHWM):
	// anonymous and file-backed pages together.
	CaddyRSSMiB float64 `json:"caddy_peak_rss_mib"`
	// CaddyAnonRSSMiB is the largest anonymous part of it (RssAnon: heap
	// and stacks) and CaddyFileRSSMiB the largest file-backed part
	// (RssFile: the executable and memory-mapped store files, reclaimable
	// page cache), sampled during the run and at its end.
	CaddyAnonRSSMiB float64 `json:"caddy_peak_anon_rss_mib"`
	CaddyFileRSSMiB float64 `json:"caddy_peak_file_rss_mib"`

	raw *rawLoad // what aggregation needs; not in JSON
}

// rawLoad keeps the unrounded inputs of LoadFigures.
type rawLoad struct {
	hist                  *Histogram
	elapsed               time.Duration
	caddy, upstream, self time.Duration
	postgres              time.Duration
	conns                 int
	rss, anon, file       int64
}

// Ratio is Config's figures divided by Base's for one upstream and mode:
// B / A, and with the PostgreSQL configuration C / A and C / B.
type Ratio struct {
	Upstream Upstream `json:"upstream"`
	Mode     string   `json:"mode"`
	// Config over Base; both empty (reports from before C) mean B / A.
	Config   Config  `json:"config,omitempty"`
	Base     Config  `json:"base,omitempty"`
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50"`
	P90      float64 `json:"p90"`
	P99      float64 `json:"p99"`
	Max      float64 `json:"max"`
	CaddyCPU float64 `json:"caddy_cpu_per_request"`
	RSS      float64 `json:"caddy_peak_rss"`
	AnonRSS  float64 `json:"caddy_peak_anon_rss"`
}

// AddedLatency is Config's latency minus Base's at the same fixed rate:
// B − A, and with the PostgreSQL configuration C − A and C − B.
type AddedLatency struct {
	Upstream Upstream `json:"upstream"`
	// Config minus Base; both empty (reports from before C) mean B − A.
	Config Config  `json:"config,omitempty"`
	Base   Config  `json:"base,omitempty"`
	Rate   float64 `json:"rate"`
	P50    float64 `json:"p50_us"`
	P90    float64 `json:"p90_us"`
	P99    float64 `json:"p99_us"`
}

// ScaleFigures are configuration B against the fast upstream with the
// store holding Tokens live tokens, requests spread over all of them.
type ScaleFigures struct {
	Tokens int `json:"tokens"`
	// PreloadSeconds is the time to add this step's tokens to the
	// previous step's.
	PreloadSeconds float64 `json:"preload_s"`
	// StoreMiB is the store's size on disk after a clean close.
	StoreMiB float64 `json:"store_mib"`
	// ReopenSeconds is badger.Open of that store after a clean close;
	// CaddyReadySeconds is Caddy's start until it serves (store open
	// included).
	ReopenSeconds     float64           `json:"reopen_s"`
	CaddyReadySeconds float64           `json:"caddy_ready_s"`
	Requests          uint64            `json:"requests"`
	Errors            map[string]uint64 `json:"errors,omitempty"`
	RPS               float64           `json:"rps"`
	Latency           Summary           `json:"latency"`
	CaddyCPU          float64           `json:"caddy_cpu_s_per_1k"`
	// CaddyRSSMiB is Caddy's peak resident set since its start (the
	// store's opening included); CaddyAnonRSSMiB and CaddyFileRSSMiB are
	// its largest anonymous and file-backed parts sampled during the run,
	// as in LoadFigures.
	CaddyRSSMiB     float64 `json:"caddy_peak_rss_mib"`
	CaddyAnonRSSMiB float64 `json:"caddy_peak_anon_rss_mib"`
	CaddyFileRSSMiB float64 `json:"caddy_peak_file_rss_mib"`
}

// EnrollFigures are the full enrollments through the gateway.
type EnrollFigures struct {
	Concurrency int            `json:"concurrency"`
	Started     int            `json:"started"`
	Completed   int            `json:"completed"`
	Errors      map[string]int `json:"errors,omitempty"`
	Seconds     float64        `json:"seconds"`
	PerSecond   float64        `json:"per_second"`
	// Latency of one whole enrollment (discovery to TokenUpdate).
	Latency Summary `json:"latency"`
	// CPU milliseconds per completed enrollment.
	CaddyCPUms   float64 `json:"caddy_cpu_ms"`
	IdPCPUms     float64 `json:"idp_cpu_ms"`
	NanoMDMCPUms float64 `json:"nanomdm_cpu_ms"`
	LoadgenCPUms float64 `json:"loadgen_cpu_ms"`
}

// PostgresFigures sum up configuration C for sizing a PostgreSQL store.
type PostgresFigures struct {
	// Devices enrolled devices, each with its token bound, took StoreMiB
	// in the database (the tables of mdmauth's schema with their
	// indexes, after VACUUM).
	Devices  int     `json:"devices"`
	StoreMiB float64 `json:"store_mib"`
	// Version and SharedBuffers are the server's.
	Version       string `json:"version,omitempty"`
	SharedBuffers string `json:"shared_buffers,omitempty"`
	// Sizing per upstream.
	Sizing []PostgresSizing `json:"sizing,omitempty"`
}

// PostgresSizing is what configuration C against one upstream says about
// sizing, per 10,000 devices where it says so. CPU-s per 1,000 requests
// is also the number of cores busy at 1,000 requests per second.
type PostgresSizing struct {
	Upstream Upstream `json:"upstream"`
	// LookupsPerSecond is C's max rate: every request is one Lookup, one
	// round trip, so it is what one instance sustained on this machine.
	LookupsPerSecond float64 `json:"lookups_per_s"`
	// CaddyCPU and PostgresCPU are CPU-s per 1,000 requests at the fixed
	// rate (below saturation, where batching helps least).
	CaddyCPU    float64 `json:"caddy_cpu_s_per_1k"`
	PostgresCPU float64 `json:"postgres_cpu_s_per_1k"`
	// Connections is the most connections Caddy's pool held.
	Connections int `json:"connections"`
	// AddedP50 and AddedP99 are C − B at the fixed rate: what the round
	// trip adds to a request over the embedded store, in µs.
	AddedP50 float64 `json:"added_p50_us"`
	AddedP99 float64 `json:"added_p99_us"`
	// A push to 10,000 devices costs 20,000 requests (Status Idle and
	// one command result each): PushSeconds at LookupsPerSecond, and
	// PushCaddyCPU and PushPostgresCPU CPU seconds at the fixed rate's
	// cost per request.
	PushSeconds     float64 `json:"push_10k_s"`
	PushCaddyCPU    float64 `json:"push_10k_caddy_cpu_s"`
	PushPostgresCPU float64 `json:"push_10k_postgres_cpu_s"`
	// StoreMiB is the database's size per 10,000 devices.
	StoreMiB float64 `json:"store_mib_per_10k"`
}

// GoBench is one line of go test -bench -benchmem.
type GoBench struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	Iterations  int64   `json:"iterations"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
}

// WriteJSON writes r, indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := new(Report)
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return r, nil
}

// figures turns one measured load run into LoadFigures.
func figures(up Upstream, cfg Config, mode string, round int, rate float64, res *LoadResult, u usage) LoadFigures {
	f := LoadFigures{Upstream: up, Config: cfg, Mode: mode, Round: round, Rate: round1(rate),
		Requests: res.Requests, OK: res.OK, Errors: nonEmpty(res.Errors),
		raw: &rawLoad{hist: res.Latency, elapsed: res.Elapsed, caddy: u.caddy, upstream: u.upstream, self: u.self,
			postgres: u.postgres, conns: u.conns, rss: u.rss, anon: u.anon, file: u.file}}
	f.fill()
	return f
}

// fill computes the derived figures from raw.
func (f *LoadFigures) fill() {
	r := f.raw
	n := r.hist.Count()
	f.Seconds = round3(r.elapsed.Seconds())
	if r.elapsed > 0 {
		f.RPS = round1(float64(n) / r.elapsed.Seconds())
	}
	f.Latency = r.hist.Summary()
	f.CaddyCPU = perThousand(r.caddy, n)
	f.UpstreamCPU = perThousand(r.upstream, n)
	f.LoadgenCPU = perThousand(r.self, n)
	f.PostgresCPU = perThousand(r.postgres, n)
	f.PostgresConns = r.conns
	f.CaddyRSSMiB = mib(r.rss)
	f.CaddyAnonRSSMiB = mib(r.anon)
	f.CaddyFileRSSMiB = mib(r.file)
}

// aggregate merges the rounds of each (upstream, config, mode), keeping
// the order of first appearance. Rates add up requests and time; the
// peak RSS and its parts, and the connections, are the largest.
func aggregate(rounds []LoadFigures) []LoadFigures {
	type key struct {
		up   Upstream
		cfg  Config
		mode string
	}
	var order []key
	sums := map[key]*LoadFigures{}
	for _, f := range rounds {
		k := key{f.Upstream, f.Config, f.Mode}
		s, ok := sums[k]
		if !ok {
			s = &LoadFigures{Upstream: f.Upstream, Config: f.Config, Mode: f.Mode, Errors: map[string]uint64{},
				raw: &rawLoad{hist: &Histogram{}}}
			sums[k] = s
			order = append(order, k)
		}
		s.Requests += f.Requests
		s.OK += f.OK
		for c, n := range f.Errors {
			s.Errors[c] += n
		}
		s.Rate += f.Rate
		if f.raw != nil {
			s.raw.hist.Merge(f.raw.hist)
			s.raw.elapsed += f.raw.elapsed
			s.raw.caddy += f.raw.caddy
			s.raw.upstream += f.raw.upstream
			s.raw.self += f.raw.self
			s.raw.postgres += f.raw.postgres
			s.raw.conns = max(s.raw.conns, f.raw.conns)
			s.raw.rss = max(s.raw.rss, f.raw.rss)
			s.raw.anon = max(s.raw.anon, f.raw.anon)
			s.raw.file = max(s.raw.file, f.raw.file)
		}
	}
	out := make([]LoadFigures, 0, len(order))
	counts := map[key]int{}
	for _, f := range rounds {
		counts[key{f.Upstream, f.Config, f.Mode}]++
	}
	for _, k := range order {
		s := sums[k]
		s.Rate = round1(s.Rate / float64(counts[k]))
		s.Errors = nonEmpty(s.Errors)
		s.fill()
		out = append(out, *s)
	}
	return out
}

// find returns the figures of (up, cfg, mode) in fs, or nil.
func find(fs []LoadFigures, up Upstream, cfg Config, mode string) *LoadFigures {
	for i := range fs {
		if fs[i].Upstream == up && fs[i].Config == cfg && fs[i].Mode == mode {
			return &fs[i]
		}
	}
	return nil
}

// comparisons are the (Config, Base) pairs compare derives, in order.
var comparisons = [][2]Config{{ConfigB, ConfigA}, {ConfigC, ConfigA}, {ConfigC, ConfigB}}

// compare derives the ratios B / A, C / A and C / B and, at the fixed
// rate, the added latencies B − A, C − A and C − B, for every upstream
// and mode that has both configurations of a pair.
func compare(load []LoadFigures) ([]Ratio, []AddedLatency) {
	var ratios []Ratio
	var added []AddedLatency
	for _, pair := range comparisons {
		for _, a := range load {
			if a.Config != pair[1] {
				continue
			}
			b := find(load, a.Upstream, pair[0], a.Mode)
			if b == nil {
				continue
			}
			ratios = append(ratios, Ratio{
				Upstream: a.Upstream, Mode: a.Mode, Config: pair[0], Base: pair[1],
				RPS: ratio(b.RPS, a.RPS), P50: ratio(b.Latency.P50, a.Latency.P50), P90: ratio(b.Latency.P90, a.Latency.P90),
				P99: ratio(b.Latency.P99, a.Latency.P99), Max: ratio(b.Latency.Max, a.Latency.Max),
				CaddyCPU: ratio(b.CaddyCPU, a.CaddyCPU), RSS: ratio(b.CaddyRSSMiB, a.CaddyRSSMiB),
				AnonRSS: ratio(b.CaddyAnonRSSMiB, a.CaddyAnonRSSMiB),
			})
			if a.Mode == ModeFixed {
				added = append(added, AddedLatency{Upstream: a.Upstream, Config: pair[0], Base: pair[1], Rate: a.Rate,
					P50: round1(b.Latency.P50 - a.Latency.P50), P90: round1(b.Latency.P90 - a.Latency.P90),
					P99: round1(b.Latency.P99 - a.Latency.P99)})
			}
		}
	}
	return ratios, added
}

// Pair returns the configurations of x: Config over Base (B / A in
// reports from before C).
func (x Ratio) Pair() (Config, Config) { return pairOf(x.Config, x.Base) }

// Pair returns the configurations of a: Config minus Base (B − A in
// reports from before C).
func (a AddedLatency) Pair() (Config, Config) { return pairOf(a.Config, a.Base) }

func pairOf(c, base Config) (Config, Config) {
	if c == "" && base == "" {
		return ConfigB, ConfigA
	}
	return c, base
}

// postgresFigures sums up configuration C from the aggregated load, the
// C − B added latencies and the database's size for devices devices;
// nil when C did not run.
func postgresFigures(load []LoadFigures, added []AddedLatency, devices int, storeBytes int64) *PostgresFigures {
	p := &PostgresFigures{Devices: devices, StoreMiB: mib(storeBytes)}
	per10k := 0.0
	if devices > 0 {
		per10k = 10_000 / float64(devices)
	}
	for _, c := range load {
		if c.Config != ConfigC || c.Mode != ModeMax {
			continue
		}
		s := PostgresSizing{Upstream: c.Upstream, LookupsPerSecond: c.RPS, CaddyCPU: c.CaddyCPU, PostgresCPU: c.PostgresCPU,
			Connections: c.PostgresConns, StoreMiB: round1(float64(storeBytes) / (1 << 20) * per10k)}
		if fixed := find(load, c.Upstream, ConfigC, ModeFixed); fixed != nil {
			s.CaddyCPU, s.PostgresCPU = fixed.CaddyCPU, fixed.PostgresCPU
			s.Connections = max(s.Connections, fixed.PostgresConns)
		}
		for _, a := range added {
			if cfg, base := a.Pair(); a.Upstream == c.Upstream && cfg == ConfigC && base == ConfigB {
				s.AddedP50, s.AddedP99 = a.P50, a.P99
			}
		}
		const pushRequests = 20_000
		if c.RPS > 0 {
			s.PushSeconds = round1(pushRequests / c.RPS)
		}
		s.PushCaddyCPU = round1(pushRequests / 1000 * s.CaddyCPU)
		s.PushPostgresCPU = round1(pushRequests / 1000 * s.PostgresCPU)
		p.Sizing = append(p.Sizing, s)
	}
	if len(p.Sizing) == 0 {
		return nil
	}
	return p
}

func ratio(b, a float64) float64 {
	if a == 0 {
		return 0
	}
	return round3(b / a)
}

func perThousand(cpu time.Duration, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return round4(cpu.Seconds() * 1000 / float64(n))
}

func mib(b int64) float64 { return round1(float64(b) / (1 << 20)) }

func round1(v float64) float64 { return roundTo(v, 10) }
func round3(v float64) float64 { return roundTo(v, 1000) }
func round4(v float64) float64 { return roundTo(v, 10000) }

func roundTo(v, scale float64) float64 {
	if v < 0 {
		return -roundTo(-v, scale)
	}
	return float64(int64(v*scale+0.5)) / scale
}

func nonEmpty[K comparable, V any](m map[K]V) map[K]V {
	if len(m) == 0 {
		return nil
	}
	return m
}
