// Package soak runs the short soak of mdm_auth in CI: 1,000 emulated
// devices for 2 minutes against real parts (Caddy built from this
// repository, NanoMDM v0.9.0, the zitadel example OpenID provider, Badger
// on disk), with tokens expiring, refreshing and revoked through the admin
// API. The long soak is cmd/mdmsoak; docs/soak.md explains both.
package soak

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/soak"
)

// TestShortSoak fails on any unexpected answer or error and on growth of
// Caddy's goroutines, open files or memory, or of its store beyond its
// live data. The load paces itself (at most 60 device visits a second on
// 8 workers): under the race detector, or on a busy runner, the fleet is
// visited less often, and the growth verdicts compare medians of samples
// taken on a clock, not figures per request.
func TestShortSoak(t *testing.T) {
	o := soak.DefaultOptions()
	o.TB = t
	o.Logf = t.Logf
	o.Devices = 1000
	o.Users = 50
	o.Duration = 2 * time.Minute
	o.Warmup = 30 * time.Second
	o.SampleEvery = 4 * time.Second
	o.Rate = 60
	o.Workers = 8
	// Enough of the rare kinds to happen a few times in two minutes on a
	// slow machine.
	o.AdminShare = 0.01
	o.ReenrollShare = 0.004
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := soak.Run(ctx, o)
	if err != nil {
		t.Fatalf("the soak could not run: %v", err)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", b.String())
	for _, c := range r.Criteria {
		if !c.Pass {
			t.Errorf("%s: %s (limit %s)", c.Name, c.Measured, c.Limit)
		}
	}
	if !r.Pass {
		t.Error("the soak failed")
	}
}
