package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Request is what the gateway knows about one protected MDM request.
type Request struct {
	// Bearer is the presented access token; "" when there is none.
	Bearer string
	// MessageType is the check-in message type; "" for command traffic.
	MessageType string
	// EnrollmentID is the EnrollmentID, else the UDID, of the body.
	EnrollmentID string
	// UserChannel is set when the body names a user (UserID or
	// EnrollmentUserID): the macOS user channel.
	UserChannel bool
	// MacModel is set when the body's Model or ProductName names a Mac.
	MacModel bool
}

// Decision is the outcome of Authorize.
type Decision struct {
	// Allow lets the request through to the MDM.
	Allow bool
	// Reason explains the decision, for logs and metrics.
	Reason Reason
	// Token is the presented token's record, when known.
	Token *store.Token
	// Enrollment is the enrollment the request names, when known.
	Enrollment *store.Enrollment

	commit func(context.Context) error
}

// Commit records what the request changes (binding, the platform, a
// check-out). Call it only after the MDM accepted the request (2xx): the
// gateway does not verify the device's signature, the MDM does.
func (d *Decision) Commit(ctx context.Context) error {
	if d == nil || d.commit == nil {
		return nil
	}
	return d.commit(ctx)
}

// Pending reports whether Commit has work to do.
func (d *Decision) Pending() bool { return d != nil && d.commit != nil }

func deny(r Reason, t *store.Token, e *store.Enrollment) *Decision {
	return &Decision{Reason: r, Token: t, Enrollment: e}
}

// Authorize applies the protected-path rules to one request. A non-nil
// error is a store failure (the caller answers 503, never a challenge).
func (m *Manager) Authorize(ctx context.Context, req Request) (*Decision, error) {
	if req.EnrollmentID == "" {
		return deny(ReasonNoEnrollmentID, nil, nil), nil
	}
	now := m.now()
	// One read for the enrollment and the token: the bearer is hashed
	// first when it has the shape of one of ours.
	var h store.Hash
	if req.Bearer != "" && WellFormed(req.Bearer) {
		h = HashOf(req.Bearer)
	}
	enr, tok, err := m.Store.Lookup(ctx, req.EnrollmentID, h)
	if err != nil {
		return nil, err
	}
	offboarding := enr != nil && enr.State == store.StateOffboarding &&
		(enr.Deadline.IsZero() || now.Before(enr.Deadline))

	if req.Bearer == "" {
		switch {
		case offboarding:
			return m.allowOffboarding(req, nil, enr), nil
		case req.UserChannel:
			return deny(ReasonNoBearer, nil, enr), nil
		case enr != nil && enr.State != store.StateRemoved:
			// A Mac's device channel never carries the bearer. CheckOut
			// cannot handle a 401: accept it in every state.
			if enr.Platform == store.PlatformMac && req.MessageType == "CheckOut" {
				return &Decision{Allow: true, Reason: ReasonCheckOut, Enrollment: enr,
					commit: m.checkOut(req.EnrollmentID, nil)}, nil
			}
			if enr.Platform == store.PlatformMac && (enr.State == store.StateActive || enr.State == store.StateReauth) {
				d := &Decision{Allow: true, Reason: ReasonMacDevice, Enrollment: enr}
				if req.MessageType == "CheckOut" {
					d.commit = m.checkOut(req.EnrollmentID, nil)
				}
				return d, nil
			}
			return deny(ReasonNoBearer, nil, enr), nil
		case req.MessageType == "Authenticate" && req.MacModel && (enr == nil || enr.Platform != store.PlatformOther):
			// A Mac's first device-channel Authenticate: let it through
			// and remember the platform once the MDM accepted it.
			return &Decision{Allow: true, Reason: ReasonMacDevice, Enrollment: enr,
				commit: m.learnMac(req.EnrollmentID)}, nil
		}
		return deny(ReasonNoBearer, nil, enr), nil
	}

	if !WellFormed(req.Bearer) {
		if offboarding {
			return m.allowOffboarding(req, nil, enr), nil
		}
		return deny(ReasonMalformed, nil, enr), nil
	}
	if tok == nil {
		if offboarding {
			return m.allowOffboarding(req, nil, enr), nil
		}
		return deny(ReasonUnknown, nil, enr), nil
	}

	// CheckOut cannot handle a 401: accept it with the enrollment's own
	// token even when that token expired or was revoked.
	if req.MessageType == "CheckOut" && enr != nil && enr.State != store.StateRemoved &&
		(tok.EnrollmentID == req.EnrollmentID || SameHash(enr.TokenHash, h)) && sameUser(tok, enr) {
		return &Decision{Allow: true, Reason: ReasonCheckOut, Token: tok, Enrollment: enr,
			commit: m.checkOut(req.EnrollmentID, tok)}, nil
	}
	if offboarding {
		return m.allowOffboarding(req, tok, enr), nil
	}
	if r := m.usable(tok); r != "" {
		return deny(r, tok, enr), nil
	}
	if tok.EnrollmentID != "" && tok.EnrollmentID != req.EnrollmentID {
		return deny(ReasonWrongEnrollment, tok, enr), nil
	}
	if enr != nil && enr.State != store.StateRemoved && enr.Issuer != "" && !sameUser(tok, enr) {
		return deny(ReasonWrongUser, tok, enr), nil
	}
	if enr != nil {
		switch enr.State {
		case store.StateBlocked:
			return deny(ReasonBlocked, tok, enr), nil
		case store.StateOffboarding: // past its deadline
			return deny(ReasonOffboarding, tok, enr), nil
		case store.StateReauth:
			// Only a token issued by a sign-in after the state change
			// re-binds; the token the enrollment had stays refused.
			if SameHash(enr.TokenHash, h) || tok.IssuedAt.Before(enr.UpdatedAt) {
				return deny(ReasonReauth, tok, enr), nil
			}
		}
	}
	d := &Decision{Allow: true, Reason: ReasonOK, Token: tok, Enrollment: enr}
	if needsBind(tok, enr, h, req) {
		d.commit = m.bind(h, req)
	}
	return d, nil
}

func sameUser(t *store.Token, e *store.Enrollment) bool {
	return e.Issuer == t.Issuer && e.Subject == t.Subject
}

func needsBind(t *store.Token, e *store.Enrollment, h store.Hash, req Request) bool {
	if t.EnrollmentID == "" || e == nil || !SameHash(e.TokenHash, h) || e.State != store.StateActive {
		return true
	}
	return e.Platform == store.PlatformUnknown && req.MessageType == "Authenticate"
}

func (m *Manager) allowOffboarding(req Request, t *store.Token, e *store.Enrollment) *Decision {
	d := &Decision{Allow: true, Reason: ReasonOffboarding, Token: t, Enrollment: e}
	if req.MessageType == "CheckOut" {
		// Revoke the presented token only if it belongs to this enrollment.
		if t != nil && t.EnrollmentID != req.EnrollmentID && (e == nil || !SameHash(e.TokenHash, t.Hash)) {
			t = nil
		}
		d.commit = m.checkOut(req.EnrollmentID, t)
	}
	return d
}

// errStale aborts a commit whose premises changed between Authorize and
// Commit (a concurrent request, an operator action).
var errStale = errors.New("token: binding refused: state changed")

// bind ties the token to the enrollment (creating or re-binding it) and
// revokes the token the enrollment had before.
func (m *Manager) bind(h store.Hash, req Request) func(context.Context) error {
	return func(ctx context.Context) error {
		now := m.now()
		var previous store.Hash
		var family string
		_, _, err := m.Store.Bind(ctx, h, req.EnrollmentID, func(t *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
			previous = store.Hash{} // the store may run this function more than once
			family = t.FamilyID
			if t.EnrollmentID != "" && t.EnrollmentID != req.EnrollmentID {
				return nil, fmt.Errorf("%w: token bound to another enrollment", errStale)
			}
			if !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt) {
				return nil, fmt.Errorf("%w: token no longer valid", errStale)
			}
			if e == nil || e.State == store.StateRemoved {
				platform := ""
				if e != nil {
					platform = e.Platform // a removed record keeps what it learned
				}
				e = &store.Enrollment{ID: req.EnrollmentID, CreatedAt: now, Platform: platform}
			} else if e.Issuer != "" && !sameUser(t, e) {
				return nil, fmt.Errorf("%w: enrollment owned by another user", errStale)
			}
			switch e.State {
			case store.StateBlocked, store.StateOffboarding:
				return nil, fmt.Errorf("%w: enrollment is %s", errStale, e.State)
			}
			if !SameHash(e.TokenHash, h) && e.TokenHash != (store.Hash{}) {
				previous = e.TokenHash
			}
			e.Issuer, e.Subject = t.Issuer, t.Subject
			if e.ManagedAppleID == "" {
				// AssignedManagedAppleID may never change for an enrollment.
				e.ManagedAppleID = t.ManagedAppleID
			}
			if e.Mode == "" {
				e.Mode = t.Mode
			}
			if e.Platform == store.PlatformUnknown && req.MessageType == "Authenticate" {
				e.Platform = platformOf(req)
			}
			e.State = store.StateActive
			e.Deadline = time.Time{}
			e.TokenHash = h
			e.UpdatedAt = now
			t.EnrollmentID = req.EnrollmentID
			return e, nil
		})
		if err != nil {
			return err
		}
		if previous != (store.Hash{}) {
			if err := m.Revoke(ctx, previous); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if family != "" {
			// Refreshed access tokens of the family inherit the binding.
			_, err := m.Store.UpdateFamily(ctx, family, func(f *store.Family) error {
				if f.EnrollmentID != req.EnrollmentID {
					f.EnrollmentID = req.EnrollmentID
					f.UpdatedAt = now
				}
				return nil
			})
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	}
}

func platformOf(req Request) string {
	if req.MacModel {
		return store.PlatformMac
	}
	return store.PlatformOther
}

// learnMac records a Mac enrollment seen on its device channel. First seen
// wins: an enrollment already known as another platform stays so.
func (m *Manager) learnMac(id string) func(context.Context) error {
	return func(ctx context.Context) error {
		now := m.now()
		_, err := m.Store.UpdateEnrollment(ctx, id, func(e *store.Enrollment) (*store.Enrollment, error) {
			switch {
			case e == nil:
				return &store.Enrollment{ID: id, Platform: store.PlatformMac, State: store.StateActive, CreatedAt: now, UpdatedAt: now}, nil
			case e.Platform == store.PlatformOther:
				return nil, fmt.Errorf("%w: enrollment is known as another platform", errStale)
			case e.State == store.StateRemoved:
				// A new enrollment of the same device (UDID): start over.
				return &store.Enrollment{ID: id, Platform: store.PlatformMac, State: store.StateActive, CreatedAt: now, UpdatedAt: now}, nil
			case e.Platform == store.PlatformUnknown:
				e.Platform = store.PlatformMac
				e.UpdatedAt = now
				return e, nil
			}
			return nil, nil
		})
		return err
	}
}

// checkOut removes the enrollment and revokes its tokens.
func (m *Manager) checkOut(id string, t *store.Token) func(context.Context) error {
	return func(ctx context.Context) error {
		now := m.now()
		_, err := m.Store.UpdateEnrollment(ctx, id, func(e *store.Enrollment) (*store.Enrollment, error) {
			if e == nil || e.State == store.StateRemoved {
				return nil, nil
			}
			e.State = store.StateRemoved
			e.Deadline = time.Time{}
			e.UpdatedAt = now
			return e, nil
		})
		if err != nil {
			return err
		}
		if err := m.revokeBound(ctx, id); err != nil {
			return err
		}
		if t != nil {
			if err := m.Revoke(ctx, t.Hash); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	}
}
