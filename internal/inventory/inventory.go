// Package inventory summarises what the store holds: enrollments by state
// and mode, live tokens and token families, pending sign-ins, and the
// enrollment funnel (sign-ins whose device never reached a first check-in).
// The admin API and the metrics read it; it only reads the store.
package inventory

import (
	"context"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// DefaultStallAfter is how long after a sign-in a device that has not
// checked in counts as stalled.
const DefaultStallAfter = 15 * time.Minute

// FunnelWindow bounds how far back stalled sign-ins are counted, so that the
// figure describes recent rollouts rather than history.
const FunnelWindow = 24 * time.Hour

// Stats are the counts at one instant. The admin API answers them as
// JSON.
type Stats struct {
	// Enrollments counts enrollments by state, and EnrollmentsByMode the
	// ones not removed by mode ("byod", "adde").
	Enrollments       map[store.State]int `json:"enrollments"`
	EnrollmentsByMode map[string]int      `json:"enrollments_by_mode"`
	// LiveTokens are access tokens neither expired nor revoked.
	LiveTokens int `json:"live_tokens"`
	// LiveFamilies are OAuth 2 token families neither expired nor revoked.
	LiveFamilies int `json:"live_families"`
	// PendingSignIns are sign-ins started in a browser and not finished.
	PendingSignIns int `json:"pending_sign_ins"`
	// SignIns counts the sign-ins of the last FunnelWindow, and Stalled
	// those of them older than StallAfter whose device never reached a
	// first check-in: the trace of a failed Managed Apple Account sign-in
	// or a profile that never installed.
	SignIns int `json:"sign_ins_24h"`
	Stalled int `json:"stalled_24h"`
	// StallAfter is the threshold Stalled was computed with, and
	// StallAfterSeconds the same in whole seconds.
	StallAfter        time.Duration `json:"-"`
	StallAfterSeconds int64         `json:"stall_after_seconds"`
	// StoreBytes is the store's size on disk (-1 when unknown).
	StoreBytes int64 `json:"store_bytes"`
	// At is when the counts were taken.
	At time.Time `json:"at"`
}

// Compute walks the store once and returns its Stats at now.
func Compute(ctx context.Context, st store.Inventory, now time.Time, stallAfter time.Duration) (*Stats, error) {
	if stallAfter <= 0 {
		stallAfter = DefaultStallAfter
	}
	s := &Stats{
		Enrollments:       map[store.State]int{},
		EnrollmentsByMode: map[string]int{},
		StallAfter:        stallAfter,
		StallAfterSeconds: int64(stallAfter / time.Second),
		At:                now,
	}
	for _, st := range []store.State{store.StateActive, store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved} {
		s.Enrollments[st] = 0
	}
	err := st.ScanEnrollments(ctx, "", func(e *store.Enrollment) bool {
		s.Enrollments[e.State]++
		if e.State != store.StateRemoved && e.Mode != "" {
			s.EnrollmentsByMode[e.Mode]++
		}
		return ctx.Err() == nil
	})
	if err != nil {
		return nil, err
	}
	since, stalledBefore := now.Add(-FunnelWindow), now.Add(-stallAfter)
	funnel := func(started time.Time, enrollmentID string) {
		if started.Before(since) || started.After(now) {
			return
		}
		s.SignIns++
		if enrollmentID == "" && started.Before(stalledBefore) {
			s.Stalled++
		}
	}
	err = st.ScanTokens(ctx, nil, func(t *store.Token) bool {
		if t.RevokedAt.IsZero() && now.Before(t.ExpiresAt) {
			s.LiveTokens++
		}
		if t.FamilyID == "" {
			// A web sign-in issues one token; OAuth 2 sign-ins are
			// counted once, by their family.
			funnel(t.IssuedAt, t.EnrollmentID)
		}
		return ctx.Err() == nil
	})
	if err != nil {
		return nil, err
	}
	err = st.ScanFamilies(ctx, "", func(f *store.Family) bool {
		if f.RevokedAt.IsZero() && now.Before(f.ExpiresAt) {
			s.LiveFamilies++
		}
		funnel(f.SignedInAt, f.EnrollmentID)
		return ctx.Err() == nil
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.PendingSignIns, err = st.CountLoginStates(ctx); err != nil {
		return nil, err
	}
	if s.StoreBytes, err = st.Size(ctx); err != nil {
		return nil, err
	}
	return s, nil
}
