package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
)

// twoInstances opens two stores on one schema, each with a pool of its
// own, as two gateways would, on one clock.
func twoInstances(t *testing.T) (a, b *Store, c *storetest.Clock) {
	c = storetest.NewClock(time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC))
	schema := freshSchema()
	a = openStore(t, Options{Schema: schema, Now: c.Now, MaxConns: 8})
	b = openStore(t, Options{Schema: schema, Now: c.Now, MaxConns: 8})
	if a.pool == b.pool {
		t.Fatal("the two instances share a pool")
	}
	return a, b, c
}

// race runs f(i, store) n times at once, alternating the two instances,
// and returns the errors.
func race(n int, a, b *Store, f func(i int, s *Store) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			<-start
			errs[i] = f(i, s)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner checks that exactly one of errs is nil and every other one is
// loser.
func oneWinner(t *testing.T, what string, errs []error, loser error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("%s: attempts %d and %d both succeeded", what, winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, loser):
			t.Errorf("%s: attempt %d: got %v, want %v", what, i, err, loser)
		}
	}
	if winner < 0 {
		t.Errorf("%s: no attempt succeeded", what)
	}
	return winner
}

var errUsed = errors.New("used")

func hash(s string) store.Hash { return sha256.Sum256([]byte(s)) }

// TestTwoInstancesSingleUse races two gateways, with pools of their own,
// on one authorization code, one login state and one refresh token: of
// every race exactly one attempt wins.
func TestTwoInstancesSingleUse(t *testing.T) {
	ctx := context.Background()
	a, b, c := twoInstances(t)
	const n, rounds = 16, 5

	t.Run("Code", func(t *testing.T) {
		for round := range rounds {
			h := hash(fmt.Sprintf("code-%d", round))
			if err := a.CreateCode(ctx, &store.Code{Hash: h, ClientID: "client", ExpiresAt: c.Now().Add(time.Minute)}); err != nil {
				t.Fatal(err)
			}
			errs := race(n, a, b, func(i int, s *Store) error {
				_, err := s.UpdateCode(ctx, h, func(code *store.Code) error {
					if !code.UsedAt.IsZero() {
						return errUsed
					}
					code.UsedAt, code.FamilyID = c.Now(), fmt.Sprintf("F%d", i)
					return nil
				})
				return err
			})
			w := oneWinner(t, fmt.Sprintf("round %d", round), errs, errUsed)
			// Either instance reads the winner's redemption.
			for _, s := range []*Store{a, b} {
				_, err := s.UpdateCode(ctx, h, func(code *store.Code) error {
					if code.FamilyID != fmt.Sprintf("F%d", w) {
						return fmt.Errorf("code redeemed by %q, want F%d", code.FamilyID, w)
					}
					return errUsed
				})
				if !errors.Is(err, errUsed) {
					t.Fatal(err)
				}
			}
		}
	})

	t.Run("LoginState", func(t *testing.T) {
		for round := range rounds {
			k := fmt.Sprintf("state-%d", round)
			want := store.LoginState{Data: []byte(k), ExpiresAt: c.Now().Add(10 * time.Minute)}
			if err := b.PutLoginState(ctx, k, want); err != nil {
				t.Fatal(err)
			}
			errs := race(n, a, b, func(_ int, s *Store) error {
				got, err := s.TakeLoginState(ctx, k)
				if err == nil && !bytes.Equal(got.Data, want.Data) {
					return fmt.Errorf("took %q, want %q", got.Data, want.Data)
				}
				return err
			})
			oneWinner(t, k, errs, store.ErrNotFound)
		}
	})

	t.Run("RefreshToken", func(t *testing.T) {
		for round := range rounds {
			id := fmt.Sprintf("F-%d", round)
			if err := a.CreateFamily(ctx, &store.Family{ID: id, RefreshHash: hash(id + "/0"), ExpiresAt: c.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			// Every attempt presents the generation-0 refresh token.
			errs := race(n, a, b, func(_ int, s *Store) error {
				_, err := s.UpdateFamily(ctx, id, func(f *store.Family) error {
					if f.RefreshHash != hash(id+"/0") {
						return errUsed
					}
					f.PreviousHash, f.RefreshHash = f.RefreshHash, hash(id+"/1")
					f.Generation++
					return nil
				})
				return err
			})
			oneWinner(t, id, errs, errUsed)
			if f, err := b.Family(ctx, id); err != nil || f.Generation != 1 {
				t.Fatalf("family after the race: %+v, %v; want generation 1", f, err)
			}
		}
	})
}

// TestTwoInstancesNoLostUpdate races two gateways on read-modify-writes
// of one record: every update is applied, none overwrites another.
func TestTwoInstancesNoLostUpdate(t *testing.T) {
	ctx := context.Background()
	a, b, c := twoInstances(t)
	const n = 16

	t.Run("Rotation", func(t *testing.T) {
		if err := a.CreateFamily(ctx, &store.Family{ID: "F", ExpiresAt: c.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		errs := race(n, a, b, func(_ int, s *Store) error {
			_, err := s.UpdateFamily(ctx, "F", func(f *store.Family) error { f.Generation++; return nil })
			return err
		})
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if f, err := a.Family(ctx, "F"); err != nil || f.Generation != n {
			t.Fatalf("after %d rotations on two instances: %+v, %v; want generation %d", n, f, err, n)
		}
	})

	t.Run("EnrollmentCreatedOnBoth", func(t *testing.T) {
		// Nobody has the row to lock: the instances collide on its key.
		errs := race(n, a, b, func(_ int, s *Store) error {
			_, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
				if e == nil {
					e = &store.Enrollment{State: store.StateActive}
				}
				e.ManagedAppleID += "x"
				return e, nil
			})
			return err
		})
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if e, err := b.Enrollment(ctx, "E1"); err != nil || e.ManagedAppleID != strings.Repeat("x", n) {
			t.Fatalf("after %d updates on two instances: %+v, %v; want %d appends", n, e, err, n)
		}
	})

	t.Run("Bind", func(t *testing.T) {
		for i := range n {
			tok := &store.Token{Hash: hash(fmt.Sprintf("bind-%d", i)), Issuer: "iss", Subject: "sub", ExpiresAt: c.Now().Add(time.Hour)}
			if err := a.CreateToken(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		// Every bind of one enrollment counts itself in it.
		errs := race(n, a, b, func(i int, s *Store) error {
			_, _, err := s.Bind(ctx, hash(fmt.Sprintf("bind-%d", i)), "E2", func(tok *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
				if e == nil {
					e = &store.Enrollment{State: store.StateActive}
				}
				e.Issuer, e.Subject, e.TokenHash = tok.Issuer, tok.Subject, tok.Hash
				e.Mode += "x"
				return e, nil
			})
			return err
		})
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		e, err := a.Enrollment(ctx, "E2")
		if err != nil || e.Mode != strings.Repeat("x", n) {
			t.Fatalf("after %d binds on two instances: %+v, %v; want %d", n, e, err, n)
		}
		toks, err := b.TokensForEnrollment(ctx, "E2")
		if err != nil || len(toks) != n {
			t.Fatalf("TokensForEnrollment after the binds: %d tokens, %v; want %d", len(toks), err, n)
		}
	})

	t.Run("SecretFirstUse", func(t *testing.T) {
		got := make([][]byte, n)
		errs := race(n, a, b, func(i int, s *Store) error {
			var err error
			got[i], err = s.Secret(ctx, "signing", func() ([]byte, error) {
				v := make([]byte, 32)
				_, err := rand.Read(v)
				return v, err
			})
			return err
		})
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if !bytes.Equal(got[i], got[0]) {
				t.Fatalf("instances disagree on the secret (attempt %d)", i)
			}
		}
	})
}

// TestRevocationSeenByTheOtherInstance: a token revoked, or an enrollment
// blocked, through one instance is seen so by the other's very next
// lookup, however often it looked the records up before.
func TestRevocationSeenByTheOtherInstance(t *testing.T) {
	ctx := context.Background()
	a, b, c := twoInstances(t)
	h := hash("device-token")
	if err := a.CreateToken(ctx, &store.Token{Hash: h, Issuer: "iss", Subject: "sub", ExpiresAt: c.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Bind(ctx, h, "E1", func(tok *store.Token, _ *store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{State: store.StateActive, TokenHash: tok.Hash}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		e, tok, err := b.Lookup(ctx, "E1", h)
		if err != nil || e == nil || tok == nil || !tok.RevokedAt.IsZero() {
			t.Fatalf("Lookup before revocation = %+v, %+v, %v", e, tok, err)
		}
	}
	revokedAt := c.Now()
	if _, err := a.UpdateToken(ctx, h, func(tok *store.Token) error { tok.RevokedAt = revokedAt; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, tok, err := b.Lookup(ctx, "E1", h); err != nil || !tok.RevokedAt.Equal(revokedAt) {
		t.Fatalf("the other instance's next Lookup = %+v, %v; want the token revoked at %v", tok, err, revokedAt)
	}
	if _, err := b.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
		e.State = store.StateBlocked
		return e, nil
	}); err != nil {
		t.Fatal(err)
	}
	if e, _, err := a.Lookup(ctx, "E1", h); err != nil || e.State != store.StateBlocked {
		t.Fatalf("the first instance's next Lookup = %+v, %v; want the enrollment blocked", e, err)
	}
}
