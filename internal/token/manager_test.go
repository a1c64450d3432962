package token

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

func TestIssue(t *testing.T) {
	e := newEnv(t)
	g := grant("alice")
	g.Mode = "adde"
	g.ModelFamily = "Mac"
	raw, rec, err := e.m.Issue(e.ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if !WellFormed(raw) || rec.Hash != HashOf(raw) {
		t.Fatal("Issue returned a token that does not match its record")
	}
	want := &store.Token{
		Hash:           HashOf(raw),
		Issuer:         g.Issuer,
		Subject:        g.Subject,
		SessionID:      g.SessionID,
		UserIdentifier: g.UserIdentifier,
		ManagedAppleID: g.ManagedAppleID,
		Mode:           "adde",
		ModelFamily:    "Mac",
		IssuedAt:       epoch,
		ExpiresAt:      epoch.Add(ttl),
	}
	if *rec != *want {
		t.Errorf("Issue returned\n%+v\nwant\n%+v", rec, want)
	}
	if got := e.tok(rec.Hash); *got != *want {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
}

func TestIssueJitter(t *testing.T) {
	e := newEnv(t)
	e.m.Lifetime = Lifetime{TTL: 8 * time.Hour, Jitter: 0.25, Floor: time.Hour}
	// 32 bytes for the token, then 8 bytes for the jitter draw (u = -0.5).
	seed := append(bytes.Repeat([]byte{7}, Size), 0x40, 0, 0, 0, 0, 0, 0, 0)
	e.m.Rand = bytes.NewReader(seed)
	raw, rec, err := e.m.Issue(e.ctx, grant("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if want, _, _ := Mint(bytes.NewReader(seed)); raw != want {
		t.Error("Issue did not mint from Manager.Rand")
	}
	if got := e.tok(rec.Hash).ExpiresAt; !got.Equal(epoch.Add(7 * time.Hour)) {
		t.Errorf("ExpiresAt = %s, want issue time + 7h", got)
	}
}

func TestIssueRefused(t *testing.T) {
	seed := bytes.Repeat([]byte{9}, Size)
	h := HashOf(mustMint(t, bytes.NewReader(seed)))
	tests := []struct {
		name  string
		grant func(*Grant)
	}{
		{"no issuer", func(g *Grant) { g.Issuer = "" }},
		{"no subject", func(g *Grant) { g.Subject = "" }},
		{"no managed apple id", func(g *Grant) { g.ManagedAppleID = "" }},
		{"no mode", func(g *Grant) { g.Mode = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.m.Rand = bytes.NewReader(seed)
			g := grant("alice")
			tt.grant(&g)
			raw, rec, err := e.m.Issue(e.ctx, g)
			if err == nil || raw != "" || rec != nil {
				t.Fatalf("Issue = %v, %v; want an error and no token", rec, err)
			}
			if _, err := e.store.Token(e.ctx, h); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a token was stored: %v", err)
			}
		})
	}

	t.Run("no randomness", func(t *testing.T) {
		e := newEnv(t)
		e.m.Rand = failingReader{}
		if raw, rec, err := e.m.Issue(e.ctx, grant("alice")); err == nil || raw != "" || rec != nil {
			t.Fatalf("Issue = %v, %v; want an error", rec, err)
		}
	})

	t.Run("duplicate", func(t *testing.T) {
		e := newEnv(t)
		e.m.Rand = bytes.NewReader(append(seed, seed...))
		if _, _, err := e.m.Issue(e.ctx, grant("alice")); err != nil {
			t.Fatal(err)
		}
		_, _, err := e.m.Issue(e.ctx, grant("bob"))
		if !errors.Is(err, store.ErrExists) {
			t.Fatalf("second Issue with the same randomness = %v, want ErrExists", err)
		}
		if got := e.tok(h); got.Subject != "sub-alice" {
			t.Errorf("the first token was overwritten by %s", got.Subject)
		}
	})
}

func mustMint(t testing.TB, r io.Reader) string {
	t.Helper()
	raw, _, err := Mint(r)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestLookup(t *testing.T) {
	e := newEnv(t)
	expired, hExpired := e.issue("bob")
	revoked, hRevoked := e.issue("carol")
	if err := e.m.Revoke(e.ctx, hRevoked); err != nil {
		t.Fatal(err)
	}
	// Move the clock to the first token's expiry, then issue a fresh one.
	e.clock.Advance(ttl - time.Nanosecond)
	almost, hAlmost := e.issue("alice")
	e.clock.Advance(time.Nanosecond)
	fresh, hFresh := e.issue("alice")

	unknown := mustMint(t, bytes.NewReader(bytes.Repeat([]byte{1}, Size)))
	tests := []struct {
		name   string
		raw    string
		reason Reason
		record *store.Hash // the record Lookup returns, if any
	}{
		{"valid", fresh, "", &hFresh},
		{"malformed", "not a token", ReasonMalformed, nil},
		{"empty", "", ReasonMalformed, nil},
		{"unknown", unknown, ReasonUnknown, nil},
		{"one nanosecond old", almost, "", &hAlmost},
		{"expired at the instant", expired, ReasonExpired, &hExpired},
		{"revoked", revoked, ReasonRevoked, &hRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := e.m.Lookup(e.ctx, tt.raw)
			if got := ReasonOf(err); got != tt.reason {
				t.Fatalf("Lookup reason = %q (err %v), want %q", got, err, tt.reason)
			}
			if tt.reason == "" && err != nil {
				t.Fatalf("Lookup = %v", err)
			}
			if tt.reason != "" {
				var rej *Rejection
				if !errors.As(err, &rej) || rej.Error() != "token refused: "+string(tt.reason) {
					t.Errorf("error = %v, want a *Rejection for %s", err, tt.reason)
				}
			}
			switch {
			case tt.record == nil && rec != nil:
				t.Errorf("Lookup returned a record for a %s token", tt.reason)
			case tt.record != nil && (rec == nil || rec.Hash != *tt.record):
				t.Errorf("Lookup returned %+v, want the record of the token", rec)
			}
		})
	}
}

func TestReasonOf(t *testing.T) {
	if got := ReasonOf(fmt.Errorf("wrapped: %w", &Rejection{ReasonBlocked})); got != ReasonBlocked {
		t.Errorf("ReasonOf(wrapped) = %q", got)
	}
	if got := ReasonOf(errors.New("other")); got != "" {
		t.Errorf("ReasonOf(other) = %q", got)
	}
	if got := ReasonOf(nil); got != "" {
		t.Errorf("ReasonOf(nil) = %q", got)
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	_, h := e.issue("alice")
	e.clock.Advance(time.Minute)
	if err := e.m.Revoke(e.ctx, h); err != nil {
		t.Fatal(err)
	}
	first := e.tok(h).RevokedAt
	if !first.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("RevokedAt = %s, want now", first)
	}
	e.clock.Advance(time.Minute)
	if err := e.m.Revoke(e.ctx, h); err != nil {
		t.Fatalf("revoking again: %v", err)
	}
	if got := e.tok(h).RevokedAt; !got.Equal(first) {
		t.Errorf("revoking again moved RevokedAt to %s", got)
	}
	if err := e.m.Revoke(e.ctx, HashOf("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Revoke(unknown) = %v, want ErrNotFound", err)
	}
}

// allowedTransitions is the state machine, written out independently of the
// implementation's table.
var allowedTransitions = map[store.State]map[store.State]bool{
	store.StateActive:      {store.StateReauth: true, store.StateBlocked: true, store.StateOffboarding: true, store.StateRemoved: true},
	store.StateReauth:      {store.StateBlocked: true, store.StateOffboarding: true, store.StateRemoved: true},
	store.StateBlocked:     {store.StateReauth: true, store.StateOffboarding: true, store.StateRemoved: true},
	store.StateOffboarding: {store.StateBlocked: true, store.StateRemoved: true},
	store.StateRemoved:     {},
}

var allStates = []store.State{store.StateActive, store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved}

func TestCanTransition(t *testing.T) {
	for _, from := range allStates {
		for _, to := range allStates {
			if got, want := CanTransition(from, to), allowedTransitions[from][to]; got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
		if CanTransition(from, "bogus") || CanTransition("bogus", from) {
			t.Errorf("an unknown state is reachable from or to %s", from)
		}
	}
}

// pathTo lists the operator steps that bring a fresh active enrollment to s.
var pathTo = map[store.State][]store.State{
	store.StateActive:      nil,
	store.StateReauth:      {store.StateReauth},
	store.StateBlocked:     {store.StateBlocked},
	store.StateOffboarding: {store.StateOffboarding},
	store.StateRemoved:     {store.StateRemoved},
}

func TestSetState(t *testing.T) {
	const id = "enr-1"
	for _, from := range allStates {
		for _, to := range allStates {
			t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
				e := newEnv(t)
				_, h := e.enroll("alice", id)
				for _, s := range pathTo[from] {
					e.setState(id, s, epoch.Add(48*time.Hour))
				}
				e.clock.Advance(time.Minute)
				before := e.enr(id)
				deadline := epoch.Add(72 * time.Hour)

				got, err := e.m.SetState(e.ctx, id, to, deadline)
				if !allowedTransitions[from][to] {
					if !errors.Is(err, ErrTransition) || got != nil {
						t.Fatalf("SetState = %+v, %v; want ErrTransition", got, err)
					}
					if after := e.enr(id); *after != *before {
						t.Errorf("a refused transition changed the enrollment:\n%+v\n%+v", before, after)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				stored := e.enr(id)
				if *got != *stored {
					t.Errorf("SetState returned %+v, stored %+v", got, stored)
				}
				if stored.State != to || !stored.UpdatedAt.Equal(e.clock.Now()) {
					t.Errorf("state %s updated %s, want %s at now", stored.State, stored.UpdatedAt, to)
				}
				wantDeadline := time.Time{}
				if to == store.StateOffboarding {
					wantDeadline = deadline
				}
				if !stored.Deadline.Equal(wantDeadline) {
					t.Errorf("Deadline = %s, want %s", stored.Deadline, wantDeadline)
				}
				if stored.Issuer != before.Issuer || stored.Subject != before.Subject ||
					stored.TokenHash != before.TokenHash || stored.Platform != before.Platform ||
					!stored.CreatedAt.Equal(before.CreatedAt) {
					t.Errorf("SetState changed more than the state:\n%+v\n%+v", before, stored)
				}
				if got, want := e.revoked(h), to == store.StateRemoved; got != want {
					t.Errorf("bound token revoked = %v, want %v", got, want)
				}
			})
		}
	}
}

func TestSetStateRemovedRevokesEveryBoundToken(t *testing.T) {
	e := newEnv(t)
	_, h1 := e.enroll("alice", "enr-1")
	_, h2 := e.enroll("alice", "enr-1") // re-binds, revokes h1
	_, other := e.enroll("alice", "enr-2")
	_, unbound := e.issue("alice")
	if !e.revoked(h1) || e.revoked(h2) {
		t.Fatal("fixture: re-binding should have revoked only the first token")
	}
	e.clock.Advance(time.Hour)
	e.setState("enr-1", store.StateRemoved, time.Time{})
	if got := e.tok(h2).RevokedAt; !got.Equal(e.clock.Now()) {
		t.Errorf("current token RevokedAt = %s, want now", got)
	}
	if got := e.tok(h1).RevokedAt; !got.Equal(epoch) {
		t.Errorf("already revoked token got RevokedAt %s, want it kept at %s", got, epoch)
	}
	if e.revoked(other) || e.revoked(unbound) {
		t.Error("removing one enrollment revoked tokens of others")
	}
}

func TestSetStateOffboardingDeadline(t *testing.T) {
	e := newEnv(t)
	e.enroll("alice", "enr-1")
	deadline := epoch.Add(7 * 24 * time.Hour)
	e.setState("enr-1", store.StateOffboarding, deadline)
	if got := e.enr("enr-1").Deadline; !got.Equal(deadline) {
		t.Fatalf("Deadline = %s", got)
	}
	e.setState("enr-1", store.StateBlocked, deadline)
	if got := e.enr("enr-1").Deadline; !got.IsZero() {
		t.Errorf("leaving offboarding kept the deadline %s", got)
	}
}

func TestSetStateUnknown(t *testing.T) {
	e := newEnv(t)
	for _, to := range allStates {
		got, err := e.m.SetState(e.ctx, "nope", to, time.Time{})
		if !errors.Is(err, store.ErrNotFound) || got != nil {
			t.Errorf("SetState(unknown, %s) = %+v, %v; want ErrNotFound", to, got, err)
		}
	}
	e.noEnr("nope")
}
