package soak

import (
	"errors"
	"fmt"
	"time"

	"github.com/mdmauth/mdmauth/internal/testenv"
)

// Options configure a soak run. DefaultOptions gives the documented run
// (10,000 devices for 30 minutes); zero values of the sizes mean their
// defaults.
type Options struct {
	// TB owns the processes and temporary directories (a *testing.T, or a
	// testenv.Scope in a program).
	TB testenv.TB
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)

	// Devices is the size of the fleet; Users the provider accounts they
	// belong to (device i to user i mod Users).
	Devices int
	Users   int
	// OAuth2Share is the share of devices enrolled through the site with
	// sign_in oauth2 (silent refreshes); the others use the web sign-in
	// site.
	OAuth2Share float64

	// Duration is the measured run; Warmup its first part, whose samples
	// are not judged; SampleEvery the sampling period.
	Duration    time.Duration
	Warmup      time.Duration
	SampleEvery time.Duration

	// Rate bounds the device visits per second (each visit is one or a
	// few MDM requests); Workers is how many visits run at a time. The load
	// paces itself: when the machine cannot keep the rate (a slow CI
	// runner, the race detector), visits simply come later.
	Rate    float64
	Workers int

	// Shares of the visits (the rest report Status Idle). A visit may
	// start with an admin action (revoke the token, revoke the
	// enrollment's tokens, force re-authentication, or block then unblock),
	// carry a command queued at NanoMDM (then acknowledged), send a
	// TokenUpdate check-in, or re-enroll the device (CheckOut, then a new
	// enrollment with a new identity).
	AdminShare    float64
	CommandShare  float64
	CheckInShare  float64
	ReenrollShare float64
	// ExpireShare is the share of the fleet's first tokens that expire
	// during the run (spread over it); the others outlive it.
	ExpireShare float64

	// Judging.
	Goroutines Tolerance
	FDs        Tolerance
	Memory     Tolerance // anonymous resident memory, in bytes
	Store      StoreLimits

	// CaddyBinary is a Caddy with mdm_auth; empty builds ./cmd/caddy.
	CaddyBinary string
	// Seed makes the run's choices (which device gets which action)
	// repeatable; 0 picks one.
	Seed uint64
}

// DefaultOptions returns the documented soak: 10,000 devices for 30
// minutes.
func DefaultOptions() Options {
	return Options{
		Devices:       10000,
		Users:         100,
		OAuth2Share:   0.5,
		Duration:      30 * time.Minute,
		Rate:          200,
		Workers:       16,
		AdminShare:    0.005,
		CommandShare:  0.1,
		CheckInShare:  0.05,
		ReenrollShare: 0.001,
		ExpireShare:   1,
		Goroutines:    Tolerance{Rel: 0.1, Abs: 50},
		FDs:           Tolerance{Rel: 0.1, Abs: 30},
		Memory:        Tolerance{Rel: 0.2, Abs: 32 << 20},
		Store: StoreLimits{MaxRatio: 4, Slack: 64 << 20, Overhead: Tolerance{Rel: 0.5, Abs: 32 << 20},
			PerWrite: 4 << 10, GrowthSlack: 1 << 20},
	}
}

// withDefaults fills the derived values and checks o.
func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o.Devices == 0 {
		o.Devices = d.Devices
	}
	if o.Users == 0 {
		o.Users = d.Users
	}
	if o.Users > o.Devices {
		o.Users = o.Devices
	}
	if o.Duration == 0 {
		o.Duration = d.Duration
	}
	if o.Warmup == 0 {
		o.Warmup = o.Duration / 6
	}
	if o.SampleEvery == 0 {
		o.SampleEvery = max(o.Duration/60, time.Second)
	}
	if o.Workers == 0 {
		o.Workers = d.Workers
	}
	// A worker holds a device for its whole visit: leave devices to go
	// round.
	o.Workers = min(o.Workers, max(o.Devices/2, 1))
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	switch {
	case o.TB == nil:
		return o, errors.New("soak: Options.TB is required")
	case o.Devices < 2:
		return o, fmt.Errorf("soak: %d devices: need at least 2", o.Devices)
	case o.Duration < 10*time.Second:
		return o, fmt.Errorf("soak: duration %s: need at least 10s", o.Duration)
	case o.Warmup < 0 || o.Warmup >= o.Duration:
		return o, fmt.Errorf("soak: warm-up %s must be shorter than the duration %s", o.Warmup, o.Duration)
	case (o.Duration-o.Warmup)/o.SampleEvery < MinJudgedSamples:
		return o, fmt.Errorf("soak: sampling every %s leaves fewer than %d samples after the warm-up", o.SampleEvery, MinJudgedSamples)
	case o.Rate < 0 || o.Workers < 1:
		return o, errors.New("soak: the rate must not be negative and at least one worker is needed")
	}
	for _, s := range []float64{o.OAuth2Share, o.AdminShare, o.CommandShare, o.CheckInShare, o.ReenrollShare, o.ExpireShare} {
		if s < 0 || s > 1 {
			return o, fmt.Errorf("soak: share %g is not in [0, 1]", s)
		}
	}
	if o.CommandShare+o.CheckInShare+o.ReenrollShare > 1 {
		return o, errors.New("soak: the command, check-in and re-enrollment shares add up to more than 1")
	}
	return o, nil
}
