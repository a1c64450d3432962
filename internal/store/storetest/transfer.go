package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// RunTransfer checks moving a store's contents from one backend to
// another: what src's Dump lists, dst's Load takes, and dst then holds
// every token, enrollment, token family and secret field by field, with
// every listing of them, while login states and authorization codes stay
// behind. Both backends must implement store.Dumper and store.Loader (src
// and dst may be the same factory).
func RunTransfer(t *testing.T, src, dst Factory) {
	if src.New == nil || dst.New == nil {
		t.Fatal("storetest: Factory.New is nil")
	}
	t.Run("Everything", func(t *testing.T) { testTransferEverything(t, src, dst) })
	t.Run("LoadTwiceChangesNothing", func(t *testing.T) { testTransferTwice(t, src, dst) })
	t.Run("LoadReplaces", func(t *testing.T) { testTransferReplaces(t, dst) })
	t.Run("BadRecord", func(t *testing.T) { testTransferBadRecord(t, dst) })
	t.Run("DumpStopsAtFnError", func(t *testing.T) { testDumpStops(t, src) })
	t.Run("DumpClosedAndCancelled", func(t *testing.T) { testDumpClosed(t, src) })
}

// dumperOf returns s as a store.Dumper, failing the test if it is not one.
func dumperOf(t *testing.T, s store.Store) store.Dumper {
	t.Helper()
	d, ok := s.(store.Dumper)
	if !ok {
		t.Fatalf("%T does not implement store.Dumper", s)
	}
	return d
}

// loaderOf returns s as a store.Loader, failing the test if it is not one.
func loaderOf(t *testing.T, s store.Store) store.Loader {
	t.Helper()
	l, ok := s.(store.Loader)
	if !ok {
		t.Fatalf("%T does not implement store.Loader", s)
	}
	return l
}

// transferSeed fills s with a record of every kind and shape: tokens
// unbound, bound, revoked, expired (within retention), without an owner
// and issued in families; enrollments in every state, owned and not, one
// whose id holds a zero byte; families fresh, rotated and revoked; two
// secrets; and a pending login state and an unused code, which a
// transfer leaves behind.
func transferSeed(t *testing.T, s store.Store, c *Clock) {
	t.Helper()
	ctx := context.Background()
	now := c.Now()

	for _, seed := range []string{"web", "bound", "revoked", "expired", "anon", "nul", "reauth", "blocked", "offboarding", "removed"} {
		tok := newToken(seed, now)
		switch seed {
		case "expired":
			tok.IssuedAt = now.Add(-72 * time.Hour)
			tok.ExpiresAt = now.Add(-48 * time.Hour)
		case "anon":
			tok.Issuer, tok.Subject = "", ""
		}
		createToken(t, s, tok)
	}
	bind(t, s, hashOf("bound"), "E-active", now)
	bind(t, s, hashOf("revoked"), "E-active", now)
	bind(t, s, hashOf("nul"), "E\x00nul", now)
	bind(t, s, hashOf("expired"), "E-active", now)
	for _, st := range []store.State{store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved} {
		id := "E-" + string(st)
		bind(t, s, hashOf(string(st)), id, now)
		changeEnrollment(t, s, id, func(e *store.Enrollment) {
			e.State = st
			e.Platform = store.PlatformMac
			if st == store.StateOffboarding {
				e.Deadline = now.Add(time.Hour)
			}
		})
	}
	if _, err := s.UpdateToken(ctx, hashOf("revoked"), func(tok *store.Token) error {
		tok.RevokedAt = now
		return nil
	}); err != nil {
		t.Fatalf("UpdateToken: %v", err)
	}
	saveEnrollment(t, s, ownedBy("E-unowned", "", "", now))
	saveEnrollment(t, s, ownedBy("E-colliding", "a\x00b", "c", now))

	fresh := newFamily("F-fresh", now)
	fresh.Salt, fresh.PreviousSalt = []byte("salt-1"), []byte("salt-0")
	createFamily(t, s, fresh)
	createFamily(t, s, newFamily("F-rotated", now))
	if _, err := s.UpdateFamily(ctx, "F-rotated", advance(now)); err != nil {
		t.Fatalf("UpdateFamily: %v", err)
	}
	createFamily(t, s, newFamily("F-revoked", now))
	if _, err := s.UpdateFamily(ctx, "F-revoked", func(f *store.Family) error {
		f.RevokedAt, f.RevokeReason = now, "reuse"
		return nil
	}); err != nil {
		t.Fatalf("UpdateFamily: %v", err)
	}
	createFamily(t, s, ownedFamily("F\x00nul", user{"a", "b\x00c"}, now))
	for i, fam := range []string{"F-fresh", "F-fresh", "F-rotated", "F-revoked"} {
		createToken(t, s, newFamilyToken(fmt.Sprintf("fam-%d", i), fam, now))
	}
	bind(t, s, hashOf("fam-0"), "E-family", now)

	mustSecret(t, s, "signing", func() ([]byte, error) { return []byte("signing-secret"), nil })
	mustSecret(t, s, "other\x00name", func() ([]byte, error) { return []byte{0, 1, 2, 0xff}, nil })

	putState(t, s, "pending", store.LoginState{Data: []byte("pending"), ExpiresAt: now.Add(time.Hour)})
	createCode(t, s, newCode("pending", now))
}

// contents is everything long-lived a store lists.
type contents struct {
	tokens      []*store.Token
	enrollments []*store.Enrollment
	families    []*store.Family
}

// contentsOf scans s.
func contentsOf(t *testing.T, s store.Store) contents {
	t.Helper()
	return contents{
		tokens:      scanTokens(t, s, nil),
		enrollments: scanEnrollments(t, s, ""),
		families:    scanFamilies(t, s, ""),
	}
}

// assertSameContents checks that dst holds what want lists, field by
// field, with every index of it, and the secrets of src.
func assertSameContents(t *testing.T, src, dst store.Store, want contents) {
	t.Helper()
	ctx := context.Background()
	got := contentsOf(t, dst)
	assertTokensInOrder(t, "tokens", got.tokens, want.tokens)
	assertEnrollmentsInOrder(t, "enrollments", got.enrollments, want.enrollments)
	assertFamiliesInOrder(t, "families", got.families, want.families)

	users := map[user]bool{}
	enrollments := map[string]bool{}
	families := map[string]bool{}
	for _, tok := range want.tokens {
		users[user{tok.Issuer, tok.Subject}] = true
		enrollments[tok.EnrollmentID] = true
		families[tok.FamilyID] = true
		e, lt, err := dst.Lookup(ctx, tok.EnrollmentID, tok.Hash)
		if err != nil {
			t.Fatalf("Lookup(%q, %s): %v", tok.EnrollmentID, tok.ID(), err)
		}
		assertToken(t, lt, tok)
		if tok.EnrollmentID != "" {
			assertEnrollment(t, e, mustEnrollment(t, src, tok.EnrollmentID))
		}
	}
	for _, e := range want.enrollments {
		users[user{e.Issuer, e.Subject}] = true
		enrollments[e.ID] = true
	}
	for _, f := range want.families {
		users[user{f.Issuer, f.Subject}] = true
		families[f.ID] = true
	}
	list := func(what string, f func(store.Store) ([]*store.Token, error)) {
		t.Helper()
		w, err := f(src)
		if err != nil {
			t.Fatalf("%s on the source: %v", what, err)
		}
		g, err := f(dst)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		assertSameTokens(t, what, g, w)
	}
	for id := range enrollments {
		list(fmt.Sprintf("TokensForEnrollment(%q)", id), func(s store.Store) ([]*store.Token, error) { return s.TokensForEnrollment(ctx, id) })
	}
	for id := range families {
		list(fmt.Sprintf("TokensForFamily(%q)", id), func(s store.Store) ([]*store.Token, error) { return s.TokensForFamily(ctx, id) })
	}
	for u := range users {
		list(fmt.Sprintf("TokensForUser(%q, %q)", u.iss, u.sub), func(s store.Store) ([]*store.Token, error) { return s.TokensForUser(ctx, u.iss, u.sub) })
		we, err := src.EnrollmentsForUser(ctx, u.iss, u.sub)
		if err != nil {
			t.Fatalf("EnrollmentsForUser on the source: %v", err)
		}
		assertUserListed(t, dst, u.iss, u.sub, we...)
		wf, err := src.FamiliesForUser(ctx, u.iss, u.sub)
		if err != nil {
			t.Fatalf("FamiliesForUser on the source: %v", err)
		}
		assertUserFamilies(t, dst, u, wf...)
	}
	for _, name := range []string{"signing", "other\x00name"} {
		want := mustSecret(t, src, name, func() ([]byte, error) { return nil, errors.New("no secret on the source") })
		got, err := dst.Secret(ctx, name, func() ([]byte, error) { return nil, errRefused })
		if err != nil {
			t.Fatalf("Secret(%q) after the transfer: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Secret(%q) after the transfer = %x, want %x", name, got, want)
		}
	}
}

// transfer dumps src into dst and returns how many records of each kind
// it moved. fn scribbles on every record after loading it, which must
// change nothing in either store.
func transfer(t *testing.T, src, dst store.Store) map[string]int {
	t.Helper()
	ctx := context.Background()
	l := loaderOf(t, dst)
	seen := map[string]bool{}
	counts := map[string]int{}
	err := dumperOf(t, src).Dump(ctx, func(r store.Record) error {
		kind, err := r.Kind()
		if err != nil {
			return err
		}
		var k string
		switch kind {
		case store.KindToken:
			k = string(r.Token.Hash[:])
		case store.KindEnrollment:
			k = r.Enrollment.ID
		case store.KindFamily:
			k = r.Family.ID
		case store.KindSecret:
			k = r.Secret.Name
		}
		if seen[kind+"/"+k] {
			return fmt.Errorf("%s %q dumped twice", kind, k)
		}
		seen[kind+"/"+k] = true
		counts[kind]++
		if err := l.Load(ctx, r); err != nil {
			return fmt.Errorf("Load(%s %q): %w", kind, k, err)
		}
		switch kind {
		case store.KindToken:
			r.Token.Subject, r.Token.RevokedAt = "scribbled", time.Time{}
		case store.KindEnrollment:
			r.Enrollment.State, r.Enrollment.Subject = store.StateRemoved, "scribbled"
		case store.KindFamily:
			r.Family.Generation++
			if len(r.Family.IdPRefresh) > 0 {
				r.Family.IdPRefresh[0] ^= 0xff
			}
		case store.KindSecret:
			r.Secret.Value[0] ^= 0xff
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return counts
}

func testTransferEverything(t *testing.T, src, dst Factory) {
	ctx := context.Background()
	s, c := open(t, src)
	transferSeed(t, s, c)
	want := contentsOf(t, s)
	d := dst.New(t, NewClock(c.Now()).Now)

	counts := transfer(t, s, d)
	wantCounts := map[string]int{
		store.KindToken:      len(want.tokens),
		store.KindEnrollment: len(want.enrollments),
		store.KindFamily:     len(want.families),
		store.KindSecret:     2,
	}
	for kind, n := range wantCounts {
		if counts[kind] != n {
			t.Errorf("Dump listed %d records of kind %s, want %d", counts[kind], kind, n)
		}
	}
	// Nothing is missing in the seed itself.
	if len(want.tokens) != 14 || len(want.enrollments) != 9 || len(want.families) != 4 {
		t.Fatalf("the source holds %d tokens, %d enrollments, %d families; want 14, 9, 4",
			len(want.tokens), len(want.enrollments), len(want.families))
	}
	assertSameContents(t, s, d, want)
	// The source is unchanged.
	got := contentsOf(t, s)
	assertTokensInOrder(t, "source tokens", got.tokens, want.tokens)
	assertEnrollmentsInOrder(t, "source enrollments", got.enrollments, want.enrollments)
	assertFamiliesInOrder(t, "source families", got.families, want.families)

	// Minutes-lived records stay behind.
	assertTakeNotFound(t, d, "pending")
	assertCodeAbsent(t, d, hashOf("code-pending"))
	assertLoginStates(t, d, 0)

	// The destination works on what it took: keys are taken, single
	// use holds, rotations follow on.
	if err := d.CreateToken(ctx, newToken("web", c.Now())); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateToken of a transferred token: got %v, want ErrExists", err)
	}
	if err := d.CreateFamily(ctx, newFamily("F-fresh", c.Now())); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateFamily of a transferred family: got %v, want ErrExists", err)
	}
	if _, err := d.UpdateFamily(ctx, "F-rotated", rotate(c.Now(), 0)); !errors.Is(err, errReused) {
		t.Errorf("rotation of the replaced refresh token after the transfer: got %v, want the function's error", err)
	}
	if f, err := d.UpdateFamily(ctx, "F-rotated", rotate(c.Now(), 1)); err != nil || f.Generation != 2 {
		t.Errorf("rotation after the transfer: %+v, %v; want generation 2", f, err)
	}
	var tok *store.Token
	for _, w := range want.tokens {
		if w.Hash == hashOf("web") {
			tok = w
		}
	}
	bound, e := bind(t, d, tok.Hash, "E-active", c.Now())
	assertListed(t, d, "E-active", append(tokensBoundTo(want.tokens, "E-active"), bound)...)
	if e.TokenHash != bound.Hash {
		t.Errorf("bind after the transfer: enrollment's token %s, want %s", e.TokenHash.ID(), bound.ID())
	}
}

// tokensBoundTo returns the tokens of ts bound to id.
func tokensBoundTo(ts []*store.Token, id string) []*store.Token {
	var out []*store.Token
	for _, t := range ts {
		if t.EnrollmentID == id {
			out = append(out, t)
		}
	}
	return out
}

func testTransferTwice(t *testing.T, src, dst Factory) {
	s, c := open(t, src)
	transferSeed(t, s, c)
	want := contentsOf(t, s)
	d := dst.New(t, NewClock(c.Now()).Now)
	transfer(t, s, d)
	transfer(t, s, d)
	assertSameContents(t, s, d, want)
}

func testTransferReplaces(t *testing.T, dst Factory) {
	ctx := context.Background()
	d, c := open(t, dst)
	l := loaderOf(t, d)
	load := func(r store.Record) {
		t.Helper()
		if err := l.Load(ctx, r); err != nil {
			t.Fatalf("Load: %v", err)
		}
	}
	u1, u2 := user{idp, "sub-1"}, user{idp, "sub-2"}

	tok := ownedToken("a", u1, c.Now())
	tok.EnrollmentID, tok.FamilyID = "E1", "F1"
	load(store.Record{Token: tok})
	moved := *tok
	moved.Issuer, moved.Subject, moved.EnrollmentID, moved.FamilyID = u2.iss, u2.sub, "E2", "F2"
	load(store.Record{Token: &moved})
	assertToken(t, mustToken(t, d, tok.Hash), &moved)
	assertListed(t, d, "E1")
	assertListed(t, d, "E2", &moved)
	assertFamilyListed(t, d, "F1")
	assertFamilyListed(t, d, "F2", &moved)
	assertUserTokens(t, d, u1)
	assertUserTokens(t, d, u2, &moved)

	e := ownedBy("E1", u1.iss, u1.sub, c.Now())
	load(store.Record{Enrollment: e})
	e2 := *e
	e2.Subject, e2.State = u2.sub, store.StateBlocked
	load(store.Record{Enrollment: &e2})
	assertEnrollment(t, mustEnrollment(t, d, "E1"), &e2)
	assertUserListed(t, d, u1.iss, u1.sub)
	assertUserListed(t, d, u2.iss, u2.sub, &e2)

	f := ownedFamily("F1", u1, c.Now())
	load(store.Record{Family: f})
	f2 := *f
	f2.Subject, f2.Generation = u2.sub, 7
	load(store.Record{Family: &f2})
	assertFamily(t, mustFamily(t, d, "F1"), &f2)
	assertUserFamilies(t, d, u1)
	assertUserFamilies(t, d, u2, &f2)

	load(store.Record{Secret: &store.NamedSecret{Name: "signing", Value: []byte("one")}})
	load(store.Record{Secret: &store.NamedSecret{Name: "signing", Value: []byte("two")}})
	if got := mustSecret(t, d, "signing", func() ([]byte, error) { return nil, errRefused }); string(got) != "two" {
		t.Fatalf("secret after two loads = %q, want the second", got)
	}
}

func testTransferBadRecord(t *testing.T, dst Factory) {
	ctx := context.Background()
	d, c := open(t, dst)
	l := loaderOf(t, d)
	tok := newToken("a", c.Now())
	for _, r := range []store.Record{
		{},
		{Token: tok, Enrollment: newEnrollment("E1", tok, c.Now())},
		{Family: newFamily("F1", c.Now()), Secret: &store.NamedSecret{Name: "s", Value: []byte("v")}},
	} {
		if err := l.Load(ctx, r); !errors.Is(err, store.ErrBadRecord) {
			t.Errorf("Load(%+v): got %v, want ErrBadRecord", r, err)
		}
	}
	if got := scanTokens(t, d, nil); len(got) != 0 {
		t.Fatalf("a refused record was written: %d tokens", len(got))
	}
	if got := scanEnrollments(t, d, ""); len(got) != 0 {
		t.Fatalf("a refused record was written: %d enrollments", len(got))
	}
}

func testDumpStops(t *testing.T, src Factory) {
	s, c := open(t, src)
	transferSeed(t, s, c)
	calls := 0
	err := dumperOf(t, s).Dump(context.Background(), func(store.Record) error {
		calls++
		return errRefused
	})
	if !errors.Is(err, errRefused) || calls != 1 {
		t.Fatalf("Dump whose fn fails: %d calls, %v; want 1 call and the function's error", calls, err)
	}
}

func testDumpClosed(t *testing.T, src Factory) {
	s, c := open(t, src)
	transferSeed(t, s, c)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := dumperOf(t, s).Dump(ctx, func(store.Record) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("Dump cancelled in fn: %d calls, %v; want 1 call, context.Canceled", calls, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err = dumperOf(t, s).Dump(context.Background(), func(store.Record) error {
		return errors.New("fn called on a closed store")
	})
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Dump after Close: got %v, want ErrClosed", err)
	}
	if err := loaderOf(t, s).Load(context.Background(), store.Record{Token: newToken("a", c.Now())}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Load after Close: got %v, want ErrClosed", err)
	}
}
