package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// call is one store method invoked with a context, reduced to its error.
type call struct {
	name string
	do   func(ctx context.Context, s store.Store) error
}

// everyMethod calls each Store method except Close on records seeded by
// seedAll and seedOAuth. The scans' functions ask for every record.
func everyMethod(now time.Time) []call {
	h := hashOf("seed")
	return []call{
		{"CreateToken", func(ctx context.Context, s store.Store) error {
			return s.CreateToken(ctx, newToken("fresh", now))
		}},
		{"Token", func(ctx context.Context, s store.Store) error {
			_, err := s.Token(ctx, h)
			return err
		}},
		{"UpdateToken", func(ctx context.Context, s store.Store) error {
			_, err := s.UpdateToken(ctx, h, func(t *store.Token) error { t.RevokedAt = now; return nil })
			return err
		}},
		{"Enrollment", func(ctx context.Context, s store.Store) error {
			_, err := s.Enrollment(ctx, "E1")
			return err
		}},
		{"UpdateEnrollment", func(ctx context.Context, s store.Store) error {
			_, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
				e.State = store.StateBlocked
				return e, nil
			})
			return err
		}},
		{"Bind", func(ctx context.Context, s store.Store) error {
			_, _, err := s.Bind(ctx, h, "E2", bindFunc(now))
			return err
		}},
		{"Lookup", func(ctx context.Context, s store.Store) error {
			_, _, err := s.Lookup(ctx, "E1", h)
			return err
		}},
		{"TokensForEnrollment", func(ctx context.Context, s store.Store) error {
			_, err := s.TokensForEnrollment(ctx, "E1")
			return err
		}},
		{"EnrollmentsForUser", func(ctx context.Context, s store.Store) error {
			_, err := s.EnrollmentsForUser(ctx, idp, "sub-seed")
			return err
		}},
		{"PutLoginState", func(ctx context.Context, s store.Store) error {
			return s.PutLoginState(ctx, "fresh", store.LoginState{Data: []byte("x"), ExpiresAt: now.Add(time.Hour)})
		}},
		{"TakeLoginState", func(ctx context.Context, s store.Store) error {
			_, err := s.TakeLoginState(ctx, "k")
			return err
		}},
		{"Secret", func(ctx context.Context, s store.Store) error {
			_, err := s.Secret(ctx, "fresh", func() ([]byte, error) { return []byte("fresh"), nil })
			return err
		}},
		{"CreateCode", func(ctx context.Context, s store.Store) error {
			return s.CreateCode(ctx, newCode("fresh", now))
		}},
		{"UpdateCode", func(ctx context.Context, s store.Store) error {
			_, err := s.UpdateCode(ctx, hashOf("code-seed"), redeem(now, "F1"))
			return err
		}},
		{"CreateFamily", func(ctx context.Context, s store.Store) error {
			return s.CreateFamily(ctx, newFamily("fresh", now))
		}},
		{"Family", func(ctx context.Context, s store.Store) error {
			_, err := s.Family(ctx, "F1")
			return err
		}},
		{"UpdateFamily", func(ctx context.Context, s store.Store) error {
			_, err := s.UpdateFamily(ctx, "F1", advance(now))
			return err
		}},
		{"TokensForFamily", func(ctx context.Context, s store.Store) error {
			_, err := s.TokensForFamily(ctx, "F1")
			return err
		}},
		{"ScanEnrollments", func(ctx context.Context, s store.Store) error {
			return s.ScanEnrollments(ctx, "", func(*store.Enrollment) bool { return true })
		}},
		{"ScanTokens", func(ctx context.Context, s store.Store) error {
			return s.ScanTokens(ctx, nil, func(*store.Token) bool { return true })
		}},
		{"ScanFamilies", func(ctx context.Context, s store.Store) error {
			return s.ScanFamilies(ctx, "", func(*store.Family) bool { return true })
		}},
		{"CountLoginStates", func(ctx context.Context, s store.Store) error {
			_, err := s.CountLoginStates(ctx)
			return err
		}},
		{"TokensForUser", func(ctx context.Context, s store.Store) error {
			_, err := s.TokensForUser(ctx, idp, "sub-seed")
			return err
		}},
		{"FamiliesForUser", func(ctx context.Context, s store.Store) error {
			_, err := s.FamiliesForUser(ctx, idp, "sub-F1")
			return err
		}},
		{"Size", func(ctx context.Context, s store.Store) error {
			_, err := s.Size(ctx)
			return err
		}},
		{"Ping", func(ctx context.Context, s store.Store) error { return s.Ping(ctx) }},
	}
}

// oauthSeed is what seedOAuth stored.
type oauthSeed struct {
	code   *store.Code
	family *store.Family
	token  *store.Token
}

// seedOAuth stores unused code "seed", family "F1" and token "fam" issued
// in it.
func seedOAuth(t *testing.T, s store.Store, c *Clock) oauthSeed {
	t.Helper()
	o := oauthSeed{
		code:   newCode("seed", c.Now()),
		family: newFamily("F1", c.Now()),
		token:  newFamilyToken("fam", "F1", c.Now()),
	}
	createCode(t, s, o.code)
	createFamily(t, s, o.family)
	createToken(t, s, o.token)
	return o
}

// assertUnchanged checks that the records seedOAuth stored are intact and
// that none of everyMethod's fresh ones exist.
func (o oauthSeed) assertUnchanged(t *testing.T, s store.Store) {
	t.Helper()
	assertCode(t, peekCode(t, s, o.code.Hash), o.code)
	assertFamily(t, mustFamily(t, s, o.family.ID), o.family)
	assertFamilyListed(t, s, o.family.ID, o.token)
	assertCodeAbsent(t, s, hashOf("code-fresh"))
	assertFamilyAbsent(t, s, "fresh")
}

// seedAll stores one record of each kind: token "seed" bound to E1, login
// state "k" and secret "signing". It returns what it stored.
func seedAll(t *testing.T, s store.Store, c *Clock) (*store.Token, *store.Enrollment, store.LoginState, []byte) {
	t.Helper()
	createToken(t, s, newToken("seed", c.Now()))
	tok, e := bind(t, s, hashOf("seed"), "E1", c.Now())
	ls := store.LoginState{Data: []byte("pending"), ExpiresAt: c.Now().Add(time.Hour)}
	putState(t, s, "k", ls)
	var calls atomic.Int32
	secret := mustSecret(t, s, "signing", randomSecret(&calls))
	return tok, e, ls, secret
}

// assertUnchanged checks that the records seedAll stored are intact.
func assertUnchanged(t *testing.T, s store.Store, tok *store.Token, e *store.Enrollment) {
	t.Helper()
	assertToken(t, mustToken(t, s, tok.Hash), tok)
	assertEnrollment(t, mustEnrollment(t, s, e.ID), e)
	assertListed(t, s, e.ID, tok)
	assertUserListed(t, s, tok.Issuer, tok.Subject, e)
	if _, err := s.Token(context.Background(), hashOf("fresh")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token created with a cancelled context: Token got %v, want ErrNotFound", err)
	}
	assertEnrollmentAbsent(t, s, "E2")
	assertTakeNotFound(t, s, "fresh")
}

func testLifecycle(t *testing.T, f Factory) {
	t.Run("Ping", func(t *testing.T) {
		s, _ := open(t, f)
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("ErrClosedAfterClose", func(t *testing.T) {
		s, c := open(t, f)
		seedAll(t, s, c)
		seedOAuth(t, s, c)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for _, m := range everyMethod(c.Now()) {
			if err := m.do(context.Background(), s); !errors.Is(err, store.ErrClosed) {
				t.Errorf("%s after Close: got %v, want ErrClosed", m.name, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		s, c := open(t, f)
		tok, e, ls, _ := seedAll(t, s, c)
		o := seedOAuth(t, s, c)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, m := range everyMethod(c.Now()) {
			if err := m.do(ctx, s); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled context: got %v, want context.Canceled", m.name, err)
			}
		}
		assertUnchanged(t, s, tok, e)
		o.assertUnchanged(t, s)
		assertTake(t, s, "k", ls)
	})
}

func testDurability(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("DataSurvivesReopen", func(t *testing.T) {
		s, c := open(t, f)
		tok, e, ls, secret := seedAll(t, s, c)
		revoked := newToken("revoked", c.Now())
		revoked.RevokedAt = c.Now()
		createToken(t, s, revoked)
		putState(t, s, "taken", ls)
		assertTake(t, s, "taken", ls)
		o := seedOAuth(t, s, c)
		used := newCode("used", c.Now())
		createCode(t, s, used)
		if _, err := s.UpdateCode(ctx, used.Hash, redeem(c.Now(), "F1")); err != nil {
			t.Fatalf("UpdateCode: %v", err)
		}
		used.UsedAt, used.FamilyID = c.Now(), "F1"
		rotated := newFamily("F2", c.Now())
		createFamily(t, s, rotated)
		if _, err := s.UpdateFamily(ctx, "F2", advance(c.Now())); err != nil {
			t.Fatalf("UpdateFamily: %v", err)
		}
		if err := advance(c.Now())(rotated); err != nil {
			t.Fatal(err)
		}

		s = f.Reopen(t, s, c.Now)
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping after reopen: %v", err)
		}
		assertToken(t, mustToken(t, s, tok.Hash), tok)
		assertToken(t, mustToken(t, s, revoked.Hash), revoked)
		assertEnrollment(t, mustEnrollment(t, s, e.ID), e)
		assertListed(t, s, e.ID, tok)
		assertUserListed(t, s, tok.Issuer, tok.Subject, e)
		if err := s.CreateToken(ctx, newToken("seed", c.Now())); !errors.Is(err, store.ErrExists) {
			t.Fatalf("CreateToken of a token stored before reopen: got %v, want ErrExists", err)
		}
		// A taken state stays taken; a pending one is still usable once.
		assertTakeNotFound(t, s, "taken")
		assertTake(t, s, "k", ls)
		var calls atomic.Int32
		if got := mustSecret(t, s, "signing", randomSecret(&calls)); !bytes.Equal(got, secret) {
			t.Fatal("secret changed across reopen")
		}
		if n := calls.Load(); n != 0 {
			t.Fatalf("gen called %d times after reopen, want 0", n)
		}

		o.assertUnchanged(t, s)
		assertCode(t, peekCode(t, s, used.Hash), used)
		assertFamily(t, mustFamily(t, s, "F2"), rotated)
		if err := s.CreateCode(ctx, newCode("seed", c.Now())); !errors.Is(err, store.ErrExists) {
			t.Fatalf("CreateCode of a code stored before reopen: got %v, want ErrExists", err)
		}
		if err := s.CreateFamily(ctx, newFamily("F1", c.Now())); !errors.Is(err, store.ErrExists) {
			t.Fatalf("CreateFamily of a family stored before reopen: got %v, want ErrExists", err)
		}
	})

	t.Run("EnrollmentsForUserAfterReopen", func(t *testing.T) {
		s, c := open(t, f)
		a1 := ownedBy("E1", idp, "sub-a", c.Now())
		saveEnrollment(t, s, a1)
		saveEnrollment(t, s, ownedBy("E2", idp, "sub-a", c.Now()))
		saveEnrollment(t, s, ownedBy("E3", idp, "sub-a", c.Now()))
		moved := changeEnrollment(t, s, "E2", func(e *store.Enrollment) { e.Subject = "sub-b" })
		removed := changeEnrollment(t, s, "E3", func(e *store.Enrollment) { e.State = store.StateRemoved })
		cleared := ownedBy("E4", idp, "sub-c", c.Now())
		saveEnrollment(t, s, cleared)
		changeEnrollment(t, s, "E4", func(e *store.Enrollment) { e.Issuer, e.Subject = "", "" })

		s = f.Reopen(t, s, c.Now)
		assertUserListed(t, s, idp, "sub-a", a1, removed)
		assertUserListed(t, s, idp, "sub-b", moved)
		assertUserListed(t, s, idp, "sub-c")
		assertUserListed(t, s, "", "")

		// The listing is kept up to date after reopening too.
		moved = changeEnrollment(t, s, "E2", func(e *store.Enrollment) { e.Subject = "sub-a" })
		assertUserListed(t, s, idp, "sub-a", a1, moved, removed)
		assertUserListed(t, s, idp, "sub-b")
	})

	t.Run("ExpiryAfterReopen", func(t *testing.T) {
		s, c := open(t, f)
		ls := store.LoginState{Data: []byte("pending"), ExpiresAt: c.Now().Add(time.Minute)}
		putState(t, s, "k", ls)
		c.Advance(2 * time.Minute)
		s = f.Reopen(t, s, c.Now)
		assertTakeNotFound(t, s, "k")
	})
}
