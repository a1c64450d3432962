package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// TestLookupIsOneStatement: once its connection has prepared it, a Lookup
// is one statement, one round trip, with the token or without, found or
// not; no transaction around it.
func TestLookupIsOneStatement(t *testing.T) {
	ctx := context.Background()
	tr := &tracer{}
	now := time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)
	s := openStore(t, Options{Now: func() time.Time { return now }, Tracer: tr, MaxConns: 1})
	h := hash("device")
	if err := s.CreateToken(ctx, &store.Token{Hash: h, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Bind(ctx, h, "E1", func(tok *store.Token, _ *store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{State: store.StateActive, TokenHash: tok.Hash}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lookup(ctx, "E1", h); err != nil { // prepares it
		t.Fatal(err)
	}
	for _, c := range []struct {
		id       string
		h        store.Hash
		e, token bool
	}{
		{"E1", h, true, true},
		{"E1", store.Hash{}, true, false},
		{"E2", h, false, true},
		{"E2", hash("other"), false, false},
	} {
		tr.reset()
		e, tok, err := s.Lookup(ctx, c.id, c.h)
		if err != nil || (e != nil) != c.e || (tok != nil) != c.token {
			t.Fatalf("Lookup(%q, %s) = %v, %v, %v", c.id, c.h.ID(), e, tok, err)
		}
		queries, prepares := tr.counts()
		if len(queries) != 1 || prepares != 0 {
			t.Errorf("Lookup(%q, %s) ran %d statements %q and %d preparations, want 1 and 0", c.id, c.h.ID(), len(queries), queries, prepares)
		}
	}
}
