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
	GoBench    []GoBench      `json:"go_benchmarks,omitempty"`
	Profiles   []string       `json:"profiles,omitempty"`
	Targets    []TargetResult `json:"targets,omitempty"`
	Notes      []string       `json:"notes,omitempty"`
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
}

// Setup times the preparation.
type Setup struct {
	// FleetSeconds: identities and signed requests of the devices.
	FleetSeconds float64 `json:"fleet_s"`
	// PreloadSeconds: writing the fleet's tokens and enrollments.
	PreloadSeconds float64 `json:"preload_s"`
	// NanoMDMSeconds: Authenticate and TokenUpdate of every device.
	NanoMDMSeconds float64 `json:"nanomdm_enroll_s"`
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
	rss, anon, file       int64
}

// Ratio is B divided by A for one upstream and mode.
type Ratio struct {
	Upstream Upstream `json:"upstream"`
	Mode     string   `json:"mode"`
	RPS      float64  `json:"rps"`
	P50      float64  `json:"p50"`
	P90      float64  `json:"p90"`
	P99      float64  `json:"p99"`
	Max      float64  `json:"max"`
	CaddyCPU float64  `json:"caddy_cpu_per_request"`
	RSS      float64  `json:"caddy_peak_rss"`
	AnonRSS  float64  `json:"caddy_peak_anon_rss"`
}

// AddedLatency is B's latency minus A's at the same fixed rate.
type AddedLatency struct {
	Upstream Upstream `json:"upstream"`
	Rate     float64  `json:"rate"`
	P50      float64  `json:"p50_us"`
	P90      float64  `json:"p90_us"`
	P99      float64  `json:"p99_us"`
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
			rss: u.rss, anon: u.anon, file: u.file}}
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
	f.CaddyRSSMiB = mib(r.rss)
	f.CaddyAnonRSSMiB = mib(r.anon)
	f.CaddyFileRSSMiB = mib(r.file)
}

// aggregate merges the rounds of each (upstream, config, mode), keeping
// the order of first appearance. Rates add up requests and time; the
// peak RSS and its parts are the largest.
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

// compare derives the B/A ratios and, at the fixed rate, the added
// latency, for every upstream and mode that has both configurations.
func compare(load []LoadFigures) ([]Ratio, []AddedLatency) {
	var ratios []Ratio
	var added []AddedLatency
	for _, a := range load {
		if a.Config != ConfigA {
			continue
		}
		b := find(load, a.Upstream, ConfigB, a.Mode)
		if b == nil {
			continue
		}
		ratios = append(ratios, Ratio{
			Upstream: a.Upstream, Mode: a.Mode,
			RPS: ratio(b.RPS, a.RPS), P50: ratio(b.Latency.P50, a.Latency.P50), P90: ratio(b.Latency.P90, a.Latency.P90),
			P99: ratio(b.Latency.P99, a.Latency.P99), Max: ratio(b.Latency.Max, a.Latency.Max),
			CaddyCPU: ratio(b.CaddyCPU, a.CaddyCPU), RSS: ratio(b.CaddyRSSMiB, a.CaddyRSSMiB),
			AnonRSS: ratio(b.CaddyAnonRSSMiB, a.CaddyAnonRSSMiB),
		})
		if a.Mode == ModeFixed {
			added = append(added, AddedLatency{Upstream: a.Upstream, Rate: a.Rate,
				P50: round1(b.Latency.P50 - a.Latency.P50), P90: round1(b.Latency.P90 - a.Latency.P90),
				P99: round1(b.Latency.P99 - a.Latency.P99)})
		}
	}
	return ratios, added
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
