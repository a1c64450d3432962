package token

import (
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

func TestAuthorizeMac(t *testing.T) {
	const id = "enr-mac"
	e := newEnv(t)
	e.ids[id] = true
	before := e.snapshot()

	// First device-channel Authenticate: no bearer on macOS.
	d := e.authorize(Request{MessageType: "Authenticate", EnrollmentID: id, MacModel: true})
	if !d.Allow || d.Reason != ReasonMacDevice || !d.Pending() || d.Token != nil {
		t.Fatalf("Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
	}
	e.unchanged(before, "Authorize of a Mac Authenticate")
	e.clock.Advance(time.Second)
	e.commit(d)
	got := e.enr(id)
	want := store.Enrollment{ID: id, Platform: store.PlatformMac, State: store.StateActive, CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}
	if *got != want {
		t.Fatalf("enrollment after Commit\n%+v\nwant\n%+v", got, want)
	}

	// Later device-channel requests pass without a bearer.
	for _, mt := range []string{"TokenUpdate", "", "Authenticate", "DeclarativeManagement"} {
		before := e.snapshot()
		d := e.authorize(Request{MessageType: mt, EnrollmentID: id})
		if !d.Allow || d.Reason != ReasonMacDevice || d.Pending() {
			t.Errorf("device channel %q: Allow=%v Reason=%q Pending=%v", mt, d.Allow, d.Reason, d.Pending())
		}
		e.commit(d)
		e.unchanged(before, "a Mac device-channel request")
	}

	// The user channel needs the bearer, and binds it.
	if d := e.authorize(Request{MessageType: "TokenUpdate", EnrollmentID: id, UserChannel: true}); d.Allow || d.Reason != ReasonNoBearer {
		t.Errorf("user channel without bearer: Allow=%v Reason=%q", d.Allow, d.Reason)
	}
	raw, h := e.issue("alice")
	d = e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id, UserChannel: true})
	if !d.Allow || d.Reason != ReasonOK || !d.Pending() {
		t.Fatalf("user channel with bearer: Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
	}
	e.commit(d)
	got = e.enr(id)
	if got.Platform != store.PlatformMac || got.Subject != "sub-alice" || got.TokenHash != h || got.State != store.StateActive {
		t.Errorf("after the user channel bound: %+v", got)
	}
	if d := e.authorize(Request{MessageType: "TokenUpdate", EnrollmentID: id}); !d.Allow || d.Reason != ReasonMacDevice {
		t.Errorf("device channel after binding: Allow=%v Reason=%q", d.Allow, d.Reason)
	}
	if d := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id, UserChannel: true}); !d.Allow || d.Reason != ReasonOK || d.Pending() {
		t.Errorf("user channel after binding: Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
	}

	// In reauth the device channel still passes (it cannot sign in); the
	// user channel is challenged.
	e.setState(id, store.StateReauth, time.Time{})
	if d := e.authorize(Request{MessageType: "TokenUpdate", EnrollmentID: id}); !d.Allow || d.Reason != ReasonMacDevice {
		t.Errorf("device channel in reauth: Allow=%v Reason=%q", d.Allow, d.Reason)
	}
	if d := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id, UserChannel: true}); d.Allow || d.Reason != ReasonReauth {
		t.Errorf("user channel in reauth: Allow=%v Reason=%q", d.Allow, d.Reason)
	}
}

func TestAuthorizeMacCheckOut(t *testing.T) {
	const id = "enr-mac"
	e := newEnv(t)
	e.enrollMac(id)
	// Bind a user-channel token.
	raw, h := e.issue("alice")
	d := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id, UserChannel: true})
	if !d.Allow || !d.Pending() {
		t.Fatalf("user channel: Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
	}
	e.commit(d)
	if e.tok(h).EnrollmentID != id {
		t.Fatal("fixture: user-channel token not bound")
	}

	d = e.authorize(Request{MessageType: "CheckOut", EnrollmentID: id})
	if !d.Allow || d.Reason != ReasonCheckOut || !d.Pending() {
		t.Fatalf("device-channel CheckOut: Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
	}
	e.commit(d)
	if got := e.enr(id); got.State != store.StateRemoved || got.Platform != store.PlatformMac {
		t.Errorf("after CheckOut: %+v", got)
	}
	if !e.revoked(h) {
		t.Error("the user-channel token is not revoked")
	}

	// The same device (UDID) enrolls again: its first Authenticate passes.
	e.clock.Advance(time.Hour)
	e.enrollMac(id)
	got := e.enr(id)
	want := store.Enrollment{ID: id, Platform: store.PlatformMac, State: store.StateActive, CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}
	if *got != want {
		t.Errorf("re-enrolled Mac\n%+v\nwant\n%+v", got, want)
	}
	if d := e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id, UserChannel: true}); d.Allow || d.Reason != ReasonRevoked {
		t.Errorf("old user-channel token after re-enrolment: Allow=%v Reason=%q", d.Allow, d.Reason)
	}
}

// A Mac's device channel never carries the bearer, so its CheckOut must be
// accepted in every state in which a token-bearing CheckOut of the
// enrollment's own token is (see TestAuthorizeCheckOut): CheckOut cannot
// handle a 401.
func TestAuthorizeMacCheckOutInEveryState(t *testing.T) {
	const id = "enr-mac"
	tests := []struct {
		name  string
		setup func(e *env)
	}{
		{"active", func(e *env) {}},
		{"reauth", func(e *env) { e.setState(id, store.StateReauth, time.Time{}) }},
		{"offboarding", func(e *env) { e.setState(id, store.StateOffboarding, epoch.Add(time.Hour)) }},
		{"blocked", func(e *env) { e.setState(id, store.StateBlocked, time.Time{}) }},
		{"offboarding past the deadline", func(e *env) {
			e.setState(id, store.StateOffboarding, epoch.Add(time.Hour))
			e.clock.Advance(2 * time.Hour)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.enrollMac(id)
			raw, h := e.issue("alice")
			e.commit(e.authorize(Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: id, UserChannel: true}))
			tt.setup(e)

			d := e.authorize(Request{MessageType: "CheckOut", EnrollmentID: id})
			if !d.Allow || !d.Pending() {
				t.Fatalf("device-channel CheckOut: Allow=%v Reason=%q Pending=%v, want accepted and recorded", d.Allow, d.Reason, d.Pending())
			}
			e.commit(d)
			if got := e.enr(id).State; got != store.StateRemoved {
				t.Errorf("state %s after CheckOut, want removed", got)
			}
			if !e.revoked(h) {
				t.Error("the user-channel token is not revoked")
			}
		})
	}
}

// An enrollment first seen as an iPhone never becomes a Mac, whatever later
// requests claim.
func TestAuthorizeIPhoneNeverBecomesMac(t *testing.T) {
	const id = "udid-1"
	t.Run("bound", func(t *testing.T) {
		e := newEnv(t)
		raw, _ := e.enroll("alice", id)
		d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id, MacModel: true})
		if !d.Allow || d.Pending() {
			t.Errorf("Authenticate with bearer: Allow=%v Pending=%v", d.Allow, d.Pending())
		}
		e.commit(d)
		if d := e.authorize(Request{MessageType: "Authenticate", EnrollmentID: id, MacModel: true}); d.Allow || d.Reason != ReasonNoBearer {
			t.Errorf("bearer-less Mac Authenticate: Allow=%v Reason=%q", d.Allow, d.Reason)
		}
		if got := e.enr(id).Platform; got != store.PlatformOther {
			t.Errorf("platform %q", got)
		}
	})
	t.Run("removed", func(t *testing.T) {
		e := newEnv(t)
		e.enroll("alice", id)
		e.setState(id, store.StateRemoved, time.Time{})
		d := e.authorize(Request{MessageType: "Authenticate", EnrollmentID: id, MacModel: true})
		if d.Allow {
			// Show what follows once the MDM accepts it and it is committed.
			e.commit(d)
			later := e.authorize(Request{MessageType: "TokenUpdate", EnrollmentID: id})
			t.Errorf("bearer-less Mac Authenticate on a removed iPhone's UDID allowed (%s); after Commit "+
				"the platform is %q and a bearer-less TokenUpdate is allowed=%v",
				d.Reason, e.enr(id).Platform, later.Allow)
		}
		if d.Reason != ReasonNoBearer {
			t.Errorf("Reason=%q, want %q", d.Reason, ReasonNoBearer)
		}
	})
	t.Run("re-enrolled with a token", func(t *testing.T) {
		e := newEnv(t)
		e.enroll("alice", id)
		e.setState(id, store.StateRemoved, time.Time{})
		raw, _ := e.issue("alice")
		d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id, MacModel: true})
		if !d.Allow || !d.Pending() {
			t.Fatalf("Allow=%v Reason=%q", d.Allow, d.Reason)
		}
		e.commit(d)
		if got := e.enr(id).Platform; got != store.PlatformOther {
			t.Errorf("platform %q after re-enrolment, want it kept", got)
		}
	})
}
