package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// bindFunc is the usual Bind function: it creates the enrollment on first
// bind and makes tok its current token.
func bindFunc(now time.Time) func(*store.Token, *store.Enrollment) (*store.Enrollment, error) {
	return func(tok *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
		if e == nil {
			e = &store.Enrollment{State: store.StateActive, CreatedAt: now}
		}
		e.Issuer, e.Subject = tok.Issuer, tok.Subject
		e.ManagedAppleID, e.Mode = tok.ManagedAppleID, tok.Mode
		e.TokenHash = tok.Hash
		e.UpdatedAt = now
		return e, nil
	}
}

// bind binds the token to the enrollment with bindFunc and fails the test on
// error.
func bind(t *testing.T, s store.Store, h store.Hash, id string, now time.Time) (*store.Token, *store.Enrollment) {
	t.Helper()
	tok, e, err := s.Bind(context.Background(), h, id, func(tok *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
		e, err := bindFunc(now)(tok, e)
		if e != nil {
			e.ID = id
		}
		return e, err
	})
	if err != nil {
		t.Fatalf("Bind(%s, %q): %v", h.ID(), id, err)
	}
	return tok, e
}

func testBind(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("FirstBindWritesBoth", func(t *testing.T) {
		s, c := open(t, f)
		tok := newToken("a", c.Now())
		createToken(t, s, tok)
		c.Advance(time.Minute)

		var want *store.Enrollment
		gotTok, gotEnr, err := s.Bind(ctx, tok.Hash, "E1", func(bt *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
			assertToken(t, bt, tok)
			if e != nil {
				t.Errorf("Bind got enrollment %+v, want nil", *e)
			}
			// Changes fn makes to the token are written too.
			bt.ModelFamily = "iPad"
			want = newEnrollment("E1", bt, c.Now())
			cp := *want
			return &cp, nil
		})
		if err != nil {
			t.Fatalf("Bind: %v", err)
		}
		// The store records the binding itself.
		tok.EnrollmentID = "E1"
		tok.ModelFamily = "iPad"
		assertToken(t, gotTok, tok)
		assertEnrollment(t, gotEnr, want)
		assertToken(t, mustToken(t, s, tok.Hash), tok)
		assertEnrollment(t, mustEnrollment(t, s, "E1"), want)
	})

	t.Run("ExistingEnrollmentPassedIn", func(t *testing.T) {
		s, c := open(t, f)
		tok := newToken("a", c.Now())
		createToken(t, s, tok)
		want := newEnrollment("E1", tok, c.Now())
		want.Platform = store.PlatformMac
		if _, err := s.UpdateEnrollment(ctx, "E1", func(*store.Enrollment) (*store.Enrollment, error) {
			return want, nil
		}); err != nil {
			t.Fatalf("UpdateEnrollment: %v", err)
		}
		_, _, err := s.Bind(ctx, tok.Hash, "E1", func(_ *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
			if e == nil {
				t.Fatal("Bind got nil for an existing enrollment")
			}
			assertEnrollment(t, e, want)
			return e, nil
		})
		if err != nil {
			t.Fatalf("Bind: %v", err)
		}
		assertEnrollment(t, mustEnrollment(t, s, "E1"), want)
	})

	t.Run("ErrorLeavesBothUntouched", func(t *testing.T) {
		s, c := open(t, f)
		tok := newToken("a", c.Now())
		createToken(t, s, tok)
		other := newToken("b", c.Now())
		createToken(t, s, other)
		wantTok, wantEnr := bind(t, s, tok.Hash, "E1", c.Now())

		_, _, err := s.Bind(ctx, tok.Hash, "E1", func(bt *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
			bt.RevokedAt = c.Now()
			e.State = store.StateBlocked
			return e, errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("Bind: got %v, want the function's error", err)
		}
		// A refused bind of another token leaves both untouched as well.
		_, _, err = s.Bind(ctx, other.Hash, "E1", func(bt *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
			e.TokenHash = bt.Hash
			return e, errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("Bind: got %v, want the function's error", err)
		}
		// And so does a refused bind to a new enrollment.
		_, _, err = s.Bind(ctx, other.Hash, "E2", func(bt *store.Token, _ *store.Enrollment) (*store.Enrollment, error) {
			return newEnrollment("E2", bt, c.Now()), errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("Bind: got %v, want the function's error", err)
		}

		assertToken(t, mustToken(t, s, tok.Hash), wantTok)
		assertToken(t, mustToken(t, s, other.Hash), other)
		assertEnrollment(t, mustEnrollment(t, s, "E1"), wantEnr)
		assertEnrollmentAbsent(t, s, "E2")
		assertListed(t, s, "E1", wantTok)
		assertListed(t, s, "E2")
	})

	t.Run("UnknownTokenIsErrNotFound", func(t *testing.T) {
		s, c := open(t, f)
		called := false
		_, _, err := s.Bind(ctx, hashOf("nope"), "E1", func(tok *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
			called = true
			return bindFunc(c.Now())(tok, e)
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Bind: got %v, want ErrNotFound", err)
		}
		if called {
			t.Error("bind function called for an unknown token")
		}
		assertEnrollmentAbsent(t, s, "E1")
	})

	t.Run("RebindSeesPreviousBinding", func(t *testing.T) {
		s, c := open(t, f)
		tok := newToken("a", c.Now())
		createToken(t, s, tok)
		bind(t, s, tok.Hash, "E1", c.Now())
		_, _, err := s.Bind(ctx, tok.Hash, "E2", func(bt *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
			if bt.EnrollmentID != "E1" {
				t.Errorf("Bind passed EnrollmentID %q, want the previous binding E1", bt.EnrollmentID)
			}
			e, err := bindFunc(c.Now())(bt, e)
			e.ID = "E2"
			return e, err
		})
		if err != nil {
			t.Fatalf("Bind: %v", err)
		}
		if got := mustToken(t, s, tok.Hash).EnrollmentID; got != "E2" {
			t.Fatalf("after rebind EnrollmentID is %q, want E2", got)
		}
	})
}

// assertListed checks that TokensForEnrollment(id) lists exactly want, in
// any order, with their current contents.
func assertListed(t *testing.T, s store.Store, id string, want ...*store.Token) {
	t.Helper()
	got, err := s.TokensForEnrollment(context.Background(), id)
	if err != nil {
		t.Fatalf("TokensForEnrollment(%q): %v", id, err)
	}
	assertSameTokens(t, fmt.Sprintf("TokensForEnrollment(%q)", id), got, want)
}

// assertSameTokens checks that a listing got holds exactly want, in any
// order, with their current contents.
func assertSameTokens(t *testing.T, what string, got, want []*store.Token) {
	t.Helper()
	byHash := func(a, b *store.Token) int { return slices.Compare(a.Hash[:], b.Hash[:]) }
	got = slices.Clone(got)
	want = slices.Clone(want)
	slices.SortFunc(got, byHash)
	slices.SortFunc(want, byHash)
	if len(got) != len(want) {
		ids := func(ts []*store.Token) (s []string) {
			for _, t := range ts {
				s = append(s, t.ID())
			}
			return s
		}
		t.Fatalf("%s = %v, want %v", what, ids(got), ids(want))
	}
	for i := range got {
		assertToken(t, got[i], want[i])
	}
}

func testTokensForEnrollment(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("UnknownIsEmpty", func(t *testing.T) {
		s, _ := open(t, f)
		got, err := s.TokensForEnrollment(ctx, "nope")
		if err != nil || len(got) != 0 {
			t.Fatalf("TokensForEnrollment: got %d tokens, %v; want none, nil", len(got), err)
		}
	})

	t.Run("BindsAndRebinds", func(t *testing.T) {
		s, c := open(t, f)
		toks := map[string]*store.Token{}
		for _, seed := range []string{"t1", "t2", "t3", "t4"} {
			toks[seed] = newToken(seed, c.Now())
			createToken(t, s, toks[seed])
		}
		for _, b := range []struct{ seed, id string }{
			{"t1", "E1"}, {"t2", "E1"}, {"t3", "E2"},
			{"t1", "E1"}, // binding again is listed once
		} {
			toks[b.seed], _ = bind(t, s, toks[b.seed].Hash, b.id, c.Now())
		}
		// An id that is a prefix of another must not pick up its tokens.
		assertListed(t, s, "E", nil...)
		assertListed(t, s, "E1", toks["t1"], toks["t2"])
		assertListed(t, s, "E2", toks["t3"])

		// t2 moves to E2: it is no longer listed under E1.
		toks["t2"], _ = bind(t, s, toks["t2"].Hash, "E2", c.Now())
		assertListed(t, s, "E1", toks["t1"])
		assertListed(t, s, "E2", toks["t2"], toks["t3"])

		// Revoked and expired tokens stay listed, with their current state.
		c.Advance(time.Minute)
		revoked, err := s.UpdateToken(ctx, toks["t1"].Hash, func(tok *store.Token) error {
			tok.RevokedAt = c.Now()
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
		c.Advance(48 * time.Hour)
		assertListed(t, s, "E1", revoked)

		// t4 was never bound.
		if got := mustToken(t, s, toks["t4"].Hash).EnrollmentID; got != "" {
			t.Fatalf("unbound token has EnrollmentID %q", got)
		}
	})
}
