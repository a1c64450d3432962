package token

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// issueAs signs in with g and returns the new token.
func (e *env) issueAs(g Grant) (string, store.Hash) {
	e.tb.Helper()
	raw, rec, err := e.m.Issue(e.ctx, g)
	if err != nil {
		e.tb.Fatal(err)
	}
	e.hashes = append(e.hashes, rec.Hash)
	return raw, rec.Hash
}

// enrollAs signs in with g and binds the token to id with an
// Authenticate.
func (e *env) enrollAs(g Grant, id string) (string, store.Hash) {
	e.tb.Helper()
	raw, h := e.issueAs(g)
	d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id})
	if !d.Allow || !d.Pending() {
		e.tb.Fatalf("enroll %s: Allow=%v Pending=%v Reason=%s", id, d.Allow, d.Pending(), d.Reason)
	}
	e.commit(d)
	return raw, h
}

// inSession is user's grant in IdP session sid.
func inSession(user, sid string) Grant {
	g := grant(user)
	g.SessionID = sid
	return g
}

// endSession runs EndSession and fails the test on error.
func (e *env) endSession(iss, sub, sid string, all bool) *SessionEnd {
	e.tb.Helper()
	res, err := e.m.EndSession(e.ctx, iss, sub, sid, all)
	if err != nil {
		e.tb.Fatalf("EndSession(%q, %q, %q, %v): %v", iss, sub, sid, all, err)
	}
	return res
}

// state returns the enrollment's state.
func (e *env) state(id string) store.State {
	e.tb.Helper()
	return e.enr(id).State
}

// devices is alice with two devices signed in in two IdP sessions, a
// third device of hers that is blocked, and bob, whose IdP session id
// happens to equal one of alice's.
type devices struct {
	*env
	alice1, alice2, aliceBlocked, bob string // raw tokens
	hAlice1, hAlice2, hBlocked, hBob  store.Hash
}

func newDevices(t *testing.T, bobSession string) *devices {
	e := newEnv(t)
	d := &devices{env: e}
	d.alice1, d.hAlice1 = e.enrollAs(inSession("alice", "sid-1"), "ENR-A1")
	d.alice2, d.hAlice2 = e.enrollAs(inSession("alice", "sid-2"), "ENR-A2")
	d.aliceBlocked, d.hBlocked = e.enrollAs(inSession("alice", "sid-1"), "ENR-A3")
	e.setState("ENR-A3", store.StateBlocked, time.Time{})
	d.bob, d.hBob = e.enrollAs(inSession("bob", bobSession), "ENR-B")
	return d
}

func TestEndSessionBySessionID(t *testing.T) {
	for _, tt := range []struct {
		name string
		sub  string
	}{
		{"sid and sub", "sub-alice"},
		{"sid only", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A sid-only token names a session, not a user: there, bob
			// has a session of his own.
			bobSession := "sid-1"
			if tt.sub == "" {
				bobSession = "sid-bob"
			}
			d := newDevices(t, bobSession)
			res := d.endSession(issuer, tt.sub, "sid-1", false)

			if res.Tokens != 2 || res.Families != 0 || !reflect.DeepEqual(res.Enrollments, []string{"ENR-A1"}) {
				t.Errorf("EndSession = %+v, want 2 tokens (sid-1's two), 0 families, enrollments [ENR-A1]", res)
			}
			if !d.revoked(d.hAlice1) || !d.revoked(d.hBlocked) {
				t.Error("a token of session sid-1 is still valid")
			}
			if d.revoked(d.hAlice2) {
				t.Error("the token of alice's other session sid-2 was revoked")
			}
			if d.revoked(d.hBob) {
				t.Error("bob's token was revoked")
			}
			if got := d.state("ENR-A1"); got != store.StateReauth {
				t.Errorf("ENR-A1 is %s, want reauth", got)
			}
			if got := d.state("ENR-A2"); got != store.StateActive {
				t.Errorf("ENR-A2 (session sid-2) is %s, want active", got)
			}
			if got := d.state("ENR-A3"); got != store.StateBlocked {
				t.Errorf("the blocked ENR-A3 is %s, want blocked (only active enrollments go to reauth)", got)
			}
			// The device of the ended session is challenged, the other
			// one passes.
			if dec := d.authorize(Request{Bearer: d.alice1, MessageType: "TokenUpdate", EnrollmentID: "ENR-A1"}); dec.Allow {
				t.Error("ENR-A1's next request passes after its session ended")
			}
			if dec := d.authorize(Request{Bearer: d.alice2, MessageType: "TokenUpdate", EnrollmentID: "ENR-A2"}); !dec.Allow {
				t.Errorf("ENR-A2's next request refused: %s", dec.Reason)
			}
		})
	}
}

func TestEndSessionSameSessionIDOtherUser(t *testing.T) {
	d := newDevices(t, "sid-1")
	// sid and sub: bob's session of the same id stays.
	d.endSession(issuer, "sub-alice", "sid-1", false)
	if d.revoked(d.hBob) || d.state("ENR-B") != store.StateActive {
		t.Error("ending alice's sid-1 touched bob's session with the same sid")
	}
	// Another issuer's session of the same id and user is another session.
	res := d.endSession("https://other-idp.example.com", "sub-bob", "sid-1", false)
	if res.Tokens != 0 || len(res.Enrollments) != 0 || d.revoked(d.hBob) {
		t.Errorf("a logout from another issuer ended %+v", res)
	}
}

func TestEndSessionAllSessionsOptIn(t *testing.T) {
	d := newDevices(t, "sid-1")
	before := d.snapshot()
	_, err := d.m.EndSession(d.ctx, issuer, "sub-alice", "", false)
	if !errors.Is(err, ErrAllSessionsOff) {
		t.Fatalf("sub-only logout without allSessions: %v, want ErrAllSessionsOff", err)
	}
	d.unchanged(before, "a refused sub-only logout")

	res := d.endSession(issuer, "sub-alice", "", true)
	if res.Tokens != 3 || !reflect.DeepEqual(res.Enrollments, []string{"ENR-A1", "ENR-A2"}) {
		t.Errorf("EndSession = %+v, want 3 tokens and enrollments [ENR-A1 ENR-A2]", res)
	}
	for _, h := range []store.Hash{d.hAlice1, d.hAlice2, d.hBlocked} {
		if !d.revoked(h) {
			t.Errorf("alice's token %s survived a sub-wide logout", h.ID())
		}
	}
	if d.state("ENR-A3") != store.StateBlocked {
		t.Error("the blocked enrollment left blocked")
	}
	if d.revoked(d.hBob) || d.state("ENR-B") != store.StateActive {
		t.Error("a sub-wide logout of alice touched bob")
	}
}

func TestEndSessionUnnamed(t *testing.T) {
	e := newEnv(t)
	for _, c := range [][3]string{{"", "sub-alice", "sid-1"}, {issuer, "", ""}} {
		if _, err := e.m.EndSession(e.ctx, c[0], c[1], c[2], true); !errors.Is(err, ErrSessionUnnamed) {
			t.Errorf("EndSession(%q, %q, %q): %v, want ErrSessionUnnamed", c[0], c[1], c[2], err)
		}
	}
}

func TestEndSessionIdempotent(t *testing.T) {
	d := newDevices(t, "sid-1")
	d.endSession(issuer, "sub-alice", "sid-1", false)
	before := d.snapshot()
	res := d.endSession(issuer, "sub-alice", "sid-1", false)
	if res.Tokens != 0 || res.Families != 0 || len(res.Enrollments) != 0 {
		t.Errorf("second EndSession = %+v, want nothing counted", res)
	}
	d.unchanged(before, "ending an ended session")
}

// TestEndSessionRebound: the enrollment signed in again in a new session
// after the old one; ending the old session leaves it active.
func TestEndSessionRebound(t *testing.T) {
	e := newEnv(t)
	_, old := e.enrollAs(inSession("alice", "sid-old"), "ENR-1")
	raw, cur := e.issueAs(inSession("alice", "sid-new"))
	dec := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: "ENR-1"})
	if !dec.Allow {
		t.Fatalf("re-sign-in refused: %s", dec.Reason)
	}
	e.commit(dec)
	if e.enr("ENR-1").TokenHash != cur {
		t.Fatal("the new token did not bind")
	}
	res := e.endSession(issuer, "sub-alice", "sid-old", false)
	if len(res.Enrollments) != 0 || e.state("ENR-1") != store.StateActive {
		t.Errorf("ending the old session moved the enrollment (now %s; result %+v)", e.state("ENR-1"), res)
	}
	if !e.revoked(old) || e.revoked(cur) {
		t.Errorf("old token revoked %v (want true), current revoked %v (want false)", e.revoked(old), e.revoked(cur))
	}
}

func TestEndSessionSkipsExpired(t *testing.T) {
	e := newEnv(t)
	_, h := e.enrollAs(inSession("alice", "sid-1"), "ENR-1")
	e.clock.Advance(ttl + time.Minute)
	res := e.endSession(issuer, "sub-alice", "sid-1", false)
	if res.Tokens != 0 {
		t.Errorf("an expired token was counted: %+v", res)
	}
	if e.revoked(h) {
		t.Error("an expired token was rewritten")
	}
	if !reflect.DeepEqual(res.Enrollments, []string{"ENR-1"}) || e.state("ENR-1") != store.StateReauth {
		t.Errorf("the enrollment of the ended session: %s (%+v), want reauth", e.state("ENR-1"), res)
	}
}

// TestEndSessionFamilies: OAuth 2 families of the session are revoked
// with every access token issued in them, and the identity provider's
// refresh tokens they kept are dropped; another session's family stays.
func TestEndSessionFamilies(t *testing.T) {
	for _, sub := range []string{"sub-alice", ""} {
		t.Run("sub="+sub, func(t *testing.T) {
			e := newOAuthEnv(t)
			cg := e.codeGrant("alice")
			cg.SessionID = "sid-1"
			p1 := e.exchange(e.code(cg), "")
			// Bound to its enrollment, then refreshed: the refreshed token
			// is the enrollment's current one.
			dec := e.authorize(Request{Bearer: p1.AccessToken, MessageType: "Authenticate", EnrollmentID: "ENR-1"})
			if !dec.Allow {
				t.Fatalf("first request refused: %s", dec.Reason)
			}
			e.commit(dec)
			e.clock.Advance(2 * time.Minute)
			p2 := e.refresh(p1.RefreshToken)
			dec = e.authorize(Request{Bearer: p2.AccessToken, MessageType: "TokenUpdate", EnrollmentID: "ENR-1"})
			if !dec.Allow {
				t.Fatalf("request with the refreshed token refused: %s", dec.Reason)
			}
			e.commit(dec)

			cg2 := e.codeGrant("alice")
			cg2.SessionID = "sid-2"
			other := e.exchange(e.code(cg2), "")

			res := e.endSession(issuer, sub, "sid-1", false)
			// The first access token was revoked when the refreshed one
			// re-bound the enrollment: one live token is left to revoke.
			if res.Families != 1 || res.Tokens != 1 || !reflect.DeepEqual(res.Enrollments, []string{"ENR-1"}) {
				t.Errorf("EndSession = %+v, want 1 family, 1 token, [ENR-1]", res)
			}
			f := e.fam(p1.Family.ID)
			if f.RevokedAt.IsZero() || f.RevokeReason != RevokeReasonBackchannelLogout {
				t.Errorf("family revoked at %v for %q, want now for %q", f.RevokedAt, f.RevokeReason, RevokeReasonBackchannelLogout)
			}
			if f.IdPRefresh != nil || f.IdPKeyID != "" {
				t.Error("the family still holds the identity provider's refresh token")
			}
			e.refused(p1.AccessToken, ReasonRevoked, "the family's first access token")
			e.refused(p2.AccessToken, ReasonRevoked, "the refreshed access token")
			if _, err := e.o.Refresh(e.ctx, p2.RefreshToken, testClient); err == nil {
				t.Error("the ended family's refresh token still refreshes")
			}
			if e.state("ENR-1") != store.StateReauth {
				t.Errorf("ENR-1 is %s, want reauth", e.state("ENR-1"))
			}
			o := e.fam(other.Family.ID)
			if !o.RevokedAt.IsZero() || string(o.IdPRefresh) != "sealed-idp-refresh-alice" {
				t.Error("the family of alice's other session was touched")
			}
			e.valid(other.AccessToken, "the other session's access token")
		})
	}
}

// TestEndSessionRevokedFamilyDropsIdPToken: a family already revoked
// (e.g. for refresh reuse) is not counted again but still loses the
// provider's refresh token.
func TestEndSessionRevokedFamilyDropsIdPToken(t *testing.T) {
	e := newOAuthEnv(t)
	cg := e.codeGrant("alice")
	cg.SessionID = "sid-1"
	p := e.exchange(e.code(cg), "")
	if err := e.o.RevokeFamily(e.ctx, p.Family.ID, "refresh_reuse"); err != nil {
		t.Fatal(err)
	}
	res := e.endSession(issuer, "sub-alice", "sid-1", false)
	if res.Families != 0 || res.Tokens != 0 {
		t.Errorf("EndSession = %+v, want nothing counted", res)
	}
	f := e.fam(p.Family.ID)
	if f.RevokeReason != "refresh_reuse" || f.IdPRefresh != nil || f.IdPKeyID != "" {
		t.Errorf("family: reason %q, IdP refresh token kept %v; want refresh_reuse and none", f.RevokeReason, f.IdPRefresh != nil)
	}
}
