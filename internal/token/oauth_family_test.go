package token

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// bindPair lets the pair's access token enroll id, as the device's first
// Authenticate does once the MDM accepted it.
func (e *oenv) bindPair(p *TokenPair, id string) {
	e.tb.Helper()
	d := e.authorize(Request{Bearer: p.AccessToken, MessageType: "Authenticate", EnrollmentID: id})
	if !d.Allow || !d.Pending() {
		e.tb.Fatalf("bind %s: Allow=%v Pending=%v Reason=%s", id, d.Allow, d.Pending(), d.Reason)
	}
	e.commit(d)
	if f := e.fam(p.Family.ID); f.EnrollmentID != id {
		e.tb.Fatalf("family EnrollmentID = %q after binding, want %q", f.EnrollmentID, id)
	}
}

func TestRefreshBindingCarriesOver(t *testing.T) {
	const id, other = "enr-1", "enr-2"
	e := newOAuthEnv(t)
	p0 := e.signIn("alice")
	famID := p0.Family.ID

	// Before any MDM request the refreshed token is unbound too.
	e.clock.Advance(time.Minute)
	p1 := e.refresh(p0.RefreshToken)
	if p1.Access.EnrollmentID != "" {
		t.Fatalf("unbound family issued a token bound to %q", p1.Access.EnrollmentID)
	}

	e.bindPair(p1, id)
	e.clock.Advance(time.Hour)
	p2 := e.refresh(p1.RefreshToken)
	if p2.Access.EnrollmentID != id || p2.Family.EnrollmentID != id {
		t.Fatalf("refreshed token EnrollmentID=%q family %q, want %q", p2.Access.EnrollmentID, p2.Family.EnrollmentID, id)
	}
	if tok := e.tok(p2.Access.Hash); tok.EnrollmentID != id || tok.FamilyID != famID {
		t.Errorf("stored token %+v", tok)
	}
	if !e.boundTo(id)[p2.Access.Hash] {
		t.Error("the refreshed token is not listed for its enrollment")
	}

	// It passes for its enrollment and takes over the binding...
	d := e.authorize(Request{Bearer: p2.AccessToken, MessageType: "TokenUpdate", EnrollmentID: id})
	if !d.Allow || d.Reason != ReasonOK {
		t.Fatalf("own enrollment: Allow=%v Reason=%s", d.Allow, d.Reason)
	}
	e.commit(d)
	if got := e.enr(id); got.TokenHash != p2.Access.Hash || got.State != store.StateActive || got.Subject != "sub-alice" {
		t.Errorf("enrollment %+v, want bound to the refreshed token", got)
	}
	e.refused(p1.AccessToken, ReasonRevoked, "the token it replaced on the enrollment")
	e.valid(p2.AccessToken, "refreshed token")
	d = e.authorize(Request{Bearer: p2.AccessToken, MessageType: "TokenUpdate", EnrollmentID: id})
	if !d.Allow || d.Pending() {
		t.Errorf("second request: Allow=%v Pending=%v Reason=%s", d.Allow, d.Pending(), d.Reason)
	}

	// ...and is refused for another one, which it does not create.
	e.ids[other] = true
	before := e.snapshot()
	d = e.authorize(Request{Bearer: p2.AccessToken, MessageType: "Authenticate", EnrollmentID: other})
	if d.Allow || d.Reason != ReasonWrongEnrollment || d.Pending() {
		t.Errorf("other enrollment: Allow=%v Reason=%s Pending=%v", d.Allow, d.Reason, d.Pending())
	}
	e.unchanged(before, "a request for another enrollment")
	e.noEnr(other)

	// A grace retry of the binding-era refresh token hands out the same
	// bound token.
	if p := e.refresh(p1.RefreshToken); !samePair(p, p2) || p.Access.EnrollmentID != id {
		t.Error("grace retry: a different or unbound pair")
	}
}

func TestRefreshEnrollmentState(t *testing.T) {
	const id = "enr-1"
	for _, st := range allStates {
		t.Run(string(st), func(t *testing.T) {
			e := newOAuthEnv(t)
			p0 := e.signIn("alice")
			famID := p0.Family.ID
			e.bindPair(p0, id)
			e.clock.Advance(time.Minute)
			for _, s := range pathTo[st] {
				e.setState(id, s, e.clock.Now().Add(48*time.Hour))
			}
			e.clock.Advance(time.Minute)
			before := e.fam(famID)

			p, err := e.o.Refresh(e.ctx, p0.RefreshToken, testClient)
			if st == store.StateActive {
				if err != nil {
					t.Fatalf("active enrollment: %v", err)
				}
				if p.Access.EnrollmentID != id {
					t.Errorf("EnrollmentID = %q", p.Access.EnrollmentID)
				}
				return
			}
			wantGrant(t, err, "enrollment_"+string(st), p0.RefreshToken)
			after := e.fam(famID)
			if after.Generation != before.Generation || after.RefreshHash != before.RefreshHash {
				t.Error("a refused refresh rotated the family")
			}
			if got := e.familyTokens(famID); len(got) != 1 {
				t.Errorf("family has %d access tokens, want 1", len(got))
			}
			if got := e.enr(id); got.State != st {
				t.Errorf("enrollment state %s, want %s unchanged", got.State, st)
			}
			// Still refused on the next try: the user must sign in.
			_, err = e.o.Refresh(e.ctx, p0.RefreshToken, testClient)
			wantGrant(t, err, "enrollment_"+string(st))
		})
	}
}

func TestRefreshAfterOperatorReauthThenSignIn(t *testing.T) {
	// The old family stays refused after the user signed in again and the
	// enrollment is active with the new family's token.
	const id = "enr-1"
	e := newOAuthEnv(t)
	old := e.signIn("alice")
	e.bindPair(old, id)
	e.clock.Advance(time.Minute)
	e.setState(id, store.StateReauth, time.Time{})
	_, err := e.o.Refresh(e.ctx, old.RefreshToken, testClient)
	wantGrant(t, err, "enrollment_reauth")

	e.clock.Advance(time.Minute)
	fresh := e.signIn("alice")
	d := e.authorize(Request{Bearer: fresh.AccessToken, MessageType: "TokenUpdate", EnrollmentID: id})
	if !d.Allow {
		t.Fatalf("fresh sign-in: Reason=%s", d.Reason)
	}
	e.commit(d)
	if got := e.enr(id); got.State != store.StateActive || got.TokenHash != fresh.Access.Hash {
		t.Fatalf("enrollment %+v", got)
	}
	p := e.refresh(fresh.RefreshToken)
	if p.Access.EnrollmentID != id {
		t.Errorf("new family's refreshed token bound to %q", p.Access.EnrollmentID)
	}
}

func TestRevalidateNotDue(t *testing.T) {
	e := newOAuthEnv(t)
	idp := &fakeIdP{err: errors.New("must not be called")}
	e.o.Revalidate = idp.revalidate
	p := e.signIn("alice")
	for i := 0; i < 3; i++ {
		e.clock.Advance(4 * time.Minute) // 12 minutes in all: under the default 15
		p = e.refresh(p.RefreshToken)
	}
	if n := idp.count(); n != 0 {
		t.Fatalf("Revalidate called %d times before it was due", n)
	}
	if f := e.fam(p.Family.ID); !f.RevalidatedAt.Equal(epoch) || !f.RevalidatingUntil.IsZero() {
		t.Errorf("RevalidatedAt=%s RevalidatingUntil=%s", f.RevalidatedAt, f.RevalidatingUntil)
	}

	// RevalidateEvery is honoured.
	e.o.RevalidateEvery = time.Hour
	e.clock.Advance(DefaultRevalidateEvery) // 27 minutes after the sign-in
	p = e.refresh(p.RefreshToken)
	if n := idp.count(); n != 0 {
		t.Fatalf("Revalidate called %d times with RevalidateEvery=1h", n)
	}
}

func TestRevalidateDue(t *testing.T) {
	e := newOAuthEnv(t)
	idp := &fakeIdP{res: &Revalidation{IdPRefresh: []byte("sealed-rotated"), IdPKeyID: "k2"}}
	e.o.Revalidate = idp.revalidate
	p0 := e.signIn("alice")
	famID := p0.Family.ID
	e.clock.Advance(DefaultRevalidateEvery)

	p1 := e.refresh(p0.RefreshToken)
	if n := idp.count(); n != 1 {
		t.Fatalf("Revalidate called %d times, want 1", n)
	}
	if seen := idp.seen[0]; seen.ID != famID || string(seen.IdPRefresh) != "sealed-idp-refresh-alice" || seen.IdPKeyID != "k1" || seen.Subject != "sub-alice" {
		t.Errorf("Revalidate got family %+v", seen)
	}
	now := e.clock.Now()
	f := e.fam(famID)
	if !f.RevalidatedAt.Equal(now) || !f.RevalidatingUntil.IsZero() ||
		string(f.IdPRefresh) != "sealed-rotated" || f.IdPKeyID != "k2" {
		t.Errorf("family after the check: RevalidatedAt=%s until=%s idp=%q/%q", f.RevalidatedAt, f.RevalidatingUntil, f.IdPRefresh, f.IdPKeyID)
	}
	if f.Generation != 1 || f.RefreshHash != HashOf(p1.RefreshToken) {
		t.Errorf("family not rotated: %+v", f)
	}

	// Checked just now: the next refreshes do not ask.
	e.clock.Advance(time.Minute)
	p2 := e.refresh(p1.RefreshToken)
	if n := idp.count(); n != 1 {
		t.Fatalf("Revalidate called %d times, want 1", n)
	}

	// A check without a new provider token keeps the old one.
	idp.mu.Lock()
	idp.res = &Revalidation{}
	idp.mu.Unlock()
	e.clock.Advance(DefaultRevalidateEvery)
	p3 := e.refresh(p2.RefreshToken)
	if n := idp.count(); n != 2 {
		t.Fatalf("Revalidate called %d times, want 2", n)
	}
	if f := e.fam(famID); string(f.IdPRefresh) != "sealed-rotated" || f.IdPKeyID != "k2" || !f.RevalidatedAt.Equal(e.clock.Now()) {
		t.Errorf("family after an empty result: %q/%q %s", f.IdPRefresh, f.IdPKeyID, f.RevalidatedAt)
	}

	// A retry within the grace window is answered without asking, even
	// when a check would be due.
	e.o.RevalidateEvery = 10 * time.Second
	e.clock.Advance(2 * time.Minute)
	p4 := e.refresh(p3.RefreshToken)
	if n := idp.count(); n != 3 {
		t.Fatalf("Revalidate called %d times, want 3", n)
	}
	e.clock.Advance(30 * time.Second)
	if p := e.refresh(p3.RefreshToken); !samePair(p, p4) {
		t.Fatal("grace retry: a different pair")
	}
	if n := idp.count(); n != 3 {
		t.Errorf("a grace retry called Revalidate (%d calls)", n)
	}
}

func TestRevalidateRejected(t *testing.T) {
	const id = "enr-1"
	for _, bound := range []bool{true, false} {
		name := "unbound"
		if bound {
			name = "bound"
		}
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t)
			idp := &fakeIdP{err: &Rejection{Reason: "idp_refused"}}
			e.o.Revalidate = idp.revalidate
			p0 := e.signIn("alice")
			famID := p0.Family.ID
			if bound {
				e.bindPair(p0, id)
			}
			e.clock.Advance(5 * time.Minute)
			p1 := e.refresh(p0.RefreshToken) // not due yet
			other := e.signIn("alice")       // another family, checked just now
			e.clock.Advance(DefaultRevalidateEvery)

			p, err := e.o.Refresh(e.ctx, p1.RefreshToken, testClient)
			if p != nil {
				t.Error("a refused refresh returned a pair")
			}
			wantGrant(t, err, "idp_refused", p1.RefreshToken)
			if n := idp.count(); n != 1 {
				t.Errorf("Revalidate called %d times, want 1", n)
			}
			f := e.fam(famID)
			if !f.RevokedAt.Equal(e.clock.Now()) || f.RevokeReason != "idp_refused" {
				t.Errorf("family RevokedAt=%s reason %q, want revoked now for idp_refused", f.RevokedAt, f.RevokeReason)
			}
			if f.Generation != 1 || f.RefreshHash != HashOf(p1.RefreshToken) {
				t.Error("the refused refresh rotated the family")
			}
			if got := e.familyTokens(famID); len(got) != 2 {
				t.Errorf("family has %d access tokens, want 2", len(got))
			}
			e.refused(p0.AccessToken, ReasonRevoked, "first access token")
			e.refused(p1.AccessToken, ReasonRevoked, "second access token")
			e.valid(other.AccessToken, "another family")
			if bound {
				if got := e.enr(id); got.State != store.StateReauth {
					t.Errorf("enrollment state %s, want reauth", got.State)
				}
			} else {
				e.noEnr(id)
			}
			// Refused from now on, without asking again.
			_, err = e.o.Refresh(e.ctx, p1.RefreshToken, testClient)
			wantGrant(t, err, "family_revoked")
			if n := idp.count(); n != 1 {
				t.Errorf("Revalidate called %d times, want 1", n)
			}
		})
	}
}

func TestRevalidateRejectedEnrollmentAlreadyBlocked(t *testing.T) {
	// The check is due but the enrollment state refuses first: nothing
	// asks the provider and the state is kept.
	const id = "enr-1"
	e := newOAuthEnv(t)
	idp := &fakeIdP{err: &Rejection{Reason: "idp_refused"}}
	e.o.Revalidate = idp.revalidate
	p := e.signIn("alice")
	e.bindPair(p, id)
	e.setState(id, store.StateBlocked, time.Time{})
	e.clock.Advance(DefaultRevalidateEvery)
	_, err := e.o.Refresh(e.ctx, p.RefreshToken, testClient)
	wantGrant(t, err, "enrollment_blocked")
	if n := idp.count(); n != 0 {
		t.Errorf("Revalidate called %d times", n)
	}
	if got := e.enr(id); got.State != store.StateBlocked {
		t.Errorf("state %s, want blocked", got.State)
	}
}

func TestRevalidateTransientError(t *testing.T) {
	e := newOAuthEnv(t)
	idp := &fakeIdP{err: errors.New("provider unreachable")}
	e.o.Revalidate = idp.revalidate
	p := e.signIn("alice")
	famID := p.Family.ID
	e.clock.Advance(DefaultRevalidateEvery)

	for i := 1; i <= 3; i++ {
		p = e.refresh(p.RefreshToken)
		if n := idp.count(); n != i {
			t.Fatalf("refresh %d: Revalidate called %d times, want %d", i, n, i)
		}
		f := e.fam(famID)
		if !f.RevalidatedAt.Equal(epoch) || !f.RevalidatingUntil.IsZero() || !f.RevokedAt.IsZero() ||
			string(f.IdPRefresh) != "sealed-idp-refresh-alice" || f.IdPKeyID != "k1" {
			t.Errorf("refresh %d: family %+v", i, f)
		}
		if f.Generation != uint64(i) {
			t.Errorf("refresh %d: generation %d", i, f.Generation)
		}
		e.valid(p.AccessToken, "access token")
		e.clock.Advance(time.Minute)
	}

	// Once the provider answers, the check is recorded.
	idp.mu.Lock()
	idp.err = nil
	idp.mu.Unlock()
	p = e.refresh(p.RefreshToken)
	if f := e.fam(famID); !f.RevalidatedAt.Equal(e.clock.Now()) || idp.count() != 4 {
		t.Errorf("RevalidatedAt=%s after %d calls", f.RevalidatedAt, idp.count())
	}
	e.refresh(p.RefreshToken)
	if n := idp.count(); n != 4 {
		t.Errorf("Revalidate called %d times, want 4", n)
	}
}

func TestRevalidateLease(t *testing.T) {
	e := newOAuthEnv(t)
	idp := &fakeIdP{}
	e.o.Revalidate = idp.revalidate
	p := e.signIn("alice")
	famID := p.Family.ID
	e.clock.Advance(DefaultRevalidateEvery)
	// Another gateway holds the check.
	until := e.clock.Now().Add(20 * time.Second)
	if _, err := e.store.UpdateFamily(e.ctx, famID, func(f *store.Family) error {
		f.RevalidatingUntil = until
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p = e.refresh(p.RefreshToken)
	e.clock.Advance(19 * time.Second)
	p = e.refresh(p.RefreshToken)
	if n := idp.count(); n != 0 {
		t.Fatalf("Revalidate called %d times while another holds the lease", n)
	}
	if f := e.fam(famID); !f.RevalidatingUntil.Equal(until) {
		t.Errorf("lease changed to %s", f.RevalidatingUntil)
	}
	// The holder went away: once its lease ran out, the next refresh asks.
	e.clock.Advance(time.Second)
	e.refresh(p.RefreshToken)
	if n := idp.count(); n != 1 {
		t.Fatalf("Revalidate called %d times after the lease ran out, want 1", n)
	}
	if f := e.fam(famID); !f.RevalidatingUntil.IsZero() || !f.RevalidatedAt.Equal(e.clock.Now()) {
		t.Errorf("after the check: until=%s at=%s", f.RevalidatingUntil, f.RevalidatedAt)
	}
}

func TestRevalidateConcurrent(t *testing.T) {
	const n = 10
	e := newOAuthEnv(t)
	idp := &fakeIdP{res: &Revalidation{IdPRefresh: []byte("sealed-rotated"), IdPKeyID: "k2"}, delay: 20 * time.Millisecond}
	e.o.Revalidate = idp.revalidate
	p0 := e.signIn("alice")
	famID := p0.Family.ID
	e.clock.Advance(DefaultRevalidateEvery)

	pairs := refreshConcurrently(t, e, p0.RefreshToken, n)
	if c := idp.count(); c != 1 {
		t.Errorf("Revalidate called %d times by %d concurrent refreshes, want 1", c, n)
	}
	assertOnePair(t, e, famID, pairs, 1)
	if f := e.fam(famID); string(f.IdPRefresh) != "sealed-rotated" || !f.RevalidatedAt.Equal(e.clock.Now()) || !f.RevalidatingUntil.IsZero() {
		t.Errorf("family after the check: %q %s %s", f.IdPRefresh, f.RevalidatedAt, f.RevalidatingUntil)
	}
}

// refreshConcurrently presents rt n times at once and returns the pairs;
// errors (and panics) fail the test.
func refreshConcurrently(t *testing.T, e *oenv, rt string, n int) []*TokenPair {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	chans := make([]<-chan result, n)
	for i := range chans {
		wg.Add(1)
		chans[i] = async(func() (*TokenPair, error) {
			wg.Done()
			<-start
			return e.o.Refresh(e.ctx, rt, testClient)
		})
	}
	wg.Wait()
	close(start)
	var pairs []*TokenPair
	for i, ch := range chans {
		r := recv(t, ch)
		if r.err != nil {
			t.Errorf("refresh %d: %v", i, r.err)
			continue
		}
		pairs = append(pairs, r.pair)
	}
	return pairs
}

// assertOnePair checks that every response is the same, complete pair and
// that the family rotated once and holds gen+1 access tokens, none revoked.
func assertOnePair(t *testing.T, e *oenv, famID string, pairs []*TokenPair, tokens int) {
	t.Helper()
	if len(pairs) == 0 {
		t.Fatal("no refresh succeeded")
	}
	first := pairs[0]
	for i, p := range pairs {
		if !samePair(p, first) || p.ExpiresIn != first.ExpiresIn {
			t.Errorf("refresh %d got another pair", i)
		}
		if p.Access == nil || p.Access.Hash != HashOf(first.AccessToken) {
			t.Errorf("refresh %d: Access %+v", i, p.Access)
		}
		if p.Family == nil || p.Family.ID != famID {
			t.Errorf("refresh %d: Family %+v, want family %s", i, p.Family, famID)
		}
	}
	f := e.fam(famID)
	if !f.RevokedAt.IsZero() || f.Generation != 1 || f.RefreshHash != HashOf(first.RefreshToken) {
		t.Errorf("family after concurrent refreshes: revoked %s (%q), generation %d", f.RevokedAt, f.RevokeReason, f.Generation)
	}
	if got := e.familyTokens(famID); len(got) != tokens+1 {
		t.Errorf("family has %d access tokens, want %d", len(got), tokens+1)
	}
	for h := range e.familyTokens(famID) {
		if e.revoked(h) {
			t.Errorf("token %s revoked", h.ID())
		}
	}
	e.valid(first.AccessToken, "the new access token")
}
