package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// errRefused is what update functions in the suite return to abort.
var errRefused = errors.New("storetest: refused")

// requiredAppID is the RequiredAppID of the suite's tokens, codes and
// families. It is above 2^53, so a backend that passes it through a float
// loses it.
const requiredAppID int64 = 1<<53 + 1

// newToken returns a fully populated token issued at now.
func newToken(seed string, now time.Time) *store.Token {
	return &store.Token{
		Hash:           hashOf(seed),
		Issuer:         "https://idp.example.com",
		Subject:        "sub-" + seed,
		SessionID:      "sid-" + seed,
		UserIdentifier: seed + "@example.com",
		ManagedAppleID: seed + "@appleid.example.com",
		Mode:           "byod",
		ModelFamily:    "iPhone",
		IssuedAt:       now,
		ExpiresAt:      now.Add(24 * time.Hour),
		Profile:        "profile-" + seed,
		RequiredAppID:  requiredAppID,
	}
}

// createToken stores a new token and fails the test on error.
func createToken(t *testing.T, s store.Store, tok *store.Token) {
	t.Helper()
	if err := s.CreateToken(context.Background(), tok); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
}

// mustToken reads a token and fails the test on error.
func mustToken(t *testing.T, s store.Store, h store.Hash) *store.Token {
	t.Helper()
	got, err := s.Token(context.Background(), h)
	if err != nil {
		t.Fatalf("Token(%s): %v", h.ID(), err)
	}
	if got == nil {
		t.Fatalf("Token(%s) returned nil without error", h.ID())
	}
	return got
}

func testTokens(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("CreateThenRead", func(t *testing.T) {
		s, c := open(t, f)
		want := newToken("a", c.Now())
		createToken(t, s, want)
		assertToken(t, mustToken(t, s, want.Hash), want)
	})

	t.Run("CreateDuplicateIsErrExists", func(t *testing.T) {
		s, c := open(t, f)
		orig := newToken("a", c.Now())
		createToken(t, s, orig)
		dup := newToken("a", c.Now())
		dup.Subject = "someone-else"
		if err := s.CreateToken(ctx, dup); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second CreateToken: got %v, want ErrExists", err)
		}
		assertToken(t, mustToken(t, s, orig.Hash), orig)
	})

	t.Run("UnknownIsErrNotFound", func(t *testing.T) {
		s, _ := open(t, f)
		if _, err := s.Token(ctx, hashOf("nope")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Token: got %v, want ErrNotFound", err)
		}
	})

	t.Run("ReturnsCopies", func(t *testing.T) {
		s, c := open(t, f)
		want := newToken("a", c.Now())
		createToken(t, s, want)
		want.Subject = "changed-after-create"
		got := mustToken(t, s, want.Hash)
		if got.Subject != "sub-a" {
			t.Fatalf("stored token changed with the caller's copy: Subject %q", got.Subject)
		}
		got.Subject = "changed-after-read"
		if again := mustToken(t, s, want.Hash); again.Subject != "sub-a" {
			t.Fatalf("stored token changed with a returned copy: Subject %q", again.Subject)
		}
	})

	t.Run("UpdateWrites", func(t *testing.T) {
		s, c := open(t, f)
		want := newToken("a", c.Now())
		createToken(t, s, want)
		got, err := s.UpdateToken(ctx, want.Hash, func(tok *store.Token) error {
			assertToken(t, tok, want)
			tok.ManagedAppleID = "new@appleid.example.com"
			tok.ExpiresAt = tok.ExpiresAt.Add(time.Hour)
			// A changed profile is written, a cleared app id stays cleared.
			tok.Profile = "kiosk"
			tok.RequiredAppID = 0
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
		want.ManagedAppleID = "new@appleid.example.com"
		want.ExpiresAt = want.ExpiresAt.Add(time.Hour)
		want.Profile = "kiosk"
		want.RequiredAppID = 0
		assertToken(t, got, want)
		assertToken(t, mustToken(t, s, want.Hash), want)
	})

	t.Run("UpdateErrorWritesNothing", func(t *testing.T) {
		s, c := open(t, f)
		want := newToken("a", c.Now())
		createToken(t, s, want)
		_, err := s.UpdateToken(ctx, want.Hash, func(tok *store.Token) error {
			tok.Subject = "mutated"
			tok.RevokedAt = c.Now()
			return errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("UpdateToken: got %v, want the function's error", err)
		}
		assertToken(t, mustToken(t, s, want.Hash), want)
	})

	t.Run("UpdateUnknownIsErrNotFound", func(t *testing.T) {
		s, _ := open(t, f)
		called := false
		_, err := s.UpdateToken(ctx, hashOf("nope"), func(*store.Token) error {
			called = true
			return nil
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("UpdateToken: got %v, want ErrNotFound", err)
		}
		if called {
			t.Error("update function called for an unknown token")
		}
		if _, err := s.Token(ctx, hashOf("nope")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Token after UpdateToken of unknown: got %v, want ErrNotFound", err)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		s, c := open(t, f)
		want := newToken("a", c.Now())
		createToken(t, s, want)
		c.Advance(time.Minute)
		revokedAt := c.Now()
		got, err := s.UpdateToken(ctx, want.Hash, func(tok *store.Token) error {
			tok.RevokedAt = revokedAt
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
		want.RevokedAt = revokedAt
		assertToken(t, got, want)
		// Revoked tokens stay readable, so a replay is recognised.
		c.Advance(time.Hour)
		assertToken(t, mustToken(t, s, want.Hash), want)
	})

	t.Run("ExpiredStillReadable", func(t *testing.T) {
		s, c := open(t, f)
		old := newToken("old", c.Now().Add(-48*time.Hour)) // expired a day ago
		createToken(t, s, old)
		cur := newToken("cur", c.Now())
		createToken(t, s, cur)
		c.Advance(25 * time.Hour) // cur expired an hour ago
		assertToken(t, mustToken(t, s, old.Hash), old)
		assertToken(t, mustToken(t, s, cur.Hash), cur)
	})

	t.Run("ConcurrentUpdatesAreAtomic", func(t *testing.T) {
		s, c := open(t, f)
		tok := newToken("a", c.Now())
		tok.SessionID = ""
		createToken(t, s, tok)
		const n = 10
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				_, err := s.UpdateToken(ctx, tok.Hash, func(tok *store.Token) error {
					tok.SessionID += "x"
					return nil
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent UpdateToken: %v", err)
			}
		}
		if got := mustToken(t, s, tok.Hash).SessionID; got != strings.Repeat("x", n) {
			t.Fatalf("after %d concurrent appends SessionID is %q: updates were lost", n, got)
		}
	})
}
