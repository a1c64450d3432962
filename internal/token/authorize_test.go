package token

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// TestAuthorizeRefusals covers every request that must be challenged (or
// rejected), and proves that neither Authorize nor a Commit of its decision
// writes anything.
func TestAuthorizeRefusals(t *testing.T) {
	const a, b = "enr-A", "enr-B"
	tests := []struct {
		name string
		// setup prepares the store and returns the request to authorize.
		setup func(e *env) Request
		want  Reason
	}{
		{"no enrollment id", func(e *env) Request {
			raw, _ := e.issue("alice")
			return Request{Bearer: raw, MessageType: "Authenticate"}
		}, ReasonNoEnrollmentID},
		{"no enrollment id, no bearer", func(e *env) Request {
			return Request{MessageType: "Authenticate", MacModel: true}
		}, ReasonNoEnrollmentID},
		{"no bearer, unknown enrollment", func(e *env) Request {
			return Request{MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonNoBearer},
		{"no bearer, bound enrollment", func(e *env) Request {
			e.enroll("alice", a)
			return Request{MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonNoBearer},
		{"no bearer, bound enrollment, command traffic", func(e *env) Request {
			e.enroll("alice", a)
			return Request{EnrollmentID: a}
		}, ReasonNoBearer},
		{"no bearer, unknown enrollment, Mac model but not Authenticate", func(e *env) Request {
			return Request{MessageType: "TokenUpdate", EnrollmentID: a, MacModel: true}
		}, ReasonNoBearer},
		{"no bearer, unknown enrollment, Mac user channel Authenticate", func(e *env) Request {
			return Request{MessageType: "Authenticate", EnrollmentID: a, MacModel: true, UserChannel: true}
		}, ReasonNoBearer},
		{"malformed bearer", func(e *env) Request {
			e.enroll("alice", a)
			return Request{Bearer: "not-a-token", MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonMalformed},
		{"malformed bearer of the right length", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			return Request{Bearer: raw[:42] + "+", MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonMalformed},
		{"unknown bearer", func(e *env) Request {
			e.enroll("alice", a)
			return Request{Bearer: mustMint(e.tb, bytes.NewReader(make([]byte, Size))), EnrollmentID: a}
		}, ReasonUnknown},
		{"expired, unbound", func(e *env) Request {
			raw, _ := e.issue("alice")
			e.clock.Advance(ttl)
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonExpired},
		{"expired, bound", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			e.clock.Advance(ttl)
			return Request{Bearer: raw, EnrollmentID: a}
		}, ReasonExpired},
		{"revoked, unbound", func(e *env) Request {
			raw, h := e.issue("alice")
			if err := e.m.Revoke(e.ctx, h); err != nil {
				e.tb.Fatal(err)
			}
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonRevoked},
		{"revoked by a re-bind", func(e *env) Request {
			old, _ := e.enroll("alice", a)
			e.enroll("alice", a)
			return Request{Bearer: old, MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonRevoked},
		{"another user's token", func(e *env) Request {
			e.enroll("alice", a)
			raw, _ := e.issue("bob")
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonWrongUser},
		{"same subject, other issuer", func(e *env) Request {
			e.enroll("alice", a)
			g := grant("alice")
			g.Issuer = "https://other-idp.example.com"
			raw, rec, err := e.m.Issue(e.ctx, g)
			if err != nil {
				e.tb.Fatal(err)
			}
			e.hashes = append(e.hashes, rec.Hash)
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonWrongUser},
		{"token bound to another enrollment", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: b}
		}, ReasonWrongEnrollment},
		{"token bound to another enrollment of the same user", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			e.enroll("alice", b)
			return Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: b}
		}, ReasonWrongEnrollment},
		{"reauth, the enrollment's token", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			e.clock.Advance(time.Minute)
			e.setState(a, store.StateReauth, time.Time{})
			return Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonReauth},
		{"reauth, a token issued before the state change", func(e *env) Request {
			e.enroll("alice", a)
			raw, _ := e.issue("alice")
			e.clock.Advance(time.Minute)
			e.setState(a, store.StateReauth, time.Time{})
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonReauth},
		{"reauth, another user's new token", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateReauth, time.Time{})
			e.clock.Advance(time.Minute)
			raw, _ := e.issue("bob")
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonWrongUser},
		{"reauth, no bearer", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateReauth, time.Time{})
			return Request{MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonNoBearer},
		{"blocked, the enrollment's token", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			e.setState(a, store.StateBlocked, time.Time{})
			return Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonBlocked},
		{"blocked, a new token of the owner", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateBlocked, time.Time{})
			e.clock.Advance(time.Minute)
			raw, _ := e.issue("alice")
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonBlocked},
		{"blocked, another user's token", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateBlocked, time.Time{})
			raw, _ := e.issue("bob")
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonWrongUser},
		{"blocked, no bearer", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateBlocked, time.Time{})
			return Request{MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonNoBearer},
		{"blocked Mac, device channel", func(e *env) Request {
			e.enrollMac(a)
			e.setState(a, store.StateBlocked, time.Time{})
			return Request{MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonNoBearer},
		{"offboarding past its deadline, the enrollment's token", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			e.setState(a, store.StateOffboarding, epoch.Add(time.Hour))
			e.clock.Advance(time.Hour)
			return Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonOffboarding},
		{"offboarding past its deadline, no bearer", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateOffboarding, epoch.Add(time.Hour))
			e.clock.Advance(2 * time.Hour)
			return Request{MessageType: "TokenUpdate", EnrollmentID: a}
		}, ReasonNoBearer},
		{"offboarding past its deadline, unknown bearer", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateOffboarding, epoch.Add(time.Hour))
			e.clock.Advance(2 * time.Hour)
			return Request{Bearer: mustMint(e.tb, bytes.NewReader(make([]byte, Size))), EnrollmentID: a}
		}, ReasonUnknown},
		{"Mac user channel without bearer", func(e *env) Request {
			e.enrollMac(a)
			return Request{MessageType: "TokenUpdate", EnrollmentID: a, UserChannel: true}
		}, ReasonNoBearer},
		{"Mac user channel Authenticate without bearer", func(e *env) Request {
			e.enrollMac(a)
			return Request{MessageType: "Authenticate", EnrollmentID: a, UserChannel: true, MacModel: true}
		}, ReasonNoBearer},
		{"iPhone enrollment, bearer-less Mac Authenticate", func(e *env) Request {
			e.enroll("alice", a)
			return Request{MessageType: "Authenticate", EnrollmentID: a, MacModel: true}
		}, ReasonNoBearer},
		{"iPhone enrollment in reauth, bearer-less Mac Authenticate", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateReauth, time.Time{})
			return Request{MessageType: "Authenticate", EnrollmentID: a, MacModel: true}
		}, ReasonNoBearer},
		{"removed iPhone enrollment, no bearer", func(e *env) Request {
			e.enroll("alice", a)
			e.setState(a, store.StateRemoved, time.Time{})
			return Request{MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonNoBearer},
		{"removed enrollment, its old token", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			e.setState(a, store.StateRemoved, time.Time{})
			return Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: a}
		}, ReasonRevoked},
		{"CheckOut with another user's token", func(e *env) Request {
			e.enroll("alice", a)
			raw, _ := e.issue("bob")
			return Request{Bearer: raw, MessageType: "CheckOut", EnrollmentID: a}
		}, ReasonWrongUser},
		{"CheckOut with another user's expired token", func(e *env) Request {
			e.enroll("alice", a)
			raw, _ := e.enroll("bob", b)
			e.clock.Advance(ttl)
			return Request{Bearer: raw, MessageType: "CheckOut", EnrollmentID: a}
		}, ReasonExpired},
		{"CheckOut with the owner's expired token of another enrollment", func(e *env) Request {
			e.enroll("alice", a)
			raw, _ := e.enroll("alice", b)
			e.clock.Advance(ttl)
			return Request{Bearer: raw, MessageType: "CheckOut", EnrollmentID: a}
		}, ReasonExpired},
		{"CheckOut with the owner's valid token of another enrollment", func(e *env) Request {
			e.enroll("alice", a)
			raw, _ := e.enroll("alice", b)
			return Request{Bearer: raw, MessageType: "CheckOut", EnrollmentID: a}
		}, ReasonWrongEnrollment},
		{"CheckOut with the owner's revoked unbound token", func(e *env) Request {
			e.enroll("alice", a)
			raw, h := e.issue("alice")
			if err := e.m.Revoke(e.ctx, h); err != nil {
				e.tb.Fatal(err)
			}
			return Request{Bearer: raw, MessageType: "CheckOut", EnrollmentID: a}
		}, ReasonRevoked},
		{"CheckOut of an unknown enrollment with an expired token", func(e *env) Request {
			raw, _ := e.issue("alice")
			e.clock.Advance(ttl)
			return Request{Bearer: raw, MessageType: "CheckOut", EnrollmentID: a}
		}, ReasonExpired},
		{"CheckOut of a removed enrollment with its old token", func(e *env) Request {
			raw, _ := e.enroll("alice", a)
			e.setState(a, store.StateRemoved, time.Time{})
			return Request{Bearer: raw, MessageType: "CheckOut", EnrollmentID: a}
		}, ReasonRevoked},
		{"CheckOut without bearer", func(e *env) Request {
			e.enroll("alice", a)
			return Request{MessageType: "CheckOut", EnrollmentID: a}
		}, ReasonNoBearer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.ids[a], e.ids[b] = true, true
			req := tt.setup(e)
			before := e.snapshot()

			d := e.authorize(req)
			if d.Allow || d.Reason != tt.want {
				t.Fatalf("Allow=%v Reason=%q, want refused with %q", d.Allow, d.Reason, tt.want)
			}
			if d.Pending() {
				t.Error("a refusal has work to commit")
			}
			if req.Bearer != "" && WellFormed(req.Bearer) && tt.want != ReasonUnknown && tt.want != ReasonNoEnrollmentID {
				if d.Token == nil || d.Token.Hash != HashOf(req.Bearer) {
					t.Errorf("Decision.Token = %+v, want the presented token's record", d.Token)
				}
			}
			if enr, err := e.store.Enrollment(e.ctx, req.EnrollmentID); err == nil && req.EnrollmentID != "" {
				if d.Enrollment == nil || *d.Enrollment != *enr {
					t.Errorf("Decision.Enrollment = %+v, want %+v", d.Enrollment, enr)
				}
			}
			e.unchanged(before, "Authorize")
			e.commit(d)
			e.unchanged(before, "Commit of a refusal")
		})
	}
}

func TestAuthorizeFirstRequestBinds(t *testing.T) {
	const id = "enr-1"
	e := newEnv(t)
	g := grant("alice")
	g.Mode = "adde"
	raw, rec, err := e.m.Issue(e.ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	e.hashes = append(e.hashes, rec.Hash)
	e.ids[id] = true
	e.clock.Advance(5 * time.Minute)
	before := e.snapshot()

	d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id})
	if !d.Allow || d.Reason != ReasonOK || !d.Pending() {
		t.Fatalf("Allow=%v Reason=%q Pending=%v, want an allowed first request with a binding to commit", d.Allow, d.Reason, d.Pending())
	}
	if d.Token == nil || d.Token.Hash != rec.Hash || d.Enrollment != nil {
		t.Errorf("Decision carries Token %+v, Enrollment %+v", d.Token, d.Enrollment)
	}
	e.unchanged(before, "Authorize")

	e.commit(d)
	got := e.enr(id)
	want := store.Enrollment{
		ID:             id,
		Issuer:         issuer,
		Subject:        "sub-alice",
		ManagedAppleID: "alice@appleid.example.com",
		Mode:           "adde",
		Platform:       store.PlatformOther,
		State:          store.StateActive,
		TokenHash:      rec.Hash,
		CreatedAt:      e.clock.Now(),
		UpdatedAt:      e.clock.Now(),
	}
	if *got != want {
		t.Errorf("enrollment after Commit\n%+v\nwant\n%+v", got, want)
	}
	tok := e.tok(rec.Hash)
	if tok.EnrollmentID != id || !tok.RevokedAt.IsZero() || !tok.ExpiresAt.Equal(rec.ExpiresAt) {
		t.Errorf("token after Commit: %+v", tok)
	}
	if bound := e.boundTo(id); len(bound) != 1 || !bound[rec.Hash] {
		t.Errorf("TokensForEnrollment = %v", bound)
	}

	// Every later request passes with nothing to record.
	for _, mt := range []string{"TokenUpdate", "Authenticate", "DeclarativeManagement", ""} {
		before := e.snapshot()
		d := e.authorize(Request{Bearer: raw, MessageType: mt, EnrollmentID: id})
		if !d.Allow || d.Reason != ReasonOK || d.Pending() {
			t.Errorf("%q: Allow=%v Reason=%q Pending=%v, want allowed with nothing to commit", mt, d.Allow, d.Reason, d.Pending())
		}
		if d.Enrollment == nil || *d.Enrollment != *got {
			t.Errorf("%q: Decision.Enrollment = %+v", mt, d.Enrollment)
		}
		e.commit(d)
		e.unchanged(before, "an allowed request of a bound token")
	}
}

func TestAuthorizeFirstRequestPlatform(t *testing.T) {
	const id = "enr-1"
	tests := []struct {
		name  string
		first Request
		want  string
	}{
		{"iPhone Authenticate", Request{MessageType: "Authenticate"}, store.PlatformOther},
		{"Mac Authenticate with a bearer", Request{MessageType: "Authenticate", MacModel: true}, store.PlatformMac},
		{"Mac user channel Authenticate", Request{MessageType: "Authenticate", MacModel: true, UserChannel: true}, store.PlatformMac},
		{"TokenUpdate first", Request{MessageType: "TokenUpdate"}, store.PlatformUnknown},
		{"command traffic first", Request{}, store.PlatformUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			raw, h := e.issue("alice")
			req := tt.first
			req.Bearer, req.EnrollmentID = raw, id
			d := e.authorize(req)
			if !d.Allow || d.Reason != ReasonOK || !d.Pending() {
				t.Fatalf("Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
			}
			e.commit(d)
			got := e.enr(id)
			if got.Platform != tt.want || got.TokenHash != h || got.State != store.StateActive {
				t.Fatalf("enrollment %+v, want platform %q bound to the token", got, tt.want)
			}
			if tt.want != store.PlatformUnknown {
				return
			}
			// A later Authenticate of a bound token still teaches the platform.
			d = e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id})
			if !d.Allow || !d.Pending() {
				t.Fatalf("Authenticate after binding: Allow=%v Pending=%v, want the platform to be recorded", d.Allow, d.Pending())
			}
			e.commit(d)
			if got := e.enr(id); got.Platform != store.PlatformOther || got.TokenHash != h {
				t.Errorf("platform %q, want %q", got.Platform, store.PlatformOther)
			}
		})
	}
}

func TestAuthorizeWithoutCommitRecordsNothing(t *testing.T) {
	e := newEnv(t)
	raw, h := e.issue("alice")
	e.ids["enr-1"] = true
	before := e.snapshot()
	for i := 0; i < 3; i++ {
		d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: "enr-1"})
		if !d.Allow || !d.Pending() {
			t.Fatalf("Allow=%v Pending=%v", d.Allow, d.Pending())
		}
		// The MDM refused the request: the gateway does not call Commit.
	}
	e.unchanged(before, "uncommitted decisions")
	e.noEnr("enr-1")
	if got := e.tok(h); got.EnrollmentID != "" {
		t.Errorf("token bound to %q without a Commit", got.EnrollmentID)
	}
	if bound := e.boundTo("enr-1"); len(bound) != 0 {
		t.Errorf("TokensForEnrollment = %v", bound)
	}

	// The same token can then bind another enrollment.
	d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: "enr-2"})
	if !d.Allow {
		t.Fatalf("Reason=%q", d.Reason)
	}
	e.commit(d)
	if got := e.tok(h).EnrollmentID; got != "enr-2" {
		t.Errorf("token bound to %q, want enr-2", got)
	}
}

// Commit re-checks what Authorize saw: a change in between aborts the
// binding and writes nothing.
func TestCommitStale(t *testing.T) {
	const id = "enr-1"
	tests := []struct {
		name string
		// between runs after Authorize and before Commit; bearer is the
		// token of the authorized request.
		between func(e *env, bearer store.Hash)
		// existing enrolls id for alice before the request.
		existing bool
	}{
		{"blocked in between", func(e *env, _ store.Hash) { e.setState(id, store.StateBlocked, time.Time{}) }, true},
		{"offboarding in between", func(e *env, _ store.Hash) { e.setState(id, store.StateOffboarding, time.Time{}) }, true},
		{"token revoked in between", func(e *env, h store.Hash) {
			if err := e.m.Revoke(e.ctx, h); err != nil {
				e.tb.Fatal(err)
			}
		}, false},
		{"token expired in between", func(e *env, _ store.Hash) { e.clock.Advance(ttl) }, false},
		{"token bound elsewhere in between", func(e *env, h store.Hash) {
			if _, _, err := e.store.Bind(e.ctx, h, "enr-other", func(*store.Token, *store.Enrollment) (*store.Enrollment, error) { return nil, nil }); err != nil {
				e.tb.Fatal(err)
			}
		}, false},
		{"another user enrolled in between", func(e *env, _ store.Hash) { e.enroll("bob", id) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.ids[id], e.ids["enr-other"] = true, true
			if tt.existing {
				e.enroll("alice", id)
			}
			raw, h := e.issue("alice")
			d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id})
			if !d.Allow || !d.Pending() {
				t.Fatalf("Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
			}
			tt.between(e, h)
			before := e.snapshot()
			err := d.Commit(e.ctx)
			if !errors.Is(err, errStale) {
				t.Fatalf("Commit = %v, want a stale-binding error", err)
			}
			e.unchanged(before, "a stale Commit")
		})
	}
}

func TestDecisionNil(t *testing.T) {
	var d *Decision
	if d.Pending() {
		t.Error("nil decision is pending")
	}
	if err := d.Commit(t.Context()); err != nil {
		t.Errorf("Commit on nil = %v", err)
	}
}

func BenchmarkAuthorize(b *testing.B) {
	e := newEnv(b)
	raw, _ := e.enroll("alice", "enr-1")
	req := Request{Bearer: raw, MessageType: "TokenUpdate", EnrollmentID: "enr-1"}
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.m.Authorize(e.ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if !d.Allow || d.Pending() {
			b.Fatalf("Allow=%v Reason=%q Pending=%v", d.Allow, d.Reason, d.Pending())
		}
	}
}
