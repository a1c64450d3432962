package token

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
)

// epoch starts every test clock, far from the wall clock so that any
// decision made on time.Now instead of the injected clock shows.
var epoch = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// ttl is the token lifetime of the test manager (no jitter).
const ttl = 24 * time.Hour

const issuer = "https://idp.example.com"

// env is a Manager on a fresh Badger store with a controllable clock.
type env struct {
	tb    testing.TB
	ctx   context.Context
	clock *storetest.Clock
	store *badger.Store
	m     *Manager

	// hashes and ids the test touched, for snapshots.
	hashes []store.Hash
	ids    map[string]bool
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	clock := storetest.NewClock(epoch)
	s, err := badger.Open(badger.Options{Dir: tb.TempDir(), Now: clock.Now, GCInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return &env{
		tb:    tb,
		ctx:   context.Background(),
		clock: clock,
		store: s,
		m: &Manager{
			Store:    s,
			Lifetime: Lifetime{TTL: ttl, Floor: time.Hour},
			Now:      clock.Now,
		},
		ids: map[string]bool{},
	}
}

// grant returns the grant of a sign-in by user.
func grant(user string) Grant {
	return Grant{
		Issuer:         issuer,
		Subject:        "sub-" + user,
		SessionID:      "sid-" + user,
		UserIdentifier: user + "@example.com",
		ManagedAppleID: user + "@appleid.example.com",
		Mode:           "byod",
		ModelFamily:    "iPhone",
	}
}

// issue signs user in and returns the new token.
func (e *env) issue(user string) (string, store.Hash) {
	e.tb.Helper()
	raw, rec, err := e.m.Issue(e.ctx, grant(user))
	if err != nil {
		e.tb.Fatal(err)
	}
	e.hashes = append(e.hashes, rec.Hash)
	return raw, rec.Hash
}

// authorize runs Authorize and fails the test on a store error.
func (e *env) authorize(req Request) *Decision {
	e.tb.Helper()
	if req.EnrollmentID != "" {
		e.ids[req.EnrollmentID] = true
	}
	d, err := e.m.Authorize(e.ctx, req)
	if err != nil {
		e.tb.Fatalf("Authorize: %v", err)
	}
	if d == nil {
		e.tb.Fatal("Authorize returned a nil decision")
	}
	return d
}

// commit runs Commit and fails the test on error.
func (e *env) commit(d *Decision) {
	e.tb.Helper()
	if err := d.Commit(e.ctx); err != nil {
		e.tb.Fatalf("Commit: %v", err)
	}
}

// enroll signs user in and lets an iPhone's first Authenticate on id bind the
// token, as the gateway does after the MDM accepted it.
func (e *env) enroll(user, id string) (string, store.Hash) {
	e.tb.Helper()
	raw, h := e.issue(user)
	d := e.authorize(Request{Bearer: raw, MessageType: "Authenticate", EnrollmentID: id})
	if !d.Allow || !d.Pending() {
		e.tb.Fatalf("enroll %s: Allow=%v Pending=%v Reason=%s", id, d.Allow, d.Pending(), d.Reason)
	}
	e.commit(d)
	return raw, h
}

// enrollMac lets a Mac's bearer-less device-channel Authenticate create id.
func (e *env) enrollMac(id string) {
	e.tb.Helper()
	d := e.authorize(Request{MessageType: "Authenticate", EnrollmentID: id, MacModel: true})
	if !d.Allow || d.Reason != ReasonMacDevice || !d.Pending() {
		e.tb.Fatalf("enrollMac %s: Allow=%v Pending=%v Reason=%s", id, d.Allow, d.Pending(), d.Reason)
	}
	e.commit(d)
}

// tok returns the stored token.
func (e *env) tok(h store.Hash) *store.Token {
	e.tb.Helper()
	t, err := e.store.Token(e.ctx, h)
	if err != nil {
		e.tb.Fatalf("token %s: %v", h.ID(), err)
	}
	return t
}

// enr returns the stored enrollment.
func (e *env) enr(id string) *store.Enrollment {
	e.tb.Helper()
	r, err := e.store.Enrollment(e.ctx, id)
	if err != nil {
		e.tb.Fatalf("enrollment %s: %v", id, err)
	}
	return r
}

// noEnr fails unless id has no enrollment record.
func (e *env) noEnr(id string) {
	e.tb.Helper()
	if r, err := e.store.Enrollment(e.ctx, id); !errors.Is(err, store.ErrNotFound) {
		e.tb.Fatalf("enrollment %s: got %+v, %v; want ErrNotFound", id, r, err)
	}
}

// setState moves id to a state and fails the test on error.
func (e *env) setState(id string, to store.State, deadline time.Time) {
	e.tb.Helper()
	if _, err := e.m.SetState(e.ctx, id, to, deadline); err != nil {
		e.tb.Fatalf("SetState(%s, %s): %v", id, to, err)
	}
}

// revoked reports whether the stored token is revoked.
func (e *env) revoked(h store.Hash) bool {
	e.tb.Helper()
	return !e.tok(h).RevokedAt.IsZero()
}

// snapshot is everything the store holds about the tokens and enrollments a
// test touched.
type snapshot struct {
	Tokens      map[store.Hash]*store.Token
	Enrollments map[string]*store.Enrollment
	Bound       map[string][]store.Hash
}

func (e *env) snapshot() snapshot {
	e.tb.Helper()
	s := snapshot{Tokens: map[store.Hash]*store.Token{}, Enrollments: map[string]*store.Enrollment{}, Bound: map[string][]store.Hash{}}
	for _, h := range e.hashes {
		t, err := e.store.Token(e.ctx, h)
		if err != nil {
			e.tb.Fatal(err)
		}
		s.Tokens[h] = t
	}
	for id := range e.ids {
		r, err := e.store.Enrollment(e.ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			s.Enrollments[id] = nil
		case err != nil:
			e.tb.Fatal(err)
		default:
			s.Enrollments[id] = r
		}
		toks, err := e.store.TokensForEnrollment(e.ctx, id)
		if err != nil {
			e.tb.Fatal(err)
		}
		for _, t := range toks {
			s.Bound[id] = append(s.Bound[id], t.Hash)
		}
	}
	return s
}

// unchanged fails if the store differs from before.
func (e *env) unchanged(before snapshot, what string) {
	e.tb.Helper()
	if after := e.snapshot(); !reflect.DeepEqual(before, after) {
		e.tb.Errorf("%s changed the store:\nbefore %+v\nafter  %+v", what, before, after)
	}
}

// boundTo lists the hashes of the tokens bound to id.
func (e *env) boundTo(id string) map[store.Hash]bool {
	e.tb.Helper()
	toks, err := e.store.TokensForEnrollment(e.ctx, id)
	if err != nil {
		e.tb.Fatal(err)
	}
	out := map[store.Hash]bool{}
	for _, t := range toks {
		out[t.Hash] = true
	}
	return out
}
