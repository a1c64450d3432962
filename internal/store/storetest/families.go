package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

var (
	// errReused is what rotations in the suite return when the refresh
	// token presented is no longer the family's current one.
	errReused = errors.New("storetest: refresh token reused")
	// errTorn is returned by rotations that find a record no complete
	// rotation could have written.
	errTorn = errors.New("storetest: inconsistent family record")
)

// refreshHash is the hash of the refresh token of family id's generation
// gen.
func refreshHash(id string, gen uint64) store.Hash {
	return hashOf(fmt.Sprintf("refresh-%s-%d", id, gen))
}

// newFamily returns a fully populated family at generation 0, started at
// now.
func newFamily(id string, now time.Time) *store.Family {
	return &store.Family{
		ID:             id,
		Issuer:         "https://idp.example.com",
		Subject:        "sub-" + id,
		SessionID:      "sid-" + id,
		UserIdentifier: id + "@example.com",
		ManagedAppleID: id + "@appleid.example.com",
		Mode:           "adde",
		ModelFamily:    "Mac",
		ClientID:       "client-" + id,
		Profile:        "profile-" + id,
		RequiredAppID:  requiredAppID,
		EnrollmentID:   "enrollment-" + id,
		SignedInAt:     now,
		RefreshHash:    refreshHash(id, 0),
		ExpiresAt:      now.Add(30 * 24 * time.Hour),
		IdPRefresh:     []byte("sealed-idp-refresh-" + id),
		IdPKeyID:       "key-1",
		RevalidatedAt:  now,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
}

// rotate returns an update function that replaces the refresh token
// presented (generation gen of the family) by the next one, and refuses
// with errReused once the family has moved on.
func rotate(now time.Time, gen uint64) func(*store.Family) error {
	return func(f *store.Family) error {
		if f.RefreshHash != refreshHash(f.ID, gen) {
			return errReused
		}
		return advance(now)(f)
	}
}

// advance returns an update function that rotates the family's refresh
// token whatever its generation, checking that the record it read is one
// a complete rotation wrote.
func advance(now time.Time) func(*store.Family) error {
	return func(f *store.Family) error {
		g := f.Generation
		if f.RefreshHash != refreshHash(f.ID, g) || (g > 0 && f.PreviousHash != refreshHash(f.ID, g-1)) {
			return errTorn
		}
		f.PreviousHash = f.RefreshHash
		f.RefreshHash = refreshHash(f.ID, g+1)
		f.Generation = g + 1
		f.RotatedAt = now
		f.UpdatedAt = now
		return nil
	}
}

// createFamily stores a new family and fails the test on error.
func createFamily(t *testing.T, s store.Store, f *store.Family) {
	t.Helper()
	if err := s.CreateFamily(context.Background(), f); err != nil {
		t.Fatalf("CreateFamily(%q): %v", f.ID, err)
	}
}

// mustFamily reads a family and fails the test on error.
func mustFamily(t *testing.T, s store.Store, id string) *store.Family {
	t.Helper()
	got, err := s.Family(context.Background(), id)
	if err != nil {
		t.Fatalf("Family(%q): %v", id, err)
	}
	if got == nil {
		t.Fatalf("Family(%q) returned nil without error", id)
	}
	return got
}

// assertFamilyAbsent fails unless Family reports ErrNotFound.
func assertFamilyAbsent(t *testing.T, s store.Store, id string) {
	t.Helper()
	if f, err := s.Family(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Family(%q): got %+v, %v; want ErrNotFound", id, f, err)
	}
}

func testFamilies(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("CreateThenRead", func(t *testing.T) {
		s, c := open(t, f)
		want := newFamily("F1", c.Now())
		createFamily(t, s, want)
		assertFamily(t, mustFamily(t, s, "F1"), want)
	})

	t.Run("CreateDuplicateIsErrExists", func(t *testing.T) {
		s, c := open(t, f)
		orig := newFamily("F1", c.Now())
		createFamily(t, s, orig)
		dup := newFamily("F1", c.Now())
		dup.Subject = "someone-else"
		if err := s.CreateFamily(ctx, dup); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second CreateFamily: got %v, want ErrExists", err)
		}
		assertFamily(t, mustFamily(t, s, "F1"), orig)
	})

	t.Run("UnknownIsErrNotFound", func(t *testing.T) {
		s, c := open(t, f)
		assertFamilyAbsent(t, s, "nope")
		called := false
		_, err := s.UpdateFamily(ctx, "nope", func(f *store.Family) error {
			called = true
			return advance(c.Now())(f)
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("UpdateFamily: got %v, want ErrNotFound", err)
		}
		if called {
			t.Error("update function called for an unknown family")
		}
		assertFamilyAbsent(t, s, "nope")
	})

	t.Run("PrefixIDsAreDistinct", func(t *testing.T) {
		s, c := open(t, f)
		f1 := newFamily("F1", c.Now())
		createFamily(t, s, f1)
		assertFamilyAbsent(t, s, "F")
		ff := newFamily("F", c.Now())
		createFamily(t, s, ff)
		assertFamily(t, mustFamily(t, s, "F"), ff)
		assertFamily(t, mustFamily(t, s, "F1"), f1)
	})

	t.Run("RotateWrites", func(t *testing.T) {
		s, c := open(t, f)
		want := newFamily("F1", c.Now())
		createFamily(t, s, want)
		c.Advance(time.Hour)
		got, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error {
			assertFamily(t, f, want)
			if err := rotate(c.Now(), 0)(f); err != nil {
				return err
			}
			f.ExpiresAt = c.Now().Add(30 * 24 * time.Hour)
			f.RevalidatedAt = c.Now()
			f.IdPRefresh = []byte("sealed-idp-refresh-2")
			f.IdPKeyID = "key-2"
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		want.PreviousHash = want.RefreshHash
		want.RefreshHash = refreshHash("F1", 1)
		want.Generation = 1
		want.RotatedAt = c.Now()
		want.UpdatedAt = c.Now()
		want.ExpiresAt = c.Now().Add(30 * 24 * time.Hour)
		want.RevalidatedAt = c.Now()
		want.IdPRefresh = []byte("sealed-idp-refresh-2")
		want.IdPKeyID = "key-2"
		assertFamily(t, got, want)
		assertFamily(t, mustFamily(t, s, "F1"), want)

		// The refresh token that was replaced is now a reuse.
		if _, err := s.UpdateFamily(ctx, "F1", rotate(c.Now(), 0)); !errors.Is(err, errReused) {
			t.Fatalf("rotation of the replaced refresh token: got %v, want the function's error", err)
		}
		assertFamily(t, mustFamily(t, s, "F1"), want)
	})

	t.Run("UpdateErrorWritesNothing", func(t *testing.T) {
		s, c := open(t, f)
		want := newFamily("F1", c.Now())
		createFamily(t, s, want)
		_, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error {
			f.RevokedAt = c.Now()
			f.RevokeReason = "reuse"
			f.Generation = 7
			f.IdPRefresh[0] ^= 0xff
			return errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("UpdateFamily: got %v, want the function's error", err)
		}
		assertFamily(t, mustFamily(t, s, "F1"), want)
	})

	t.Run("RevokedAndExpiredStillReadable", func(t *testing.T) {
		s, c := open(t, f)
		want := newFamily("F1", c.Now())
		want.ExpiresAt = c.Now().Add(time.Hour)
		createFamily(t, s, want)
		c.Advance(time.Minute)
		revokedAt := c.Now()
		got, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error {
			f.RevokedAt = revokedAt
			f.RevokeReason = "reuse"
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		want.RevokedAt = revokedAt
		want.RevokeReason = "reuse"
		assertFamily(t, got, want)
		// Revoked and expired families stay readable, so a late refresh
		// is recognised and refused.
		c.Advance(48 * time.Hour)
		assertFamily(t, mustFamily(t, s, "F1"), want)
	})

	t.Run("ConcurrentRotationsNoLostUpdate", func(t *testing.T) {
		s, c := open(t, f)
		createFamily(t, s, newFamily("F1", c.Now()))
		const n = 20
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			gens  [n]uint64
			errs  [n]error
		)
		for i := range n {
			wg.Go(func() {
				<-start
				got, err := s.UpdateFamily(ctx, "F1", advance(c.Now()))
				errs[i] = err
				if err == nil {
					gens[i] = got.Generation
				}
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent rotation %d: %v", i, err)
			}
		}
		// Every rotation saw the one before it: the generations handed
		// out are exactly 1..n.
		sorted := slices.Clone(gens[:])
		slices.Sort(sorted)
		for i, g := range sorted {
			if g != uint64(i+1) {
				t.Fatalf("concurrent rotations returned generations %v, want each of 1..%d once", sorted, n)
			}
		}
		got := mustFamily(t, s, "F1")
		if got.Generation != n {
			t.Fatalf("after %d concurrent rotations the generation is %d: updates were lost", n, got.Generation)
		}
		if got.RefreshHash != refreshHash("F1", n) || got.PreviousHash != refreshHash("F1", n-1) {
			t.Fatalf("after %d concurrent rotations the refresh hashes are not those of generations %d and %d", n, n, n-1)
		}
	})

	t.Run("ConcurrentReuseOneWinner", func(t *testing.T) {
		s, c := open(t, f)
		createFamily(t, s, newFamily("F1", c.Now()))
		const n = 20
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			mu     sync.Mutex
			wins   int
			others []error
		)
		for range n {
			wg.Go(func() {
				<-start
				// Every caller presents the generation-0 refresh token.
				_, err := s.UpdateFamily(ctx, "F1", rotate(c.Now(), 0))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, errReused):
					others = append(others, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d of %d concurrent rotations of one refresh token succeeded, want exactly 1", wins, n)
		}
		for _, err := range others {
			t.Errorf("losing rotation: got %v, want the function's error", err)
		}
		if got := mustFamily(t, s, "F1").Generation; got != 1 {
			t.Fatalf("generation is %d after one successful rotation, want 1", got)
		}
	})

	t.Run("ReturnsCopies", func(t *testing.T) {
		s, c := open(t, f)
		in := newFamily("F1", c.Now())
		want := newFamily("F1", c.Now())
		createFamily(t, s, in)
		in.Subject = "changed-after-create"
		in.IdPRefresh[0] ^= 0xff
		assertFamily(t, mustFamily(t, s, "F1"), want)

		got := mustFamily(t, s, "F1")
		got.Subject = "changed-after-read"
		got.IdPRefresh[0] ^= 0xff
		assertFamily(t, mustFamily(t, s, "F1"), want)

		var seen *store.Family
		upd, err := s.UpdateFamily(ctx, "F1", func(f *store.Family) error {
			seen = f
			return advance(c.Now())(f)
		})
		if err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		if err := advance(c.Now())(want); err != nil {
			t.Fatal(err)
		}
		upd.Subject = "changed-after-update"
		upd.IdPRefresh[0] ^= 0xff
		seen.RevokeReason = "changed-after-return"
		seen.IdPRefresh[1] ^= 0xff
		assertFamily(t, mustFamily(t, s, "F1"), want)
	})
}

// newFamilyToken returns a token issued in the family.
func newFamilyToken(seed, family string, now time.Time) *store.Token {
	tok := newToken(seed, now)
	tok.Mode = "adde"
	tok.FamilyID = family
	return tok
}

// assertFamilyListed checks that TokensForFamily(id) lists exactly want, in
// any order, with their current contents.
func assertFamilyListed(t *testing.T, s store.Store, id string, want ...*store.Token) {
	t.Helper()
	got, err := s.TokensForFamily(context.Background(), id)
	if err != nil {
		t.Fatalf("TokensForFamily(%q): %v", id, err)
	}
	assertSameTokens(t, fmt.Sprintf("TokensForFamily(%q)", id), got, want)
}

func testTokensForFamily(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("UnknownIsEmpty", func(t *testing.T) {
		s, c := open(t, f)
		createToken(t, s, newToken("web", c.Now()))
		got, err := s.TokensForFamily(ctx, "nope")
		if err != nil || len(got) != 0 {
			t.Fatalf("TokensForFamily: got %d tokens, %v; want none, nil", len(got), err)
		}
	})

	t.Run("ListsOnlyTheFamily", func(t *testing.T) {
		s, c := open(t, f)
		createFamily(t, s, newFamily("F", c.Now()))
		createFamily(t, s, newFamily("F1", c.Now()))
		toks := map[string]*store.Token{
			"f1": newFamilyToken("f1", "F", c.Now()),
			"f2": newFamilyToken("f2", "F", c.Now()),
			"g1": newFamilyToken("g1", "F1", c.Now()),
			"w1": newToken("w1", c.Now()), // web sign-in, no family
			"w2": newToken("w2", c.Now()),
		}
		for _, tok := range toks {
			createToken(t, s, tok)
		}
		// Binding goes through the same write path; the family is kept.
		toks["f1"], _ = bind(t, s, toks["f1"].Hash, "E1", c.Now())
		toks["w2"], _ = bind(t, s, toks["w2"].Hash, "E1", c.Now())
		if got := toks["f1"].FamilyID; got != "F" {
			t.Fatalf("Bind dropped the family: FamilyID %q", got)
		}

		// "F" is a prefix of "F1": neither picks up the other's tokens.
		assertFamilyListed(t, s, "F", toks["f1"], toks["f2"])
		assertFamilyListed(t, s, "F1", toks["g1"])
		assertFamilyListed(t, s, "F2")
		assertListed(t, s, "E1", toks["f1"], toks["w2"])

		// Revoked and expired tokens stay listed, with their current state.
		c.Advance(time.Minute)
		revoked, err := s.UpdateToken(ctx, toks["f2"].Hash, func(tok *store.Token) error {
			tok.RevokedAt = c.Now()
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
		c.Advance(48 * time.Hour)
		assertFamilyListed(t, s, "F", toks["f1"], revoked)
	})

	t.Run("WithoutFamilyRecord", func(t *testing.T) {
		// The listing follows the tokens, not the family record.
		s, c := open(t, f)
		tok := newFamilyToken("a", "F9", c.Now())
		createToken(t, s, tok)
		assertFamilyListed(t, s, "F9", tok)
		assertFamilyAbsent(t, s, "F9")
	})
}
