package token

import (
	"bytes"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

func TestAuthorizeRebindSameUser(t *testing.T) {
	const id = "enr-1"
	e := newEnv(t)
	old, hOld := e.enroll("alice", id)
	created := e.enr(id).CreatedAt
	e.clock.Advance(time.Hour)
	g := grant("alice")
	g.ManagedAppleID = "alice.new@appleid.example.com"
	g.Mode = "adde"
	raw, rec, err := e.m.Issue(e.ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	e.hashes = append(e.hashes, rec.Hash)
	e.clock.Advance(time.Minute)

	d := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id})
	if !d.Allow || d.Reason != ReasonOK || !d.Pending() {
		t.Fatalf("Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
	}
	if e.revoked(hOld) {
		t.Fatal("Authorize revoked the old token before Commit")
	}
	e.commit(d)

	got := e.enr(id)
	if got.TokenHash != rec.Hash || got.State != store.StateActive {
		t.Errorf("enrollment %+v, want bound to the new token", got)
	}
	// AssignedManagedAppleID may never change for an enrollment: a later
	// sign-in with another mapping keeps the enrollment's own.
	if got.ManagedAppleID == g.ManagedAppleID || got.ManagedAppleID == "" {
		t.Errorf("ManagedAppleID = %q, want the enrollment's original, not the new token's", got.ManagedAppleID)
	}
	if got.Mode != "byod" {
		t.Errorf("Mode = %q, want the enrollment's original mode", got.Mode)
	}
	if got.Platform != store.PlatformOther || !got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(e.clock.Now()) {
		t.Errorf("enrollment %+v: platform/created/updated wrong", got)
	}
	if tok := e.tok(rec.Hash); tok.EnrollmentID != id || !tok.RevokedAt.IsZero() {
		t.Errorf("new token %+v", tok)
	}
	if tok := e.tok(hOld); !tok.RevokedAt.Equal(e.clock.Now()) || tok.EnrollmentID != id {
		t.Errorf("old token %+v, want revoked now and still bound", tok)
	}
	if d := e.authorize(Request{Bearer: old, MessageType: "TokenUpdate", EnrollmentID: id}); d.Allow || d.Reason != ReasonRevoked {
		t.Errorf("old token: Allow=%v Reason=%q, want revoked", d.Allow, d.Reason)
	}
	if d := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id}); !d.Allow || d.Pending() {
		t.Errorf("new token: Allow=%v Pending=%v Reason=%q", d.Allow, d.Pending(), d.Reason)
	}
}

func TestAuthorizeReauth(t *testing.T) {
	const id = "enr-1"
	e := newEnv(t)
	old, hOld := e.enroll("alice", id)
	early, hEarly := e.issue("alice") // signed in before the operator acted
	e.clock.Advance(time.Hour)
	e.setState(id, store.StateReauth, time.Time{})

	for name, raw := range map[string]string{"enrollment's token": old, "earlier token": early} {
		d := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id})
		if d.Allow || d.Reason != ReasonReauth {
			t.Errorf("%s: Allow=%v Reason=%q, want reauth", name, d.Allow, d.Reason)
		}
	}

	// The challenged device signs in again, at the same instant or later.
	fresh, hFresh := e.issue("alice")
	e.clock.Advance(time.Minute)
	d := e.authorize(Request{Bearer: fresh, MessageType: "TokenUpdate", EnrollmentID: id})
	if !d.Allow || d.Reason != ReasonOK || !d.Pending() {
		t.Fatalf("new token: Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
	}
	if got := e.enr(id).State; got != store.StateReauth {
		t.Fatalf("state %s before Commit", got)
	}
	e.commit(d)

	got := e.enr(id)
	if got.State != store.StateActive || got.TokenHash != hFresh || !got.UpdatedAt.Equal(e.clock.Now()) {
		t.Errorf("after Commit: %+v, want active and bound to the new token", got)
	}
	if !e.revoked(hOld) {
		t.Error("the token the enrollment had is not revoked")
	}
	if e.revoked(hEarly) {
		t.Error("an unbound token of the user was revoked")
	}
	if e.tok(hFresh).EnrollmentID != id {
		t.Error("the new token is not bound")
	}
	if d := e.authorize(Request{Bearer: old, MessageType: "TokenUpdate", EnrollmentID: id}); d.Allow || d.Reason != ReasonRevoked {
		t.Errorf("old token after re-binding: Allow=%v Reason=%q", d.Allow, d.Reason)
	}
	if d := e.authorize(Request{Bearer: fresh, EnrollmentID: id}); !d.Allow || d.Pending() {
		t.Errorf("new token after re-binding: Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
	}
}

func TestAuthorizeBlockedNeverRebinds(t *testing.T) {
	const id = "enr-1"
	e := newEnv(t)
	e.enroll("alice", id)
	e.setState(id, store.StateBlocked, time.Time{})
	e.clock.Advance(time.Hour)
	raw, _ := e.issue("alice")
	before := e.snapshot()
	for _, mt := range []string{"Authenticate", "TokenUpdate", ""} {
		d := e.authorize(Request{Bearer: raw, MessageType: mt, EnrollmentID: id})
		if d.Allow || d.Reason != ReasonBlocked {
			t.Errorf("%q: Allow=%v Reason=%q, want blocked", mt, d.Allow, d.Reason)
		}
	}
	e.unchanged(before, "requests to a blocked enrollment")
}

func TestAuthorizeOffboarding(t *testing.T) {
	const id = "enr-1"
	e := newEnv(t)
	own, hOwn := e.enroll("alice", id)
	other, _ := e.enroll("bob", "enr-2")
	expired, _ := e.issue("alice")
	e.clock.Advance(ttl) // every token so far has expired
	deadline := e.clock.Now().Add(24 * time.Hour)
	e.setState(id, store.StateOffboarding, deadline)
	unknown := mustMint(t, bytes.NewReader(make([]byte, Size)))

	passing := []struct {
		name string
		req  Request
	}{
		{"no bearer", Request{MessageType: "TokenUpdate"}},
		{"no bearer, command traffic", Request{}},
		{"no bearer, user channel", Request{MessageType: "TokenUpdate", UserChannel: true}},
		{"malformed bearer", Request{Bearer: "garbage", MessageType: "TokenUpdate"}},
		{"unknown bearer", Request{Bearer: unknown, MessageType: "TokenUpdate"}},
		{"own expired token", Request{Bearer: own}},
		{"another expired token of the owner", Request{Bearer: expired}},
		{"another user's token", Request{Bearer: other, MessageType: "Authenticate"}},
	}
	check := func(t *testing.T, wantAllow bool) {
		t.Helper()
		before := e.snapshot()
		for _, tt := range passing {
			req := tt.req
			req.EnrollmentID = id
			d := e.authorize(req)
			if d.Allow != wantAllow || wantAllow && (d.Reason != ReasonOffboarding || d.Pending()) {
				t.Errorf("%s: Allow=%v Reason=%q Pending=%v", tt.name, d.Allow, d.Reason, d.Pending())
			}
			e.commit(d)
		}
		e.unchanged(before, "offboarding traffic")
	}
	e.ids[id] = true
	t.Run("before the deadline", func(t *testing.T) { check(t, true) })
	e.clock.Advance(24*time.Hour - time.Nanosecond)
	t.Run("just before the deadline", func(t *testing.T) { check(t, true) })
	e.clock.Advance(time.Nanosecond)
	t.Run("at the deadline", func(t *testing.T) { check(t, false) })
	if e.revoked(hOwn) {
		t.Error("offboarding revoked the enrollment's token")
	}
}

func TestAuthorizeOffboardingWithoutDeadline(t *testing.T) {
	const id = "enr-1"
	e := newEnv(t)
	e.enroll("alice", id)
	e.setState(id, store.StateOffboarding, time.Time{})
	e.clock.Advance(365 * 24 * time.Hour)
	d := e.authorize(Request{MessageType: "TokenUpdate", EnrollmentID: id})
	if !d.Allow || d.Reason != ReasonOffboarding {
		t.Errorf("Allow=%v Reason=%q, want offboarding without end", d.Allow, d.Reason)
	}
}

func TestAuthorizeCheckOut(t *testing.T) {
	const id = "enr-1"
	tests := []struct {
		name string
		// setup returns the bearer the device presents.
		setup func(e *env) string
	}{
		{"valid token", func(e *env) string {
			raw, _ := e.enroll("alice", id)
			return raw
		}},
		{"expired token", func(e *env) string {
			raw, _ := e.enroll("alice", id)
			e.clock.Advance(2 * ttl)
			return raw
		}},
		{"revoked token", func(e *env) string {
			raw, h := e.enroll("alice", id)
			if err := e.m.Revoke(e.ctx, h); err != nil {
				e.tb.Fatal(err)
			}
			return raw
		}},
		{"token replaced by a re-bind", func(e *env) string {
			raw, _ := e.enroll("alice", id)
			e.enroll("alice", id)
			return raw
		}},
		{"reauth, the enrollment's token", func(e *env) string {
			raw, _ := e.enroll("alice", id)
			e.setState(id, store.StateReauth, time.Time{})
			return raw
		}},
		{"blocked, expired token", func(e *env) string {
			raw, _ := e.enroll("alice", id)
			e.setState(id, store.StateBlocked, time.Time{})
			e.clock.Advance(2 * ttl)
			return raw
		}},
		{"offboarding past the deadline", func(e *env) string {
			raw, _ := e.enroll("alice", id)
			e.setState(id, store.StateOffboarding, epoch.Add(time.Hour))
			e.clock.Advance(2 * ttl)
			return raw
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			raw := tt.setup(e)
			_, unrelated := e.enroll("alice", "enr-2")
			e.ids[id] = true
			before := e.snapshot()
			created := e.enr(id).CreatedAt

			d := e.authorize(Request{Bearer: raw, MessageType: "CheckOut", EnrollmentID: id})
			if !d.Allow || d.Reason != ReasonCheckOut || !d.Pending() {
				t.Fatalf("Allow=%v Reason=%q Pending=%v, want the check-out accepted", d.Allow, d.Reason, d.Pending())
			}
			if d.Token == nil || d.Token.Hash != HashOf(raw) {
				t.Errorf("Decision.Token = %+v", d.Token)
			}
			e.unchanged(before, "Authorize of a CheckOut")

			e.clock.Advance(time.Second)
			e.commit(d)
			got := e.enr(id)
			if got.State != store.StateRemoved || !got.Deadline.IsZero() || !got.UpdatedAt.Equal(e.clock.Now()) || !got.CreatedAt.Equal(created) {
				t.Errorf("enrollment after Commit: %+v, want removed now", got)
			}
			if e.revoked(HashOf(raw)) == false {
				t.Error("the presented token is not revoked")
			}
			toks, err := e.store.TokensForEnrollment(e.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(toks) == 0 {
				t.Fatal("no tokens bound to the enrollment")
			}
			for _, tok := range toks {
				if tok.RevokedAt.IsZero() {
					t.Errorf("bound token %s not revoked", tok.ID())
				}
			}
			if e.revoked(unrelated) {
				t.Error("a token of another enrollment was revoked")
			}
		})
	}
}

func TestAuthorizeOffboardingCheckOut(t *testing.T) {
	const id = "enr-1"
	for _, withToken := range []bool{false, true} {
		name := "without bearer"
		if withToken {
			name = "with an unknown bearer"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			_, h := e.enroll("alice", id)
			e.setState(id, store.StateOffboarding, epoch.Add(time.Hour))
			req := Request{MessageType: "CheckOut", EnrollmentID: id}
			if withToken {
				req.Bearer = mustMint(t, bytes.NewReader(make([]byte, Size)))
			}
			d := e.authorize(req)
			if !d.Allow || d.Reason != ReasonOffboarding || !d.Pending() {
				t.Fatalf("Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
			}
			e.commit(d)
			if got := e.enr(id); got.State != store.StateRemoved || !got.Deadline.IsZero() {
				t.Errorf("enrollment %+v, want removed without deadline", got)
			}
			if !e.revoked(h) {
				t.Error("the bound token is not revoked")
			}
		})
	}
}

func TestAuthorizeRemovedReenrolls(t *testing.T) {
	const id = "udid-1"
	tests := []struct{ name, user string }{
		{"same user", "alice"},
		{"another user", "bob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			old, hOld := e.enroll("alice", id)
			e.clock.Advance(time.Hour)
			e.setState(id, store.StateRemoved, time.Time{})
			e.clock.Advance(time.Hour)
			raw, h := e.issue(tt.user)

			d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id})
			if !d.Allow || d.Reason != ReasonOK || !d.Pending() {
				t.Fatalf("Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
			}
			e.commit(d)
			got := e.enr(id)
			want := store.Enrollment{
				ID:             id,
				Issuer:         issuer,
				Subject:        "sub-" + tt.user,
				ManagedAppleID: tt.user + "@appleid.example.com",
				Mode:           "byod",
				Platform:       store.PlatformOther,
				State:          store.StateActive,
				TokenHash:      h,
				CreatedAt:      e.clock.Now(),
				UpdatedAt:      e.clock.Now(),
			}
			if *got != want {
				t.Errorf("re-enrolled\n%+v\nwant\n%+v", got, want)
			}
			if bound := e.boundTo(id); !bound[h] || !bound[hOld] || len(bound) != 2 {
				t.Errorf("TokensForEnrollment = %v, want the old and the new token", bound)
			}
			if d := e.authorize(Request{Bearer: old, MessageType: "TokenUpdate", EnrollmentID: id}); d.Allow || d.Reason != ReasonRevoked {
				t.Errorf("old token: Allow=%v Reason=%q", d.Allow, d.Reason)
			}
			if d := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id}); !d.Allow || d.Pending() {
				t.Errorf("new token: Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
			}
		})
	}
}
