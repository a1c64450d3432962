package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// Options configure Run. Zero sizes take the defaults of DefaultOptions;
// a phase is skipped when its selector is empty or zero.
type Options struct {
	// TB owns the processes and temporary directories (a *testing.T or a
	// testenv.Scope). Required.
	TB testenv.TB
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)

	// Devices is the fleet of the A/B runs: enrolled devices, each with a
	// bearer token bound to its enrollment.
	Devices int
	// Connections is the number of concurrent connections (closed loop:
	// requests in flight).
	Connections int
	// Duration of each measured run, after Warmup.
	Duration, Warmup time.Duration
	// Rounds is how often the A, B sequence repeats.
	Rounds int
	// RateFraction of A's max rate is the fixed (open-loop) rate.
	RateFraction float64
	// ResultShare is the fraction of requests that are command results.
	ResultShare float64
	// MaxRequests bounds each measured run (besides Duration).
	MaxRequests int64
	// Upstreams to run A and B against; empty skips the A/B runs.
	Upstreams []Upstream
	// Postgres adds configuration C (B with the PostgreSQL store, on a
	// private PostgreSQL server) to the A/B runs, and the PostgreSQL
	// store's benchmark to the Go benchmarks. It needs the PostgreSQL
	// server binaries (testenv.PostgresBinDir).
	Postgres bool

	// ScaleSizes are the numbers of live tokens of the scale runs
	// (ascending); empty skips them.
	ScaleSizes []int

	// EnrollConcurrency full enrollments run at once, EnrollMax in all,
	// for at most EnrollDuration; zero concurrency skips them.
	EnrollConcurrency int
	EnrollMax         int
	EnrollDuration    time.Duration
	// EnrollUsers is the number of accounts at the OpenID provider.
	EnrollUsers int

	// GoBench runs the hot-path Go benchmarks with GoBenchTime
	// (go test -benchtime).
	GoBench     bool
	GoBenchTime string

	// ProfileDir, when set, receives Caddy's CPU and allocation profiles
	// of an extra run of B (and with Postgres of C) against the fast
	// upstream.
	ProfileDir string

	// PreloadDir is where stores are filled before being copied next to
	// the other files (a tmpfs such as /dev/shm makes the synced writes
	// of the preload cheap); empty fills them in place.
	PreloadDir string
	// CaddyBinary is Caddy with mdm_auth; empty builds it (testenv).
	CaddyBinary string
	// UpstreamExecutable is a program that calls MaybeServeUpstream;
	// empty means this executable.
	UpstreamExecutable string
	// RepoRoot is the module root for the Go benchmarks; empty finds it.
	RepoRoot string
}

// DefaultOptions are the sizes of the default run (about 15 minutes on
// two cores).
func DefaultOptions() Options {
	return Options{
		Devices: 10_000, Connections: 32, Duration: 10 * time.Second, Warmup: 2 * time.Second,
		Rounds: 2, RateFraction: 0.5, ResultShare: 0.1, MaxRequests: 5_000_000,
		Upstreams:         []Upstream{UpstreamFast, UpstreamNanoMDM},
		Postgres:          true,
		ScaleSizes:        []int{10_000, 100_000},
		EnrollConcurrency: 8, EnrollMax: 2000, EnrollDuration: 20 * time.Second, EnrollUsers: 16,
		GoBench: true, GoBenchTime: "1s",
	}
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func (o *Options) check() error {
	switch {
	case o.TB == nil:
		return errors.New("bench: Options.TB is required")
	case o.Connections <= 0 || o.Duration <= 0 || o.Rounds <= 0:
		return errors.New("bench: Connections, Duration and Rounds must be positive")
	case (len(o.Upstreams) > 0 || o.ProfileDir != "") && o.Devices <= 0:
		return errors.New("bench: the A/B runs and the profiles need devices")
	case o.EnrollConcurrency > 0 && (o.EnrollMax <= 0 || o.EnrollDuration <= 0 || o.EnrollUsers <= 0):
		return errors.New("bench: the enrollment runs need EnrollMax, EnrollDuration and EnrollUsers")
	case o.RateFraction <= 0 || o.RateFraction > 1:
		return errors.New("bench: RateFraction must be in (0, 1]")
	}
	for _, u := range o.Upstreams {
		if u != UpstreamFast && u != UpstreamNanoMDM {
			return fmt.Errorf("bench: unknown upstream %q", u)
		}
	}
	for i, n := range o.ScaleSizes {
		if n <= 0 || (i > 0 && n <= o.ScaleSizes[i-1]) {
			return errors.New("bench: scale sizes must be positive and ascending")
		}
	}
	return nil
}

// Run builds what is missing, starts the deployment and runs the selected
// phases, one Caddy at a time: the A/B (and C) runs, the profiles, the scale runs,
// the enrollments, then the Go benchmarks. The report's targets are
// evaluated.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	start := time.Now()
	r := &Report{Machine: ReadMachine(), Started: start.UTC().Truncate(time.Second), Settings: Settings{
		Devices: o.Devices, Connections: o.Connections, DurationSeconds: o.Duration.Seconds(),
		WarmupSeconds: o.Warmup.Seconds(), Rounds: o.Rounds, RateFraction: o.RateFraction,
		ResultShare: o.ResultShare, Upstreams: o.Upstreams, ScaleSizes: o.ScaleSizes,
		EnrollConcurrency: o.EnrollConcurrency, EnrollMax: o.EnrollMax,
		Postgres: o.Postgres && len(o.Upstreams) > 0,
	}}
	if len(o.Upstreams) == 0 {
		r.Settings.Devices = 0
	}
	if o.PreloadDir != "" {
		r.Notes = append(r.Notes, "Token stores were filled in "+o.PreloadDir+" and copied next to Caddy's files before use.")
	}
	e, err := startEnv(&o)
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	tokens := NewTokens(seed[:])

	mainStore := filepath.Join(e.dir, "store")
	var fleet *PreparedFleet
	signature := ""
	if len(o.Upstreams) > 0 || o.ProfileDir != "" {
		if fleet, signature, err = e.setupFleet(ctx, &r.Setup, tokens, mainStore); err != nil {
			return nil, fmt.Errorf("bench: fleet: %w", err)
		}
	}
	if len(o.Upstreams) > 0 {
		if r.Rounds, err = e.loadPhase(ctx, fleet, mainStore); err != nil {
			return nil, fmt.Errorf("bench: A/B runs: %w", err)
		}
		r.Load = aggregate(r.Rounds)
		r.Ratios, r.Added = compare(r.Load)
		if e.pg != nil {
			r.Postgres = postgresFigures(r.Load, r.Added, o.Devices, e.pgStoreBytes)
			if r.Postgres != nil {
				r.Postgres.Version, r.Postgres.SharedBuffers = e.pgVersion, e.pgBuffers
			}
		}
	}
	if o.ProfileDir != "" {
		if r.Profiles, err = e.profilePhase(ctx, fleet, mainStore); err != nil {
			return nil, fmt.Errorf("bench: profiles: %w", err)
		}
	}
	if len(o.ScaleSizes) > 0 {
		if signature == "" {
			if signature, err = e.someSignature(ctx, tokens); err != nil {
				return nil, err
			}
		}
		if r.Scale, err = e.scalePhase(ctx, tokens, signature); err != nil {
			return nil, fmt.Errorf("bench: scale runs: %w", err)
		}
	}
	if o.EnrollConcurrency > 0 {
		if r.Enrollment, err = e.enrollPhase(ctx, mainStore); err != nil {
			return nil, fmt.Errorf("bench: enrollments: %w", err)
		}
	}
	if o.GoBench {
		root := o.RepoRoot
		if root == "" {
			if root, err = testenv.RepoRoot(); err != nil {
				return nil, err
			}
		}
		pkgs := GoBenchPackages
		if o.Postgres {
			pkgs = append(slices.Clip(pkgs), GoBenchPostgresPackage)
		}
		o.logf("Go benchmarks: %v", pkgs)
		if r.GoBench, err = RunGoBench(ctx, root, o.GoBenchTime, pkgs); err != nil {
			return nil, err
		}
	}
	r.Targets = Evaluate(r)
	r.Seconds = round1(time.Since(start).Seconds())
	return r, nil
}

// setupFleet makes the devices, preloads their tokens and enrollments,
// checks them in at NanoMDM through the gateway and prepares their
// requests.
func (e *env) setupFleet(ctx context.Context, s *Setup, tokens Tokens, dir string) (*PreparedFleet, string, error) {
	o := e.o
	t0 := time.Now()
	o.logf("fleet: %d devices (identities from the CA)", o.Devices)
	devs, err := e.newFleetDevices(ctx, o.Devices, tokens)
	if err != nil {
		return nil, "", err
	}
	s.FleetSeconds = time.Since(t0).Seconds()

	t0 = time.Now()
	o.logf("fleet: preloading %d tokens bound to their enrollments", o.Devices)
	if err := e.preloadStore(ctx, dir, 0, o.Devices, func(i int) Binding { return fleetBinding(devs, i) }); err != nil {
		return nil, "", err
	}
	s.PreloadSeconds = round3(time.Since(t0).Seconds())
	if e.pg != nil {
		t0 = time.Now()
		o.logf("fleet: preloading the same %d tokens into PostgreSQL (configuration C)", o.Devices)
		if e.pgStoreBytes, err = e.preloadPostgres(ctx, 0, o.Devices, func(i int) Binding { return fleetBinding(devs, i) }); err != nil {
			return nil, "", fmt.Errorf("postgres: %w", err)
		}
		s.PostgresPreloadSeconds = round3(time.Since(t0).Seconds())
	}

	if contains(o.Upstreams, UpstreamNanoMDM) {
		c, err := e.startCaddy(ConfigB, UpstreamNanoMDM, dir)
		if err != nil {
			return nil, "", err
		}
		t0 = time.Now()
		o.logf("fleet: Authenticate and TokenUpdate of every device at NanoMDM, through the gateway")
		err = checkIn(ctx, devs, o.Connections)
		if stopErr := c.Stop(); err == nil {
			err = stopErr
		}
		if err != nil {
			return nil, "", err
		}
		s.NanoMDMSeconds = round3(time.Since(t0).Seconds())
	}

	t0 = time.Now()
	o.logf("fleet: signing each device's requests once")
	fleet, err := prepareFleet(ctx, devs)
	if err != nil {
		return nil, "", err
	}
	s.FleetSeconds = round3(s.FleetSeconds + time.Since(t0).Seconds())
	p, err := devs[0].PrepareIdle(device.DeviceChannel)
	if err != nil {
		return nil, "", err
	}
	return fleet, p.Header.Get("Mdm-Signature"), nil
}

// someSignature returns a real Mdm-Signature (of one device's Idle) for
// the synthetic fleet when no fleet was made.
func (e *env) someSignature(ctx context.Context, tokens Tokens) (string, error) {
	devs, err := e.newFleetDevices(ctx, 1, tokens)
	if err != nil {
		return "", err
	}
	p, err := devs[0].PrepareIdle(device.DeviceChannel)
	if err != nil {
		return "", err
	}
	return p.Header.Get("Mdm-Signature"), nil
}

// preloadStore adds bindings [from, to) to the store that ends up in dir:
// filled in the preload directory, then copied (see Options.PreloadDir).
func (e *env) preloadStore(ctx context.Context, dir string, from, to int, at func(int) Binding) error {
	work := dir
	if e.temp != e.dir {
		work = filepath.Join(e.temp, filepath.Base(dir))
	}
	s, err := badger.Open(badger.Options{Dir: work, GCInterval: -1})
	if err != nil {
		return err
	}
	err = Preload(ctx, s, from, to, at, PreloadOptions{Issuer: e.idp.Issuer, Now: time.Now(), TTL: 90 * 24 * time.Hour,
		Progress: func(n int) { e.o.logf("  … %d written", from+n) }})
	if err == nil {
		// A store that has been serving for a while is compacted; one
		// just filled is not, and Caddy would start by compacting it.
		err = s.Compact(ctx)
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil || work == dir {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return copyDir(work, dir)
}

// copyDir copies the regular files of src (Badger keeps a flat directory)
// into a new directory dst.
func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, en := range entries {
		if !en.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(src, en.Name()), filepath.Join(dst, en.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// dirSize is the total size of the regular files in dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}
