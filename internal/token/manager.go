package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Manager issues tokens and enforces the rules for protected MDM requests.
type Manager struct {
	Store    store.Store
	Lifetime Lifetime
	// Now and Rand default to time.Now and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Grant is what a successful sign-in establishes.
type Grant struct {
	Issuer, Subject, SessionID string
	UserIdentifier             string
	ManagedAppleID             string
	Mode                       string // "byod" or "adde"
	ModelFamily                string
	// Profile and RequiredAppID are the policy's choices for the profile.
	Profile       string
	RequiredAppID int64
}

// Issue mints and stores a token for the grant.
func (m *Manager) Issue(ctx context.Context, g Grant) (string, *store.Token, error) {
	if g.Issuer == "" || g.Subject == "" || g.ManagedAppleID == "" || g.Mode == "" {
		return "", nil, errors.New("token: incomplete grant")
	}
	if err := m.Lifetime.Validate(); err != nil {
		return "", nil, err
	}
	raw, h, err := Mint(m.Rand)
	if err != nil {
		return "", nil, err
	}
	now := m.now()
	exp, err := m.Lifetime.Expiry(now, m.Rand)
	if err != nil {
		return "", nil, err
	}
	t := &store.Token{
		Hash:           h,
		Issuer:         g.Issuer,
		Subject:        g.Subject,
		SessionID:      g.SessionID,
		UserIdentifier: g.UserIdentifier,
		ManagedAppleID: g.ManagedAppleID,
		Mode:           g.Mode,
		ModelFamily:    g.ModelFamily,
		Profile:        g.Profile,
		RequiredAppID:  g.RequiredAppID,
		IssuedAt:       now,
		ExpiresAt:      exp,
	}
	if err := m.Store.CreateToken(ctx, t); err != nil {
		return "", nil, fmt.Errorf("token: storing: %w", err)
	}
	return raw, t, nil
}

// Reason says why a token was refused (or a request let through). The
// values are stable: they appear in logs and metrics.
type Reason string

// Reasons.
const (
	ReasonOK              Reason = "ok"
	ReasonNoBearer        Reason = "no_bearer"
	ReasonMalformed       Reason = "malformed_token"
	ReasonUnknown         Reason = "unknown_token"
	ReasonExpired         Reason = "expired"
	ReasonRevoked         Reason = "revoked"
	ReasonWrongEnrollment Reason = "wrong_enrollment"
	ReasonWrongUser       Reason = "wrong_user"
	ReasonReauth          Reason = "reauth"
	ReasonBlocked         Reason = "blocked"
	ReasonRemoved         Reason = "removed"
	ReasonOffboarding     Reason = "offboarding"
	ReasonMacDevice       Reason = "mac_device_channel"
	ReasonCheckOut        Reason = "checkout"
	ReasonNoEnrollmentID  Reason = "no_enrollment_id"
)

// Rejection is a refusal of a presented token.
type Rejection struct{ Reason Reason }

func (r *Rejection) Error() string { return "token refused: " + string(r.Reason) }

// ReasonOf returns the reason of a *Rejection in err's chain, or "".
func ReasonOf(err error) Reason {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Lookup returns the stored record of a valid (well-formed, known, unexpired,
// unrevoked) token, or a *Rejection, or a store error.
func (m *Manager) Lookup(ctx context.Context, raw string) (*store.Token, error) {
	if !WellFormed(raw) {
		return nil, &Rejection{ReasonMalformed}
	}
	t, err := m.Store.Token(ctx, HashOf(raw))
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Rejection{ReasonUnknown}
	}
	if err != nil {
		return nil, err
	}
	if r := m.usable(t); r != "" {
		return t, &Rejection{r}
	}
	return t, nil
}

func (m *Manager) usable(t *store.Token) Reason {
	switch {
	case !t.RevokedAt.IsZero():
		return ReasonRevoked
	case !m.now().Before(t.ExpiresAt):
		return ReasonExpired
	}
	return ""
}

// Revoke revokes one token. Revoking a revoked token is not an error.
func (m *Manager) Revoke(ctx context.Context, h store.Hash) error {
	now := m.now()
	_, err := m.Store.UpdateToken(ctx, h, func(t *store.Token) error {
		if t.RevokedAt.IsZero() {
			t.RevokedAt = now
		}
		return nil
	})
	return err
}

// ErrTransition is returned for a state change the state machine forbids.
var ErrTransition = errors.New("token: state transition not allowed")

// transitions lists, for each state, the states an operator may move an
// enrollment to. Re-binding after reauth (reauth → active) is done by a
// sign-in, not here.
var transitions = map[store.State][]store.State{
	store.StateActive:      {store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved},
	store.StateReauth:      {store.StateBlocked, store.StateOffboarding, store.StateRemoved},
	store.StateBlocked:     {store.StateReauth, store.StateOffboarding, store.StateRemoved},
	store.StateOffboarding: {store.StateBlocked, store.StateRemoved},
	store.StateRemoved:     {},
}

// CanTransition reports whether from → to is allowed.
func CanTransition(from, to store.State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// SetState moves an enrollment to a new state. deadline is used for
// offboarding (zero: no deadline). Leaving a state that honours tokens
// (to reauth, blocked, offboarding or removed) revokes nothing by itself:
// the state alone makes the next request fail; removed also revokes the
// bound tokens.
func (m *Manager) SetState(ctx context.Context, id string, to store.State, deadline time.Time) (*store.Enrollment, error) {
	now := m.now()
	e, err := m.Store.UpdateEnrollment(ctx, id, func(e *store.Enrollment) (*store.Enrollment, error) {
		if e == nil {
			return nil, store.ErrNotFound
		}
		if !CanTransition(e.State, to) {
			return nil, fmt.Errorf("%w: %s → %s", ErrTransition, e.State, to)
		}
		e.State = to
		e.UpdatedAt = now
		e.Deadline = time.Time{}
		if to == store.StateOffboarding {
			e.Deadline = deadline
		}
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	if to == store.StateRemoved {
		if err := m.revokeBound(ctx, id); err != nil {
			return e, err
		}
	}
	return e, nil
}

func (m *Manager) revokeBound(ctx context.Context, id string) error {
	toks, err := m.Store.TokensForEnrollment(ctx, id)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if err := m.Revoke(ctx, t.Hash); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}
