package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mdmauth/mdmauth/internal/store/badger"
)

// usage is the CPU and memory a measured run cost.
type usage struct {
	caddy, upstream, self time.Duration
	// postgres is the CPU of the database server's process tree and
	// conns its client connections at the end of the run (C only).
	postgres time.Duration
	conns    int
	// rss is Caddy's peak resident set during the run (since its start
	// when the peak was not reset).
	rss int64
	// anon and file are the largest anonymous and file-backed parts of
	// Caddy's resident set in samples during the run and at its end.
	anon, file int64
}

// measure runs spec against the running Caddy c and reads the CPU time
// of Caddy, of the process at upstreamPID and of this process around it,
// and Caddy's resident set: its peak (VmHWM) and, sampled every
// memSampleInterval and at the end, its anonymous and file-backed parts.
// When c uses the PostgreSQL store, it also reads the CPU time of the
// database server's whole process tree (the postmaster, its background
// processes and the backends serving Caddy's connections) and counts
// Caddy's connections at the end. With resetPeak, Caddy's peak RSS is
// reset first, so the peak is the run's own.
func (e *env) measure(ctx context.Context, c *caddy, upstreamPID int, spec LoadSpec, resetPeak bool) (*LoadResult, usage, error) {
	pid := c.PID()
	if pid == 0 {
		return nil, usage{}, errors.New("caddy is not running")
	}
	if resetPeak {
		if err := ResetPeakRSS(pid); err != nil {
			e.o.logf("  (peak RSS not reset, reporting the peak since start: %v)", err)
		}
	}
	var dbBefore time.Duration
	var err error
	if c.postgres {
		if dbBefore, err = TreeCPU(e.pg.PID()); err != nil {
			return nil, usage{}, fmt.Errorf("reading postgres's /proc: %w", err)
		}
	}
	before, err := sampleAll(pid, upstreamPID)
	if err != nil {
		return nil, usage{}, err
	}
	mem := startMemSampler(func() (Memory, error) { return readMemory(pid) }, memSampleInterval)
	res, err := RunLoad(ctx, e.target(), spec)
	peak, memErr := mem.finish()
	if err != nil {
		return nil, usage{}, err
	}
	if memErr != nil {
		return nil, usage{}, fmt.Errorf("sampling caddy's memory: %w", memErr)
	}
	after, err := sampleAll(pid, upstreamPID)
	if err != nil {
		return nil, usage{}, err
	}
	var dbAfter time.Duration
	if c.postgres {
		if dbAfter, err = TreeCPU(e.pg.PID()); err != nil {
			return nil, usage{}, fmt.Errorf("reading postgres's /proc: %w", err)
		}
	}
	peak.add(before[0].Memory)
	peak.add(after[0].Memory)
	u := usage{
		caddy: after[0].CPU - before[0].CPU,
		self:  after[2].CPU - before[2].CPU,
		rss:   after[0].HWM,
		anon:  peak.anon,
		file:  peak.file,
	}
	if upstreamPID != 0 {
		u.upstream = after[1].CPU - before[1].CPU
	}
	if c.postgres {
		// Counted after the CPU readings: the counting connection's
		// backend is not part of the run's cost.
		u.postgres = dbAfter - dbBefore
		if u.conns, err = e.postgresConnections(ctx); err != nil {
			return nil, usage{}, fmt.Errorf("counting postgres connections: %w", err)
		}
	}
	return res, u, nil
}

// sampleAll reads Caddy, the upstream (0: none) and this process.
func sampleAll(caddyPID, upstreamPID int) ([3]ProcSample, error) {
	var s [3]ProcSample
	var err error
	if s[0], err = ReadProc(caddyPID); err != nil {
		return s, fmt.Errorf("reading caddy's /proc: %w", err)
	}
	if upstreamPID != 0 {
		if s[1], err = ReadProc(upstreamPID); err != nil {
			return s, fmt.Errorf("reading the upstream's /proc: %w", err)
		}
	}
	if s[2], err = ReadProc(0); err != nil {
		return s, err
	}
	return s, nil
}

// spec is the load of this run's options with fleet f.
func (e *env) spec(f Fleet, rate float64, d time.Duration, seed uint64) LoadSpec {
	return LoadSpec{Fleet: f, Connections: e.o.Connections, Duration: d, MaxRequests: e.o.MaxRequests,
		Rate: rate, ResultShare: e.o.ResultShare, Seed: seed}
}

// warm sends closed-loop load for the warm-up time (not measured).
func (e *env) warm(ctx context.Context, f Fleet) error {
	if e.o.Warmup <= 0 {
		return nil
	}
	res, err := RunLoad(ctx, e.target(), e.spec(f, 0, e.o.Warmup, 1))
	if err != nil {
		return err
	}
	if res.OK == 0 {
		return fmt.Errorf("warm-up: no request answered 200 (errors %v)", res.Errors)
	}
	return nil
}

// loadPhase alternates A and B (and C with Options.Postgres) for every
// upstream, round after round, each with a fresh Caddy: warm-up, max
// rate, then a fixed rate of RateFraction × A's max rate of the same
// round.
func (e *env) loadPhase(ctx context.Context, fleet Fleet, storage string) ([]LoadFigures, error) {
	o := e.o
	configs := []Config{ConfigA, ConfigB}
	if e.pg != nil {
		configs = append(configs, ConfigC)
	}
	var out []LoadFigures
	for round := 1; round <= o.Rounds; round++ {
		for _, up := range o.Upstreams {
			rate := 0.0
			for _, cfg := range configs {
				figs, err := e.runPair(ctx, fleet, storage, round, up, cfg, &rate)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s upstream, %s: %w", round, up, cfg, err)
				}
				out = append(out, figs...)
			}
		}
	}
	return out, nil
}

// runPair measures one configuration at max rate and at the fixed rate;
// A sets the rate, B and C reuse it.
func (e *env) runPair(ctx context.Context, fleet Fleet, storage string, round int, up Upstream, cfg Config, rate *float64) ([]LoadFigures, error) {
	c, err := e.startCaddy(cfg, up, storage)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	if err := e.warm(ctx, fleet); err != nil {
		return nil, err
	}
	// Each connection of every configuration in a round picks the same
	// devices.
	seed := uint64(round) << 1
	res, u, err := e.measure(ctx, c, e.upstreamPID(up), e.spec(fleet, 0, e.o.Duration, seed), true)
	if err != nil {
		return nil, err
	}
	maxFig := figures(up, cfg, ModeMax, round, 0, res, u)
	e.logRun(maxFig)
	if cfg == ConfigA {
		*rate = e.o.RateFraction * res.Rate()
	}
	if *rate <= 0 {
		return nil, errors.New("A answered nothing at max rate: no fixed rate to run at")
	}
	res, u, err = e.measure(ctx, c, e.upstreamPID(up), e.spec(fleet, *rate, e.o.Duration, seed+1), true)
	if err != nil {
		return nil, err
	}
	fixed := figures(up, cfg, ModeFixed, round, *rate, res, u)
	e.logRun(fixed)
	return []LoadFigures{maxFig, fixed}, c.Stop()
}

func (e *env) logRun(f LoadFigures) {
	db := ""
	if f.Config == ConfigC {
		db = fmt.Sprintf("  postgres %.3f CPU-s/1k, %d connections", f.PostgresCPU, f.PostgresConns)
	}
	e.o.logf("  round %d  %-7s %s  %-5s %8.0f req/s  p50 %7.1f µs  p99 %8.1f µs  caddy %.3f CPU-s/1k%s  rss %.0f MiB (anon %.0f, file %.0f)  errors %v",
		f.Round, f.Upstream, f.Config, f.Mode, f.RPS, f.Latency.P50, f.Latency.P99, f.CaddyCPU, db, f.CaddyRSSMiB, f.CaddyAnonRSSMiB, f.CaddyFileRSSMiB, f.Errors)
}

// profilePhase runs B (and C with Options.Postgres) against the fast
// upstream at max rate while fetching Caddy's CPU and allocation
// profiles from its admin endpoint.
func (e *env) profilePhase(ctx context.Context, fleet Fleet, storage string) ([]string, error) {
	if err := os.MkdirAll(e.o.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	configs := []Config{ConfigB}
	if e.pg != nil {
		configs = append(configs, ConfigC)
	}
	var files []string
	for _, cfg := range configs {
		f, err := e.profile(ctx, fleet, storage, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg, err)
		}
		files = append(files, f...)
	}
	return files, nil
}

// profile profiles one configuration for profilePhase.
func (e *env) profile(ctx context.Context, fleet Fleet, storage string, cfg Config) ([]string, error) {
	o := e.o
	c, err := e.startCaddy(cfg, UpstreamFast, storage)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	if err := e.warm(ctx, fleet); err != nil {
		return nil, err
	}
	secs := max(1, int(o.Duration.Seconds()))
	o.logf("profiles: CPU and allocations of Caddy (%s, fast upstream, max rate) for %d s", cfg, secs)
	files := []string{
		filepath.Join(o.ProfileDir, "caddy-"+string(cfg)+"-fast-cpu.pprof"),
		filepath.Join(o.ProfileDir, "caddy-"+string(cfg)+"-fast-allocs.pprof"),
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, name := range []string{"profile", "allocs"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.pprof(name, secs, files[i])
		}()
	}
	// The load outlasts the profiles a little.
	_, loadErr := RunLoad(ctx, e.target(), e.spec(fleet, 0, time.Duration(secs)*time.Second+time.Second, 99))
	wg.Wait()
	if err := errors.Join(append(errs, loadErr)...); err != nil {
		return nil, err
	}
	return files, c.Stop()
}

// scalePhase grows a store of synthetic devices through ScaleSizes and
// runs B against the fast upstream at max rate on each size, requests
// spread over every token.
func (e *env) scalePhase(ctx context.Context, tokens Tokens, signature string) ([]ScaleFigures, error) {
	o := e.o
	dir := filepath.Join(e.dir, "scale-store")
	var out []ScaleFigures
	have := 0
	for _, n := range o.ScaleSizes {
		o.logf("scale: %d live tokens", n)
		t0 := time.Now()
		if err := e.preloadStore(ctx, dir, have, n, func(i int) Binding { return SyntheticBinding(tokens, i) }); err != nil {
			return nil, err
		}
		f := ScaleFigures{Tokens: n, PreloadSeconds: round3(time.Since(t0).Seconds())}
		have = n
		size, err := dirSize(dir)
		if err != nil {
			return nil, err
		}
		f.StoreMiB = mib(size)
		t0 = time.Now()
		s, err := badger.Open(badger.Options{Dir: dir, GCInterval: -1})
		if err != nil {
			return nil, err
		}
		f.ReopenSeconds = round3(time.Since(t0).Seconds())
		if err := s.Close(); err != nil {
			return nil, err
		}
		fleet, err := NewSyntheticFleet(n, tokens, e.target().Addr, MDMPath, signature)
		if err != nil {
			return nil, err
		}
		c, err := e.startCaddy(ConfigB, UpstreamFast, dir)
		if err != nil {
			return nil, err
		}
		f.CaddyReadySeconds = round3(c.Ready.Seconds())
		if err := e.warm(ctx, fleet); err != nil {
			c.Stop()
			return nil, err
		}
		res, u, err := e.measure(ctx, c, e.upstreamPID(UpstreamFast), e.spec(fleet, 0, o.Duration, uint64(n)), false)
		if stopErr := c.Stop(); err == nil {
			err = stopErr
		}
		if err != nil {
			return nil, err
		}
		lf := figures(UpstreamFast, ConfigB, ModeMax, 0, 0, res, u)
		f.Requests, f.Errors, f.RPS, f.Latency, f.CaddyCPU = lf.Requests, lf.Errors, lf.RPS, lf.Latency, lf.CaddyCPU
		f.CaddyRSSMiB, f.CaddyAnonRSSMiB, f.CaddyFileRSSMiB = lf.CaddyRSSMiB, lf.CaddyAnonRSSMiB, lf.CaddyFileRSSMiB
		o.logf("  %d tokens: preload %.1f s, store %.1f MiB, reopen %.3f s, caddy ready %.2f s, %.0f req/s, p50 %.1f µs, p99 %.1f µs, rss %.0f MiB (anon %.0f, file %.0f), errors %v",
			n, f.PreloadSeconds, f.StoreMiB, f.ReopenSeconds, f.CaddyReadySeconds, f.RPS, f.Latency.P50, f.Latency.P99,
			f.CaddyRSSMiB, f.CaddyAnonRSSMiB, f.CaddyFileRSSMiB, f.Errors)
		out = append(out, f)
	}
	return out, nil
}
