package storetest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// user is an (iss, sub) pair.
type user struct{ iss, sub string }

// collidingUsers are users whose issuer and subject run together into the
// same bytes when simply concatenated, with or without a zero byte between
// them, or are prefixes of one another.
var collidingUsers = []user{
	{"a\x00b", "c"},
	{"a", "b\x00c"},
	{"ab", "c"},
	{"a", "bc"},
	{"a", "b"},
	{"ab", ""},
	{"", "ab"},
	{"a\x00", "b"},
	{"a", "\x00b"},
	{"a\x00", ""},
	{"", "\x00a"},
	{idp, "sub"},
	{idp, "sub-a"},
}

// strangers share bytes with collidingUsers but own nothing.
var strangers = []user{
	{"a", ""}, {"", "a"}, {"a", "\x00"}, {"a\x00b\x00", "c"}, {"a", "b\x00"}, {"abc", ""},
	{idp, "su"}, {idp, "sub-"}, {idp, "sub-a2"}, {"", ""},
}

// scanMethod is the shape of the store's Scan methods: from is where the
// scan starts, and it ends when fn returns false.
type scanMethod[K, T any] func(ctx context.Context, from K, fn func(T) bool) error

// scanAll collects what scan(from) passes to fn; what names the call in
// failures.
func scanAll[K, T any](t *testing.T, what string, scan scanMethod[K, T], from K) []T {
	t.Helper()
	var got []T
	if err := scan(context.Background(), from, func(v T) bool {
		got = append(got, v)
		return true
	}); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return got
}

// scanEnrollments collects what ScanEnrollments(from) passes to fn.
func scanEnrollments(t *testing.T, s store.Store, from string) []*store.Enrollment {
	t.Helper()
	return scanAll(t, fmt.Sprintf("ScanEnrollments(%q)", from), s.ScanEnrollments, from)
}

// scanTokens collects what ScanTokens(from) passes to fn.
func scanTokens(t *testing.T, s store.Store, from []byte) []*store.Token {
	t.Helper()
	return scanAll(t, fmt.Sprintf("ScanTokens(%x)", from), s.ScanTokens, from)
}

// scanFamilies collects what ScanFamilies(from) passes to fn.
func scanFamilies(t *testing.T, s store.Store, from string) []*store.Family {
	t.Helper()
	return scanAll(t, fmt.Sprintf("ScanFamilies(%q)", from), s.ScanFamilies, from)
}

// scanPages walks scan in pages of size: each page is one call, whose fn
// returns false once it has size records, and the next one starts at
// after(the page's last record). A short page, or after reporting false,
// ends the walk, which must take at most maxPages pages. It returns the
// records of every page.
func scanPages[K, T any](t *testing.T, scan scanMethod[K, T], size, maxPages int, after func(T) (K, bool)) []T {
	t.Helper()
	var got []T
	var from K
	for pages := 0; ; pages++ {
		if pages > maxPages {
			t.Fatalf("page size %d: no end after %d pages", size, pages)
		}
		var page []T
		if err := scan(context.Background(), from, func(v T) bool {
			page = append(page, v)
			return len(page) < size
		}); err != nil {
			t.Fatalf("scan from %v: %v", from, err)
		}
		if len(page) > size {
			t.Fatalf("page size %d: fn called %d times after it returned false", size, len(page)-size)
		}
		got = append(got, page...)
		if len(page) < size {
			return got
		}
		var more bool
		if from, more = after(page[len(page)-1]); !more {
			return got
		}
	}
}

// assertStopsWhenFnReturnsFalse checks that scan(from) calls fn once, with
// a record check accepts, when fn returns false.
func assertStopsWhenFnReturnsFalse[K, T any](t *testing.T, scan scanMethod[K, T], from K, check func(*testing.T, T)) {
	t.Helper()
	calls := 0
	if err := scan(context.Background(), from, func(v T) bool {
		calls++
		check(t, v)
		return false
	}); err != nil {
		t.Fatalf("scan: %v", err)
	}
	if calls != 1 {
		t.Fatalf("fn called %d times, want 1", calls)
	}
}

// assertStopsWhenCtxIsDone checks that scan(from) ends with
// context.Canceled after the call of fn that cancels its context.
func assertStopsWhenCtxIsDone[K, T any](t *testing.T, scan scanMethod[K, T], from K) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err := scan(ctx, from, func(T) bool {
		calls++
		cancel()
		return true
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("scan cancelled in fn: %d calls, %v; want 1 call, context.Canceled", calls, err)
	}
}

// assertInOrder checks that got holds exactly want, in this order as id
// names them, with their contents as assert compares them.
func assertInOrder[T any](t *testing.T, what string, got, want []T, id func(T) string, assert func(*testing.T, T, T)) {
	t.Helper()
	if !slices.Equal(mapped(got, id), mapped(want, id)) {
		t.Fatalf("%s = %q, want %q", what, mapped(got, id), mapped(want, id))
	}
	for i := range got {
		assert(t, got[i], want[i])
	}
}

// assertEnrollmentsInOrder checks that got holds exactly want, in this
// order, with their contents.
func assertEnrollmentsInOrder(t *testing.T, what string, got, want []*store.Enrollment) {
	t.Helper()
	assertInOrder(t, what, got, want, func(e *store.Enrollment) string { return e.ID }, assertEnrollment)
}

// assertTokensInOrder checks that got holds exactly want, in this order,
// with their contents.
func assertTokensInOrder(t *testing.T, what string, got, want []*store.Token) {
	t.Helper()
	assertInOrder(t, what, got, want, (*store.Token).ID, assertToken)
}

// assertFamiliesInOrder checks that got holds exactly want, in this order,
// with their contents.
func assertFamiliesInOrder(t *testing.T, what string, got, want []*store.Family) {
	t.Helper()
	assertInOrder(t, what, got, want, func(f *store.Family) string { return f.ID }, assertFamily)
}

// mapped applies f to every element of s.
func mapped[T, U any](s []T, f func(T) U) []U {
	out := make([]U, 0, len(s))
	for _, v := range s {
		out = append(out, f(v))
	}
	return out
}

// byHash orders tokens by hash, the order ScanTokens promises.
func byHash(a, b *store.Token) int { return bytes.Compare(a.Hash[:], b.Hash[:]) }

// nextHash returns the smallest hash greater than h, and false if h is the
// greatest.
func nextHash(h store.Hash) ([]byte, bool) {
	for i := len(h) - 1; i >= 0; i-- {
		h[i]++
		if h[i] != 0 {
			return h[:], true
		}
	}
	return nil, false
}

// seedOthers stores a record of every other kind, with their index
// entries, so that scans are seen to skip them.
func seedOthers(t *testing.T, s store.Store, c *Clock) {
	t.Helper()
	putState(t, s, "E-login", store.LoginState{Data: []byte("x"), ExpiresAt: c.Now().Add(time.Hour)})
	createCode(t, s, newCode("E-code", c.Now()))
	mustSecret(t, s, "E-secret", func() ([]byte, error) { return []byte("secret"), nil })
}

func testScanEnrollments(t *testing.T, f Factory) {
	ids := []string{"E3", "E10", "E1", "e0", "E2", "E", "E1\x00x", "\x00", "\u00ff"}
	seed := func(t *testing.T) (store.Store, *Clock, []*store.Enrollment) {
		s, c := open(t, f)
		seedOthers(t, s, c)
		var all []*store.Enrollment
		for i, id := range ids {
			e := ownedBy(id, idp, fmt.Sprintf("sub-%d", i%2), c.Now())
			if i == 3 {
				e.Issuer, e.Subject = "", "" // unowned enrollments are scanned too
			}
			saveEnrollment(t, s, e)
			all = append(all, e)
		}
		// A token bound to E2 (and so index entries) and a family.
		tok := newToken("bound", c.Now())
		createToken(t, s, tok)
		_, e2 := bind(t, s, tok.Hash, "E2", c.Now())
		for i := range all {
			if all[i].ID == "E2" {
				all[i] = e2
			}
		}
		createFamily(t, s, newFamily("E-family", c.Now()))
		slices.SortFunc(all, func(a, b *store.Enrollment) int { return strings.Compare(a.ID, b.ID) })
		return s, c, all
	}

	t.Run("EmptyStore", func(t *testing.T) {
		s, _ := open(t, f)
		if got := scanEnrollments(t, s, ""); len(got) != 0 {
			t.Fatalf("ScanEnrollments on an empty store: %d enrollments", len(got))
		}
	})

	t.Run("AllInIDOrder", func(t *testing.T) {
		s, _, all := seed(t)
		assertEnrollmentsInOrder(t, `ScanEnrollments("")`, scanEnrollments(t, s, ""), all)
	})

	t.Run("FromIsInclusive", func(t *testing.T) {
		s, _, all := seed(t)
		for _, from := range []string{"", "\x00", "E", "E1", "E1\x00", "E15", "E2", "E3\x00", "e", "e0", "zz", "\u00ff", "\xc3", "\xff", "\xff\x00"} {
			want := slices.DeleteFunc(slices.Clone(all), func(e *store.Enrollment) bool { return e.ID < from })
			assertEnrollmentsInOrder(t, fmt.Sprintf("ScanEnrollments(%q)", from), scanEnrollments(t, s, from), want)
		}
	})

	t.Run("Paginates", func(t *testing.T) {
		s, _, all := seed(t)
		// The next page starts at the smallest id after the last.
		after := func(e *store.Enrollment) (string, bool) { return e.ID + "\x00", true }
		for _, size := range []int{1, 2, 4, len(ids)} {
			got := scanPages(t, s.ScanEnrollments, size, len(ids), after)
			assertEnrollmentsInOrder(t, fmt.Sprintf("pages of %d", size), got, all)
		}
	})

	t.Run("StopsWhenFnReturnsFalse", func(t *testing.T) {
		s, _, all := seed(t)
		assertStopsWhenFnReturnsFalse(t, s.ScanEnrollments, "", func(t *testing.T, e *store.Enrollment) {
			assertEnrollment(t, e, all[0])
		})
	})

	t.Run("StopsWhenCtxIsDone", func(t *testing.T) {
		s, _, _ := seed(t)
		assertStopsWhenCtxIsDone(t, s.ScanEnrollments, "")
	})

	t.Run("CurrentContents", func(t *testing.T) {
		s, c, all := seed(t)
		c.Advance(time.Minute)
		changed := changeEnrollment(t, s, "E1", func(e *store.Enrollment) {
			e.State = store.StateBlocked
			e.Subject = "sub-moved"
			e.UpdatedAt = c.Now()
		})
		for i := range all {
			if all[i].ID == "E1" {
				all[i] = changed
			}
		}
		assertEnrollmentsInOrder(t, "ScanEnrollments after a change", scanEnrollments(t, s, ""), all)
	})

	t.Run("ReturnsCopies", func(t *testing.T) {
		s, _, all := seed(t)
		for _, e := range scanEnrollments(t, s, "") {
			e.State = store.StateRemoved
			e.Subject = "changed-after-scan"
		}
		assertEnrollmentsInOrder(t, "ScanEnrollments", scanEnrollments(t, s, ""), all)
	})
}

func testScanTokens(t *testing.T, f Factory) {
	ctx := context.Background()
	seed := func(t *testing.T) (store.Store, *Clock, []*store.Token) {
		s, c := open(t, f)
		seedOthers(t, s, c)
		var all []*store.Token
		for i := range 8 {
			tok := newToken(fmt.Sprintf("scan-%d", i), c.Now())
			if i%3 == 0 {
				tok.FamilyID = "F1"
			}
			if i == 5 {
				tok.Issuer, tok.Subject = "", ""
			}
			createToken(t, s, tok)
			all = append(all, tok)
		}
		createFamily(t, s, newFamily("F1", c.Now()))
		// Bound, revoked and expired tokens are scanned with their
		// current contents.
		all[1], _ = bind(t, s, all[1].Hash, "E1", c.Now())
		all[2], _ = bind(t, s, all[2].Hash, "E1", c.Now())
		c.Advance(time.Minute)
		revoked, err := s.UpdateToken(ctx, all[3].Hash, func(tok *store.Token) error {
			tok.RevokedAt = c.Now()
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
		all[3] = revoked
		c.Advance(48 * time.Hour)
		slices.SortFunc(all, byHash)
		return s, c, all
	}

	t.Run("EmptyStore", func(t *testing.T) {
		s, _ := open(t, f)
		if got := scanTokens(t, s, nil); len(got) != 0 {
			t.Fatalf("ScanTokens on an empty store: %d tokens", len(got))
		}
	})

	t.Run("AllInHashOrder", func(t *testing.T) {
		s, _, all := seed(t)
		assertTokensInOrder(t, "ScanTokens(nil)", scanTokens(t, s, nil), all)
		assertTokensInOrder(t, "ScanTokens([]byte{})", scanTokens(t, s, []byte{}), all)
	})

	t.Run("FromIsAnInclusiveHashPrefix", func(t *testing.T) {
		s, _, all := seed(t)
		third := all[3].Hash
		next, _ := nextHash(third)
		froms := [][]byte{
			third[:1], third[:2], third[:16], third[:31], third[:],
			next,
			{third[0] + 1},
			{0x00}, {0x80}, {0xff},
			bytes.Repeat([]byte{0xff}, 32),
			make([]byte, 32),
		}
		for _, from := range froms {
			want := slices.DeleteFunc(slices.Clone(all), func(tok *store.Token) bool {
				return bytes.Compare(tok.Hash[:], from) < 0
			})
			assertTokensInOrder(t, fmt.Sprintf("ScanTokens(%x)", from), scanTokens(t, s, from), want)
		}
		// A prefix starts at the first hash that has it.
		got := scanTokens(t, s, third[:8])
		if len(got) == 0 || got[0].Hash != third {
			t.Fatalf("ScanTokens(%x) does not start at %s", third[:8], third.ID())
		}
	})

	t.Run("Paginates", func(t *testing.T) {
		s, _, all := seed(t)
		after := func(tok *store.Token) ([]byte, bool) { return nextHash(tok.Hash) }
		for _, size := range []int{1, 3, len(all)} {
			got := scanPages(t, s.ScanTokens, size, len(all), after)
			assertTokensInOrder(t, fmt.Sprintf("pages of %d", size), got, all)
		}
	})

	t.Run("StopsWhenFnReturnsFalse", func(t *testing.T) {
		s, _, all := seed(t)
		assertStopsWhenFnReturnsFalse(t, s.ScanTokens, nil, func(t *testing.T, tok *store.Token) {
			assertToken(t, tok, all[0])
		})
	})

	t.Run("StopsWhenCtxIsDone", func(t *testing.T) {
		s, _, _ := seed(t)
		assertStopsWhenCtxIsDone(t, s.ScanTokens, nil)
	})
}

func testScanFamilies(t *testing.T, f Factory) {
	ctx := context.Background()
	ids := []string{"F2", "F", "F10", "F1", "f\x00", "F1\x00", "\u00ff"}
	seed := func(t *testing.T) (store.Store, *Clock, []*store.Family) {
		s, c := open(t, f)
		seedOthers(t, s, c)
		var all []*store.Family
		for _, id := range ids {
			fam := newFamily(id, c.Now())
			createFamily(t, s, fam)
			createToken(t, s, newFamilyToken("tok-"+id, id, c.Now()))
			all = append(all, fam)
		}
		// Rotated, revoked and expired families are scanned with their
		// current contents.
		c.Advance(time.Minute)
		rotated, err := s.UpdateFamily(ctx, "F1", advance(c.Now()))
		if err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		revoked, err := s.UpdateFamily(ctx, "F2", func(fam *store.Family) error {
			fam.RevokedAt, fam.RevokeReason = c.Now(), "reuse"
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		for i := range all {
			switch all[i].ID {
			case "F1":
				all[i] = rotated
			case "F2":
				all[i] = revoked
			}
		}
		c.Advance(31 * 24 * time.Hour)
		slices.SortFunc(all, func(a, b *store.Family) int { return strings.Compare(a.ID, b.ID) })
		return s, c, all
	}

	t.Run("EmptyStore", func(t *testing.T) {
		s, _ := open(t, f)
		if got := scanFamilies(t, s, ""); len(got) != 0 {
			t.Fatalf("ScanFamilies on an empty store: %d families", len(got))
		}
	})

	t.Run("AllInIDOrder", func(t *testing.T) {
		s, _, all := seed(t)
		assertFamiliesInOrder(t, `ScanFamilies("")`, scanFamilies(t, s, ""), all)
	})

	t.Run("FromIsInclusive", func(t *testing.T) {
		s, _, all := seed(t)
		for _, from := range []string{"", "F", "F0", "F1", "F1\x00", "F1\x00\x00", "F100", "F2", "f", "f\x00", "g", "\u00ff", "\xff"} {
			want := slices.DeleteFunc(slices.Clone(all), func(fam *store.Family) bool { return fam.ID < from })
			assertFamiliesInOrder(t, fmt.Sprintf("ScanFamilies(%q)", from), scanFamilies(t, s, from), want)
		}
	})

	t.Run("Paginates", func(t *testing.T) {
		s, _, all := seed(t)
		after := func(fam *store.Family) (string, bool) { return fam.ID + "\x00", true }
		for _, size := range []int{1, 2, len(ids)} {
			got := scanPages(t, s.ScanFamilies, size, len(ids), after)
			assertFamiliesInOrder(t, fmt.Sprintf("pages of %d", size), got, all)
		}
	})

	t.Run("StopsWhenFnReturnsFalse", func(t *testing.T) {
		s, _, all := seed(t)
		assertStopsWhenFnReturnsFalse(t, s.ScanFamilies, "F10", func(t *testing.T, fam *store.Family) {
			assertFamily(t, fam, all[slices.IndexFunc(all, func(f *store.Family) bool { return f.ID == "F10" })])
		})
	})

	t.Run("StopsWhenCtxIsDone", func(t *testing.T) {
		s, _, _ := seed(t)
		assertStopsWhenCtxIsDone(t, s.ScanFamilies, "")
	})
}

// assertLoginStates checks what CountLoginStates reports.
func assertLoginStates(t *testing.T, s store.Store, want int) {
	t.Helper()
	n, err := s.CountLoginStates(context.Background())
	if err != nil {
		t.Fatalf("CountLoginStates: %v", err)
	}
	if n != want {
		t.Fatalf("CountLoginStates = %d, want %d", n, want)
	}
}

func testCountLoginStates(t *testing.T, f Factory) {
	s, c := open(t, f)
	assertLoginStates(t, s, 0)
	state := func(ttl time.Duration) store.LoginState {
		return store.LoginState{Data: []byte("pending"), ExpiresAt: c.Now().Add(ttl)}
	}
	putState(t, s, "long", state(10*time.Minute))
	putState(t, s, "taken", state(10*time.Minute))
	putState(t, s, "short", state(2*time.Minute))
	putState(t, s, "stale", state(-time.Second))
	// Other records are not login states.
	seedAll(t, s, c) // adds login state "k", valid for an hour
	createCode(t, s, newCode("a", c.Now()))
	assertLoginStates(t, s, 4)

	assertTake(t, s, "taken", state(10*time.Minute))
	assertLoginStates(t, s, 3)

	// Expiry is decided by the store's clock.
	c.Advance(2 * time.Minute)
	assertLoginStates(t, s, 2)
	c.Advance(8 * time.Minute)
	assertLoginStates(t, s, 1)
	putState(t, s, "later", state(time.Minute))
	assertLoginStates(t, s, 2)
	c.Advance(time.Hour)
	assertLoginStates(t, s, 0)
}

// assertUserTokens checks that TokensForUser(u) lists exactly want, in any
// order, with their current contents.
func assertUserTokens(t *testing.T, s store.Store, u user, want ...*store.Token) {
	t.Helper()
	got, err := s.TokensForUser(context.Background(), u.iss, u.sub)
	if err != nil {
		t.Fatalf("TokensForUser(%q, %q): %v", u.iss, u.sub, err)
	}
	assertSameTokens(t, fmt.Sprintf("TokensForUser(%q, %q)", u.iss, u.sub), got, want)
}

// assertUserFamilies checks that FamiliesForUser(u) lists exactly want,
// in any order, with their current contents.
func assertUserFamilies(t *testing.T, s store.Store, u user, want ...*store.Family) {
	t.Helper()
	got, err := s.FamiliesForUser(context.Background(), u.iss, u.sub)
	if err != nil {
		t.Fatalf("FamiliesForUser(%q, %q): %v", u.iss, u.sub, err)
	}
	byID := func(a, b *store.Family) int { return cmp.Compare(a.ID, b.ID) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	assertFamiliesInOrder(t, fmt.Sprintf("FamiliesForUser(%q, %q)", u.iss, u.sub), got, want)
}

// ownedToken returns a token of u.
func ownedToken(seed string, u user, now time.Time) *store.Token {
	tok := newToken(seed, now)
	tok.Issuer, tok.Subject = u.iss, u.sub
	return tok
}

// ownedFamily returns a family of u.
func ownedFamily(id string, u user, now time.Time) *store.Family {
	fam := newFamily(id, now)
	fam.Issuer, fam.Subject = u.iss, u.sub
	return fam
}

func testTokensForUser(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("UnknownIsEmpty", func(t *testing.T) {
		s, c := open(t, f)
		assertUserTokens(t, s, user{idp, "nobody"})
		createToken(t, s, newToken("a", c.Now()))
		assertUserTokens(t, s, user{idp, "nobody"})
		assertUserTokens(t, s, user{"", ""})
	})

	t.Run("CollidingUsersStaySeparate", func(t *testing.T) {
		s, c := open(t, f)
		want := map[user][]*store.Token{}
		for i, u := range collidingUsers {
			// An unbound web sign-in token, a bound one and one issued in
			// a family.
			web := ownedToken(fmt.Sprintf("web-%d", i), u, c.Now())
			bound := ownedToken(fmt.Sprintf("bound-%d", i), u, c.Now())
			fam := ownedToken(fmt.Sprintf("fam-%d", i), u, c.Now())
			fam.FamilyID = fmt.Sprintf("F%d", i)
			for _, tok := range []*store.Token{web, bound, fam} {
				createToken(t, s, tok)
			}
			bound, _ = bind(t, s, bound.Hash, fmt.Sprintf("E%d", i), c.Now())
			want[u] = []*store.Token{web, bound, fam}
		}
		// Tokens without an owner belong to no one.
		createToken(t, s, ownedToken("nobody", user{}, c.Now()))
		for _, u := range collidingUsers {
			assertUserTokens(t, s, u, want[u]...)
		}
		for _, u := range strangers {
			assertUserTokens(t, s, u)
		}
	})

	t.Run("RevokedExpiredAndRebound", func(t *testing.T) {
		s, c := open(t, f)
		u := user{idp, "sub-a"}
		a, b := ownedToken("a", u, c.Now()), ownedToken("b", u, c.Now())
		createToken(t, s, a)
		createToken(t, s, b)
		other := ownedToken("other", user{idp, "sub-b"}, c.Now())
		createToken(t, s, other)
		a, _ = bind(t, s, a.Hash, "E1", c.Now())
		a, _ = bind(t, s, a.Hash, "E2", c.Now())
		c.Advance(time.Minute)
		b, err := s.UpdateToken(ctx, b.Hash, func(tok *store.Token) error {
			tok.RevokedAt = c.Now()
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
		c.Advance(48 * time.Hour)
		assertUserTokens(t, s, u, a, b)
		assertUserTokens(t, s, user{idp, "sub-b"}, other)
	})

	t.Run("OwnerChangeMovesTheEntry", func(t *testing.T) {
		s, c := open(t, f)
		from, to := user{idp, "sub-a"}, user{idp, "sub-b"}
		tok := ownedToken("a", from, c.Now())
		createToken(t, s, tok)
		moved, err := s.UpdateToken(ctx, tok.Hash, func(tok *store.Token) error {
			tok.Subject = to.sub
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
		assertUserTokens(t, s, from)
		assertUserTokens(t, s, to, moved)

		// A refused change moves nothing.
		if _, err := s.UpdateToken(ctx, tok.Hash, func(tok *store.Token) error {
			tok.Subject = "sub-c"
			return errRefused
		}); !errors.Is(err, errRefused) {
			t.Fatalf("UpdateToken: got %v, want the function's error", err)
		}
		assertUserTokens(t, s, user{idp, "sub-c"})
		assertUserTokens(t, s, to, moved)

		cleared, err := s.UpdateToken(ctx, tok.Hash, func(tok *store.Token) error {
			tok.Issuer, tok.Subject = "", ""
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
		assertToken(t, mustToken(t, s, tok.Hash), cleared)
		assertUserTokens(t, s, to)
		assertUserTokens(t, s, user{"", ""})
	})
}

func testFamiliesForUser(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("UnknownIsEmpty", func(t *testing.T) {
		s, c := open(t, f)
		assertUserFamilies(t, s, user{idp, "nobody"})
		createFamily(t, s, newFamily("F1", c.Now()))
		assertUserFamilies(t, s, user{idp, "nobody"})
		assertUserFamilies(t, s, user{"", ""})
	})

	t.Run("CollidingUsersStaySeparate", func(t *testing.T) {
		s, c := open(t, f)
		want := map[user][]*store.Family{}
		for i, u := range collidingUsers {
			for _, id := range []string{fmt.Sprintf("F%d", i), fmt.Sprintf("F%d\x00x", i)} {
				fam := ownedFamily(id, u, c.Now())
				createFamily(t, s, fam)
				want[u] = append(want[u], fam)
			}
		}
		createFamily(t, s, ownedFamily("nobody", user{}, c.Now()))
		for _, u := range collidingUsers {
			assertUserFamilies(t, s, u, want[u]...)
		}
		for _, u := range strangers {
			assertUserFamilies(t, s, u)
		}
	})

	t.Run("RevokedExpiredAndMoved", func(t *testing.T) {
		s, c := open(t, f)
		u := user{idp, "sub-a"}
		kept := ownedFamily("F1", u, c.Now())
		createFamily(t, s, kept)
		createFamily(t, s, ownedFamily("F2", u, c.Now()))
		createFamily(t, s, ownedFamily("F3", u, c.Now()))
		c.Advance(time.Minute)
		revoked, err := s.UpdateFamily(ctx, "F2", func(fam *store.Family) error {
			fam.RevokedAt, fam.RevokeReason = c.Now(), "reuse"
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		moved, err := s.UpdateFamily(ctx, "F3", func(fam *store.Family) error {
			fam.Issuer = "https://other.example.com"
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		c.Advance(31 * 24 * time.Hour)
		assertUserFamilies(t, s, u, kept, revoked)
		assertUserFamilies(t, s, user{"https://other.example.com", "sub-a"}, moved)

		// A refused change moves nothing; clearing the owner lists it
		// nowhere.
		if _, err := s.UpdateFamily(ctx, "F1", func(fam *store.Family) error {
			fam.Subject = "sub-b"
			return errRefused
		}); !errors.Is(err, errRefused) {
			t.Fatalf("UpdateFamily: got %v, want the function's error", err)
		}
		assertUserFamilies(t, s, user{idp, "sub-b"})
		if _, err := s.UpdateFamily(ctx, "F1", func(fam *store.Family) error {
			fam.Issuer, fam.Subject = "", ""
			return nil
		}); err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		assertUserFamilies(t, s, u, revoked)
		assertUserFamilies(t, s, user{"", ""})
	})
}

func testSize(t *testing.T, f Factory) {
	s, c := open(t, f)
	check := func() {
		t.Helper()
		n, err := s.Size(context.Background())
		if err != nil {
			t.Fatalf("Size: %v", err)
		}
		if n < -1 {
			t.Fatalf("Size = %d, want >= 0 or -1", n)
		}
	}
	check()
	seedAll(t, s, c)
	seedOAuth(t, s, c)
	check()
}

func testInventoryDurability(t *testing.T, f Factory) {
	s, c := open(t, f)
	u := user{idp, "sub-a"}
	tok := ownedToken("a", u, c.Now())
	createToken(t, s, tok)
	tok, e := bind(t, s, tok.Hash, "E1", c.Now())
	fam := ownedFamily("F1", u, c.Now())
	createFamily(t, s, fam)
	putState(t, s, "k", store.LoginState{Data: []byte("x"), ExpiresAt: c.Now().Add(time.Hour)})

	s = f.Reopen(t, s, c.Now)
	assertUserTokens(t, s, u, tok)
	assertUserFamilies(t, s, u, fam)
	assertTokensInOrder(t, "ScanTokens after reopen", scanTokens(t, s, nil), []*store.Token{tok})
	assertEnrollmentsInOrder(t, "ScanEnrollments after reopen", scanEnrollments(t, s, ""), []*store.Enrollment{e})
	assertFamiliesInOrder(t, "ScanFamilies after reopen", scanFamilies(t, s, ""), []*store.Family{fam})
	assertLoginStates(t, s, 1)

	// The per-user listings are kept up to date after reopening too.
	tok2 := ownedToken("b", u, c.Now())
	createToken(t, s, tok2)
	assertUserTokens(t, s, u, tok, tok2)
}
