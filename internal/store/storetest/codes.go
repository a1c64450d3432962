package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

var (
	// errPeek aborts the update functions peekCode uses to read a code.
	errPeek = errors.New("storetest: peek")
	// errUsed is what redemptions in the suite return for a used code.
	errUsed = errors.New("storetest: code already used")
)

// newCode returns a fully populated, unused authorization code issued at
// now and valid for a minute.
func newCode(seed string, now time.Time) *store.Code {
	return &store.Code{
		Hash:           hashOf("code-" + seed),
		ClientID:       "client-" + seed,
		RedirectURI:    "https://client.example.com/callback/" + seed,
		CodeChallenge:  "challenge-" + seed,
		Issuer:         "https://idp.example.com",
		Subject:        "sub-" + seed,
		SessionID:      "sid-" + seed,
		UserIdentifier: seed + "@example.com",
		ManagedAppleID: seed + "@appleid.example.com",
		Mode:           "byod",
		ModelFamily:    "iPhone",
		EnrollmentID:   "enrollment-" + seed,
		Profile:        "profile-" + seed,
		RequiredAppID:  requiredAppID,
		SignedInAt:     now,
		IdPRefresh:     []byte("sealed-idp-refresh-" + seed),
		IdPKeyID:       "key-1",
		ExpiresAt:      now.Add(time.Minute),
	}
}

// createCode stores a new code and fails the test on error.
func createCode(t *testing.T, s store.Store, c *store.Code) {
	t.Helper()
	if err := s.CreateCode(context.Background(), c); err != nil {
		t.Fatalf("CreateCode: %v", err)
	}
}

// peekCode reads a code without changing it (the store has no plain
// getter): its update function copies the record and aborts.
func peekCode(t *testing.T, s store.Store, h store.Hash) *store.Code {
	t.Helper()
	var got *store.Code
	_, err := s.UpdateCode(context.Background(), h, func(c *store.Code) error {
		cp := *c
		cp.IdPRefresh = bytes.Clone(c.IdPRefresh)
		got = &cp
		return errPeek
	})
	if !errors.Is(err, errPeek) {
		t.Fatalf("reading code %s: got %v, want the function's error", h.ID(), err)
	}
	if got == nil {
		t.Fatalf("reading code %s: update function not called", h.ID())
	}
	return got
}

// assertCodeAbsent fails unless UpdateCode reports ErrNotFound without
// calling its function.
func assertCodeAbsent(t *testing.T, s store.Store, h store.Hash) {
	t.Helper()
	called := false
	_, err := s.UpdateCode(context.Background(), h, func(*store.Code) error {
		called = true
		return errPeek
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateCode(%s): got %v, want ErrNotFound", h.ID(), err)
	}
	if called {
		t.Fatalf("UpdateCode(%s): update function called for an unknown code", h.ID())
	}
}

// redeem is the usual redemption: it marks an unused code used by family
// and refuses a used one with errUsed.
func redeem(now time.Time, family string) func(*store.Code) error {
	return func(c *store.Code) error {
		if !c.UsedAt.IsZero() {
			return errUsed
		}
		c.UsedAt = now
		c.FamilyID = family
		return nil
	}
}

func testCodes(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("CreateThenRead", func(t *testing.T) {
		s, c := open(t, f)
		want := newCode("a", c.Now())
		createCode(t, s, want)
		assertCode(t, peekCode(t, s, want.Hash), want)
	})

	t.Run("CreateDuplicateIsErrExists", func(t *testing.T) {
		s, c := open(t, f)
		orig := newCode("a", c.Now())
		createCode(t, s, orig)
		dup := newCode("a", c.Now())
		dup.Subject = "someone-else"
		if err := s.CreateCode(ctx, dup); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second CreateCode: got %v, want ErrExists", err)
		}
		assertCode(t, peekCode(t, s, orig.Hash), orig)

		// A used code cannot be replaced by a fresh one either.
		if _, err := s.UpdateCode(ctx, orig.Hash, redeem(c.Now(), "F1")); err != nil {
			t.Fatalf("UpdateCode: %v", err)
		}
		if err := s.CreateCode(ctx, newCode("a", c.Now())); !errors.Is(err, store.ErrExists) {
			t.Fatalf("CreateCode over a used code: got %v, want ErrExists", err)
		}
		if got := peekCode(t, s, orig.Hash); got.UsedAt.IsZero() || got.FamilyID != "F1" {
			t.Fatalf("used code was reset: UsedAt %v, FamilyID %q", got.UsedAt, got.FamilyID)
		}
	})

	t.Run("UnknownIsErrNotFound", func(t *testing.T) {
		s, _ := open(t, f)
		assertCodeAbsent(t, s, hashOf("nope"))
		// The failed update created nothing.
		assertCodeAbsent(t, s, hashOf("nope"))
	})

	t.Run("SeparateFromTokens", func(t *testing.T) {
		s, c := open(t, f)
		tok := newToken("a", c.Now())
		code := newCode("a", c.Now())
		code.Hash = tok.Hash
		createToken(t, s, tok)
		createCode(t, s, code)
		assertToken(t, mustToken(t, s, tok.Hash), tok)
		assertCode(t, peekCode(t, s, code.Hash), code)
		assertCodeAbsent(t, s, hashOf("b"))
		createToken(t, s, newToken("b", c.Now()))
		assertCodeAbsent(t, s, hashOf("b"))
	})

	t.Run("RedeemWrites", func(t *testing.T) {
		s, c := open(t, f)
		want := newCode("a", c.Now())
		createCode(t, s, want)
		c.Advance(10 * time.Second)
		got, err := s.UpdateCode(ctx, want.Hash, func(code *store.Code) error {
			assertCode(t, code, want)
			return redeem(c.Now(), "F1")(code)
		})
		if err != nil {
			t.Fatalf("UpdateCode: %v", err)
		}
		want.UsedAt = c.Now()
		want.FamilyID = "F1"
		assertCode(t, got, want)
		assertCode(t, peekCode(t, s, want.Hash), want)

		// A second redemption sees the first.
		if _, err := s.UpdateCode(ctx, want.Hash, redeem(c.Now(), "F2")); !errors.Is(err, errUsed) {
			t.Fatalf("second redemption: got %v, want the function's error", err)
		}
		assertCode(t, peekCode(t, s, want.Hash), want)
	})

	t.Run("UpdateErrorWritesNothing", func(t *testing.T) {
		s, c := open(t, f)
		want := newCode("a", c.Now())
		createCode(t, s, want)
		_, err := s.UpdateCode(ctx, want.Hash, func(code *store.Code) error {
			code.UsedAt = c.Now()
			code.FamilyID = "F1"
			code.Subject = "mutated"
			code.IdPRefresh[0] ^= 0xff
			return errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("UpdateCode: got %v, want the function's error", err)
		}
		assertCode(t, peekCode(t, s, want.Hash), want)
	})

	t.Run("ExpiredCodesAreKeptForTheCaller", func(t *testing.T) {
		s, c := open(t, f)
		used := newCode("used", c.Now())
		createCode(t, s, used)
		if _, err := s.UpdateCode(ctx, used.Hash, redeem(c.Now(), "F1")); err != nil {
			t.Fatalf("UpdateCode: %v", err)
		}
		used.UsedAt, used.FamilyID = c.Now(), "F1"
		unused := newCode("unused", c.Now())
		createCode(t, s, unused)

		// Past expiry, within the minute codes are kept: a replay of the
		// used code is recognised, and the store leaves the decision about
		// the expired one to the caller.
		c.Advance(time.Minute + 30*time.Second)
		if _, err := s.UpdateCode(ctx, used.Hash, redeem(c.Now(), "F2")); !errors.Is(err, errUsed) {
			t.Fatalf("replay after expiry: got %v, want the function's error", err)
		}
		assertCode(t, peekCode(t, s, used.Hash), used)
		assertCode(t, peekCode(t, s, unused.Hash), unused)
	})

	t.Run("ConcurrentRedemptionsOneWinner", func(t *testing.T) {
		s, c := open(t, f)
		code := newCode("a", c.Now())
		createCode(t, s, code)
		const n = 20
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			mu     sync.Mutex
			winner = -1
			wins   int
			others []error
		)
		for i := range n {
			wg.Go(func() {
				<-start
				got, err := s.UpdateCode(ctx, code.Hash, redeem(c.Now(), fmt.Sprintf("F%d", i)))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					winner = i
					if got.FamilyID != fmt.Sprintf("F%d", i) {
						others = append(others, fmt.Errorf("winner %d got FamilyID %q", i, got.FamilyID))
					}
				case !errors.Is(err, errUsed):
					others = append(others, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d of %d concurrent redemptions succeeded, want exactly 1", wins, n)
		}
		for _, err := range others {
			t.Errorf("losing redemption: got %v, want the function's error", err)
		}
		code.UsedAt = c.Now()
		code.FamilyID = fmt.Sprintf("F%d", winner)
		assertCode(t, peekCode(t, s, code.Hash), code)
	})

	t.Run("ReturnsCopies", func(t *testing.T) {
		s, c := open(t, f)
		in := newCode("a", c.Now())
		want := newCode("a", c.Now())
		createCode(t, s, in)
		in.Subject = "changed-after-create"
		in.IdPRefresh[0] ^= 0xff
		assertCode(t, peekCode(t, s, want.Hash), want)

		var seen *store.Code
		got, err := s.UpdateCode(ctx, want.Hash, func(code *store.Code) error {
			seen = code
			return redeem(c.Now(), "F1")(code)
		})
		if err != nil {
			t.Fatalf("UpdateCode: %v", err)
		}
		want.UsedAt, want.FamilyID = c.Now(), "F1"
		got.Subject = "changed-after-update"
		got.IdPRefresh[0] ^= 0xff
		seen.FamilyID = "changed-after-return"
		seen.IdPRefresh[1] ^= 0xff
		assertCode(t, peekCode(t, s, want.Hash), want)
	})
}
