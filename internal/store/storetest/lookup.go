package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// testLookup checks the hot-path read: the enrollment and the token in one
// call, each nil when absent, and every change visible to the very next
// lookup however often the records were read before (a backend that
// caches decoded records must never serve a stale one).
func testLookup(t *testing.T, f Factory) {
	ctx := context.Background()
	c := NewClock(epoch)
	s := f.New(t, c.Now)
	h := hashOf("lookup")
	other := hashOf("absent")

	e, tok, err := s.Lookup(ctx, "E1", h)
	if err != nil || e != nil || tok != nil {
		t.Fatalf("empty store: Lookup = %v, %v, %v; want nil, nil, nil", e, tok, err)
	}
	createToken(t, s, newToken("lookup", c.Now()))
	e, tok, err = s.Lookup(ctx, "E1", h)
	if err != nil || e != nil || tok == nil {
		t.Fatalf("unbound token: Lookup = %v, %v, %v; want nil enrollment and the token", e, tok, err)
	}
	assertToken(t, tok, newToken("lookup", c.Now()))
	wantTok, wantE := bind(t, s, h, "E1", c.Now())

	// Read the records many times, then change each: the next lookup
	// sees the change.
	for range 3 {
		if _, _, err := s.Lookup(ctx, "E1", h); err != nil {
			t.Fatal(err)
		}
	}
	e, tok, err = s.Lookup(ctx, "E1", h)
	if err != nil {
		t.Fatal(err)
	}
	assertEnrollment(t, e, wantE)
	assertToken(t, tok, wantTok)

	// The caller owns what it gets: changing it changes nothing stored.
	tok.RevokedAt = c.Now()
	e.State = store.StateBlocked
	e2, tok2, err := s.Lookup(ctx, "E1", h)
	if err != nil {
		t.Fatal(err)
	}
	if !tok2.RevokedAt.IsZero() || e2.State != store.StateActive {
		t.Fatalf("a caller's change to a looked-up record leaked into the store: revoked %v, state %s", tok2.RevokedAt, e2.State)
	}

	c.Advance(time.Second)
	revokedAt := c.Now()
	if _, err := s.UpdateToken(ctx, h, func(t *store.Token) error { t.RevokedAt = revokedAt; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
		e.State = store.StateReauth
		return e, nil
	}); err != nil {
		t.Fatal(err)
	}
	e, tok, err = s.Lookup(ctx, "E1", h)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.RevokedAt.Equal(revokedAt) {
		t.Errorf("revocation not seen by the next lookup: revoked at %v, want %v", tok.RevokedAt, revokedAt)
	}
	if e.State != store.StateReauth {
		t.Errorf("state change not seen by the next lookup: %s", e.State)
	}
	// Also through the single-record reads.
	if got, err := s.Token(ctx, h); err != nil || !got.RevokedAt.Equal(revokedAt) {
		t.Errorf("Token after revocation = %+v, %v", got, err)
	}
	if got, err := s.Enrollment(ctx, "E1"); err != nil || got.State != store.StateReauth {
		t.Errorf("Enrollment after state change = %+v, %v", got, err)
	}

	// Without a hash only the enrollment is read; an unknown hash is nil.
	e, tok, err = s.Lookup(ctx, "E1", store.Hash{})
	if err != nil || e == nil || tok != nil {
		t.Errorf("Lookup without hash = %v, %v, %v; want the enrollment only", e, tok, err)
	}
	e, tok, err = s.Lookup(ctx, "E1", other)
	if err != nil || e == nil || tok != nil {
		t.Errorf("Lookup of an unknown token = %v, %v, %v; want the enrollment and nil", e, tok, err)
	}
}
