// Command mdmbench measures what mdm_auth costs on the MDM's hot path. In
// one run, on loopback, it builds Caddy from this repository, starts
// NanoMDM v0.9.0, the zitadel example OpenID provider and a minimal
// upstream, and measures:
//
//   - A (Caddy reverse_proxy alone) against B (mdm_auth + reverse_proxy),
//     alternated A B A B, in front of the minimal upstream and of NanoMDM,
//     with a fleet of enrolled devices sending signed Status Idle and
//     command results with their bearer tokens, at max rate and at a fixed
//     rate: requests/s, latency percentiles, errors, Caddy's CPU per
//     1,000 requests, peak RSS and its anonymous (heap) and file-backed
//     (mapped store) parts, B/A ratios, added latency;
//   - C (B with the PostgreSQL store, on a private PostgreSQL server) in
//     the same runs: its figures next to A and B, C/A and C/B, the
//     database server's CPU per 1,000 requests and connections, and
//     sizing per 10,000 devices (-postgres=false skips it);
//   - B with 10k, 100k (and with -scale-full 1M) live tokens in the store;
//   - full enrollments through the gateway and the real provider;
//   - the hot path's Go benchmarks;
//
// then prints the tables, checks the targets and writes the figures as
// JSON (.bin/mdmbench.json). See docs/benchmarks.md.
//
//	go run ./cmd/mdmbench                      # the default run (about 15 min on 2 cores)
//	go run ./cmd/mdmbench -quick               # a smoke run of a minute or two
//	go run ./cmd/mdmbench -postgres=false      # without configuration C
//	go run ./cmd/mdmbench -scale-full -pprof prof -docs docs/benchmarks.md
//	go run ./cmd/mdmbench -from .bin/mdmbench.json -docs docs/benchmarks.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdmauth/mdmauth/internal/bench"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// defaultOut is where the figures go unless -out says otherwise: .bin is
// not under version control.
const defaultOut = ".bin/mdmbench.json"

func main() {
	bench.MaybeServeUpstream() // the fast upstream is this program, started again
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "mdmbench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	d := bench.DefaultOptions()
	var (
		devices      = flag.Int("devices", d.Devices, "enrolled devices of the A/B runs")
		conns        = flag.Int("conns", d.Connections, "concurrent connections (requests in flight at max rate)")
		duration     = flag.Duration("duration", d.Duration, "length of each measured run")
		warmup       = flag.Duration("warmup", d.Warmup, "unmeasured load before each measured run")
		rounds       = flag.Int("rounds", d.Rounds, "how often A and B alternate")
		rateFraction = flag.Float64("rate-fraction", d.RateFraction, "the fixed rate as a fraction of A's max rate")
		resultShare  = flag.Float64("result-share", d.ResultShare, "fraction of requests that are command results (the rest: Status Idle)")
		maxRequests  = flag.Int64("max-requests", d.MaxRequests, "bound on the requests of one measured run")
		upstreams    = flag.String("upstreams", joinUpstreams(d.Upstreams), `A/B runs against "fast", "nanomdm" or both; "" skips them`)
		pg           = flag.Bool("postgres", d.Postgres, "add configuration C (B with the PostgreSQL store) to the A/B runs and the PostgreSQL store's Go benchmark; needs the PostgreSQL server binaries")
		scale        = flag.String("scale", joinInts(d.ScaleSizes), `live tokens of the scale runs, ascending; "" skips them`)
		scaleFull    = flag.Bool("scale-full", false, "add a scale run with 1,000,000 live tokens (preloading takes minutes)")
		enrollConc   = flag.Int("enroll-concurrency", d.EnrollConcurrency, "full enrollments at a time; 0 skips them")
		enrollMax    = flag.Int("enroll-max", d.EnrollMax, "bound on the number of full enrollments")
		enrollDur    = flag.Duration("enroll-duration", d.EnrollDuration, "bound on the time of the full enrollments")
		goBench      = flag.Bool("gobench", d.GoBench, "run the hot path's Go benchmarks")
		goBenchTime  = flag.String("gobench-time", d.GoBenchTime, "go test -benchtime of the Go benchmarks")
		pprofDir     = flag.String("pprof", "", "directory for Caddy's CPU and allocation profiles of an extra B (and C) run (fast upstream)")
		preloadDir   = flag.String("preload-dir", defaultPreloadDir(), "where stores are filled before use (a tmpfs makes it fast); \"\" fills them in place")
		caddyBin     = flag.String("caddy", "", "Caddy with mdm_auth to use instead of building ./cmd/caddy")
		out          = flag.String("out", defaultOut, `write the figures as JSON to this file (relative to the repository when left as is); "" does not`)
		docs         = flag.String("docs", "", "replace the results section of this Markdown file (docs/benchmarks.md)")
		from         = flag.String("from", "", "do not measure: render the figures of this JSON file")
		quick        = flag.Bool("quick", false, "tiny sizes: a smoke run of a minute or two")
		verbose      = flag.Bool("v", false, "also print the test environment's messages")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: mdmbench [flags]\n\nMeasures mdm_auth against a plain reverse_proxy; see docs/benchmarks.md.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	var r *bench.Report
	if *from != "" {
		var err error
		if r, err = bench.ReadJSON(*from); err != nil {
			return err
		}
	} else {
		o := d
		o.Devices, o.Connections, o.Duration, o.Warmup, o.Rounds = *devices, *conns, *duration, *warmup, *rounds
		o.RateFraction, o.ResultShare, o.MaxRequests = *rateFraction, *resultShare, *maxRequests
		o.EnrollConcurrency, o.EnrollMax, o.EnrollDuration = *enrollConc, *enrollMax, *enrollDur
		o.GoBench, o.GoBenchTime, o.Postgres = *goBench, *goBenchTime, *pg
		o.ProfileDir, o.PreloadDir, o.CaddyBinary = *pprofDir, *preloadDir, *caddyBin
		var err error
		if o.Upstreams, err = parseUpstreams(*upstreams); err != nil {
			return err
		}
		if o.ScaleSizes, err = parseInts(*scale); err != nil {
			return err
		}
		if *scaleFull && !containsInt(o.ScaleSizes, 1_000_000) {
			o.ScaleSizes = append(o.ScaleSizes, 1_000_000)
		}
		if *quick {
			applyQuick(&o)
		}
		if r, err = measure(o, *verbose); err != nil {
			return err
		}
	}
	if err := r.WriteText(os.Stdout); err != nil {
		return err
	}
	if *out != "" && *from == "" {
		path := *out
		if path == defaultOut {
			if root, err := testenv.RepoRoot(); err == nil {
				path = filepath.Join(root, defaultOut)
			}
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := r.WriteJSON(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Printf("\nfigures written to %s\n", path)
	}
	if *docs != "" {
		if err := bench.UpdateDocs(*docs, r); err != nil {
			return err
		}
		fmt.Printf("results section of %s updated\n", *docs)
	}
	return nil
}

// measure runs the harness in a scope that is cleaned up on return and on
// Ctrl-C.
func measure(o bench.Options, verbose bool) (*bench.Report, error) {
	start := time.Now()
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	var envLog func(string, ...any)
	if verbose {
		envLog = progress
	}
	var r *bench.Report
	err := testenv.RunScoped(envLog, func(ctx context.Context, scope *testenv.Scope) (err error) {
		o.TB, o.Logf = scope, progress
		if r, err = bench.Run(ctx, o); err != nil && ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return err
	})
	return r, err
}

// applyQuick shrinks every size for a smoke run.
func applyQuick(o *bench.Options) {
	o.Devices, o.Connections, o.Duration, o.Warmup, o.Rounds = 200, 8, 2*time.Second, 500*time.Millisecond, 1
	o.ScaleSizes = []int{1_000, 10_000}
	o.EnrollConcurrency, o.EnrollMax, o.EnrollDuration = 4, 40, 5*time.Second
	o.GoBenchTime = "100ms"
}

// defaultPreloadDir is /dev/shm when it is a writable directory.
func defaultPreloadDir() string {
	const shm = "/dev/shm"
	if st, err := os.Stat(shm); err == nil && st.IsDir() && syscall.Access(shm, 2 /* W_OK */) == nil {
		return shm
	}
	return ""
}

func parseUpstreams(s string) ([]bench.Upstream, error) {
	var out []bench.Upstream
	for _, f := range splitList(s) {
		u := bench.Upstream(f)
		if u != bench.UpstreamFast && u != bench.UpstreamNanoMDM {
			return nil, fmt.Errorf("-upstreams: unknown upstream %q (fast, nanomdm)", f)
		}
		out = append(out, u)
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-scale: %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func joinUpstreams(us []bench.Upstream) string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = string(u)
	}
	return strings.Join(s, ",")
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func containsInt(ns []int, v int) bool {
	for _, n := range ns {
		if n == v {
			return true
		}
	}
	return false
}
