package token

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

func TestRefreshConcurrent(t *testing.T) {
	const n = 10
	e := newOAuthEnv(t)
	// Several rounds, each a new family and then a later generation, so
	// that the interleavings vary.
	for round := 0; round < 5; round++ {
		p0 := e.signIn("alice")
		famID := p0.Family.ID
		pairs := refreshConcurrently(t, e, p0.RefreshToken, n)
		assertOnePair(t, e, famID, pairs, 1)
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
		e.clock.Advance(time.Minute)
	}
}

// hooked puts a hookStore in front of the env's store.
func hooked(e *oenv) *hookStore {
	h := &hookStore{Store: e.store}
	e.m.Store = h
	return h
}

// stopFamilyTokens stops the first n calls that store an access token of a
// family.
func stopFamilyTokens(h *hookStore, n int) *stopper {
	s := newStopper()
	var mu sync.Mutex
	h.beforeCreateToken = func(t *store.Token) {
		mu.Lock()
		stop := t.FamilyID != "" && n > 0
		n--
		mu.Unlock()
		if stop {
			s.stop()
		}
	}
	return s
}

// firstOnly runs fn on the first call only; later calls (from other
// requests) go straight on.
func firstOnly(fn func()) func(string) {
	var done atomic.Bool
	return func(string) {
		if done.CompareAndSwap(false, true) {
			fn()
		}
	}
}

func refreshAsync(e *oenv, rt string) <-chan result {
	return async(func() (*TokenPair, error) { return e.o.Refresh(e.ctx, rt, testClient) })
}

// A refresh that read the family before a concurrent refresh of the same
// token rotated it gets that refresh's pair, with its family.
func TestRefreshConcurrentLoserAfterWinner(t *testing.T) {
	e := newOAuthEnv(t)
	h := hooked(e)
	p0 := e.signIn("alice")

	read := newStopper()
	h.afterFamily = firstOnly(read.stop)
	loser := refreshAsync(e, p0.RefreshToken)
	goOn := read.next(t) // the loser read the family, not yet rotated

	winner := e.refresh(p0.RefreshToken)
	goOn()
	r := recv(t, loser)
	if r.err != nil {
		t.Fatalf("loser: %v", r.err)
	}
	assertOnePair(t, e, p0.Family.ID, []*TokenPair{winner, r.pair}, 1)
}

// As above, but the winner has rotated the family and not yet stored the
// new access token when the loser answers.
func TestRefreshConcurrentLoserBeforeWinnerStored(t *testing.T) {
	e := newOAuthEnv(t)
	h := hooked(e)
	p0 := e.signIn("alice")

	read := newStopper()
	h.afterFamily = firstOnly(read.stop)
	loser := refreshAsync(e, p0.RefreshToken)
	goOnLoser := read.next(t)

	stored := stopFamilyTokens(h, 1)
	winner := refreshAsync(e, p0.RefreshToken)
	goOnWinner := stored.next(t) // rotated, access token not stored yet
	goOnLoser()
	rl := recv(t, loser)
	goOnWinner()
	rw := recv(t, winner)
	for name, r := range map[string]result{"loser": rl, "winner": rw} {
		if r.err != nil {
			t.Errorf("%s: %v", name, r.err)
		}
	}
	if rl.err == nil && rw.err == nil {
		assertOnePair(t, e, p0.Family.ID, []*TokenPair{rw.pair, rl.pair}, 1)
	}
}

// Two retries within the grace window that both find the rotated family
// without its access token: both store it, one of them second.
func TestRefreshConcurrentRetriesStoreOnce(t *testing.T) {
	e := newOAuthEnv(t)
	h := hooked(e)
	p0 := e.signIn("alice")
	stored := stopFamilyTokens(h, 3)

	first := refreshAsync(e, p0.RefreshToken)
	goOnFirst := stored.next(t) // rotated, access token not stored yet
	retry1 := refreshAsync(e, p0.RefreshToken)
	goOnRetry1 := stored.next(t)
	retry2 := refreshAsync(e, p0.RefreshToken)
	goOnRetry2 := stored.next(t)

	var rs []result
	goOnRetry1()
	rs = append(rs, recv(t, retry1))
	goOnRetry2()
	rs = append(rs, recv(t, retry2))
	goOnFirst()
	rs = append(rs, recv(t, first))
	var pairs []*TokenPair
	for i, r := range rs {
		if r.err != nil {
			t.Errorf("refresh %d: %v", i, r.err)
			continue
		}
		pairs = append(pairs, r.pair)
	}
	assertOnePair(t, e, p0.Family.ID, pairs, 1)
}

// assertFamilyDead checks that no access token of the revoked family passes
// Lookup and that a pair handed out (if any) is dead.
func assertFamilyDead(t *testing.T, e *oenv, famID string, r result) {
	t.Helper()
	f := e.fam(famID)
	if f.RevokedAt.IsZero() {
		t.Fatalf("family not revoked: %+v", f)
	}
	for h := range e.familyTokens(famID) {
		if !e.revoked(h) {
			t.Errorf("access token %s of the revoked family (%s) is not revoked", h.ID(), f.RevokeReason)
		}
	}
	if r.err != nil {
		var oe *OAuthError
		if !errors.As(r.err, &oe) || oe.Code != ErrCodeInvalidGrant {
			t.Errorf("racing request: %v, want invalid_grant or a dead pair", r.err)
		}
		return
	}
	if _, err := e.m.Lookup(e.ctx, r.pair.AccessToken); ReasonOf(err) != ReasonRevoked {
		t.Errorf("the racing request got an access token that passes Lookup (%v) in a family revoked for %s", err, f.RevokeReason)
	}
	_, err := e.o.Refresh(e.ctx, r.pair.RefreshToken, testClient)
	wantGrant(t, err, "family_revoked")
}

// A revocation that lists the family's tokens while a refresh is between
// rotating and storing its access token must still reach that token.
func TestRefreshRacingReuseRevocation(t *testing.T) {
	e := newOAuthEnv(t)
	h := hooked(e)
	p0 := e.signIn("alice")
	p1 := e.refresh(p0.RefreshToken) // the legitimate client's pair
	e.clock.Advance(DefaultRefreshGrace + time.Second)

	stored := stopFamilyTokens(h, 1)
	thief := refreshAsync(e, p1.RefreshToken)
	goOn := stored.next(t)
	// The legitimate client, a little later, presents p1's refresh token
	// too — now spent: reuse.
	e.clock.Advance(DefaultRefreshGrace + time.Second)
	_, err := e.o.Refresh(e.ctx, p1.RefreshToken, testClient)
	wantGrant(t, err, "refresh_reuse")
	goOn()
	r := recv(t, thief)
	assertFamilyDead(t, e, p0.Family.ID, r)
}

// The same with a revocation by an operator.
func TestRefreshRacingOperatorRevocation(t *testing.T) {
	e := newOAuthEnv(t)
	h := hooked(e)
	p0 := e.signIn("alice")
	stored := stopFamilyTokens(h, 1)
	pending := refreshAsync(e, p0.RefreshToken)
	goOn := stored.next(t)
	if err := e.o.RevokeFamily(e.ctx, p0.Family.ID, "operator"); err != nil {
		t.Fatal(err)
	}
	goOn()
	assertFamilyDead(t, e, p0.Family.ID, recv(t, pending))
}

// Two redemptions of one code at once: the replay must revoke what the
// first one issues, however far the first one got.
func TestExchangeRacingReplay(t *testing.T) {
	for _, at := range []string{"before the family is stored", "before the access token is stored"} {
		t.Run(at, func(t *testing.T) {
			e := newOAuthEnv(t)
			h := hooked(e)
			code := e.code(e.codeGrant("alice"))
			s := newStopper()
			stop := firstOnly(s.stop)
			if at == "before the family is stored" {
				h.beforeCreateFamily = func(*store.Family) { stop("") }
			} else {
				h.beforeCreateToken = func(t *store.Token) {
					if t.FamilyID != "" {
						stop("")
					}
				}
			}
			first := async(func() (*TokenPair, error) {
				return e.o.Exchange(e.ctx, code, testClient, testRedirect, "")
			})
			goOn := s.next(t)
			_, err := e.o.Exchange(e.ctx, code, testClient, testRedirect, "")
			wantGrant(t, err, "code_replay")
			goOn()
			r := recv(t, first)
			famID := e.codeRecord(code).FamilyID
			if famID == "" {
				t.Fatal("the code names no family")
			}
			if _, err := e.store.Family(e.ctx, famID); errors.Is(err, store.ErrNotFound) {
				// Nothing was issued: the first redemption must have failed.
				if r.err == nil {
					t.Fatal("the first redemption returned a pair without a family")
				}
				return
			}
			assertFamilyDead(t, e, famID, r)
		})
	}
}
