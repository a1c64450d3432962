package token

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// RevokeReasonBackchannelLogout is the RevokeReason of families ended by
// an OpenID Connect back-channel logout.
const RevokeReasonBackchannelLogout = "backchannel_logout"

// ErrAllSessionsOff refuses a logout that names no session (only the
// subject): it would end every session of the user, which is opt-in.
var ErrAllSessionsOff = errors.New("token: a logout without a session id ends all of the user's sessions, which is not enabled")

// ErrSessionUnnamed refuses a logout without an issuer, or without both a
// subject and a session id.
var ErrSessionUnnamed = errors.New("token: a logout needs an issuer and a subject or a session id")

// SessionEnd is what EndSession ended.
type SessionEnd struct {
	// Tokens counts the access tokens revoked (live ones only).
	Tokens int
	// Families counts the OAuth 2 token families revoked.
	Families int
	// Enrollments lists the enrollments moved from active to reauth, in
	// ascending order.
	Enrollments []string
}

// EndSession ends an identity-provider session (OpenID Connect
// Back-Channel Logout 1.0, section 2.7). With a sid it ends only what the
// sign-ins of that session (iss, sid, and sub when given) established:
// their access tokens, their OAuth 2 token families (revoked with reason
// backchannel_logout) and the identity provider's refresh tokens kept in
// those families; every enrollment whose current token was ended and
// that is active goes to reauth, others keep their state. Without a sid,
// only when allSessions is set, it does the same for every session of
// (iss, sub), and every active enrollment of the user goes to reauth;
// otherwise it returns ErrAllSessionsOff and changes nothing. Ending an
// ended session again is not an error (nothing is counted twice).
func (m *Manager) EndSession(ctx context.Context, iss, sub, sid string, allSessions bool) (*SessionEnd, error) {
	if iss == "" || sub == "" && sid == "" {
		return nil, ErrSessionUnnamed
	}
	if sid == "" && !allSessions {
		return nil, ErrAllSessionsOff
	}
	match := func(tIss, tSub, tSid string) bool {
		return tIss == iss && (sub == "" || tSub == sub) && (sid == "" || tSid == sid)
	}
	toks, fams, err := m.sessionGrants(ctx, iss, sub, match)
	if err != nil {
		return nil, err
	}
	now := m.now()
	res := &SessionEnd{}
	ended := map[store.Hash]bool{}
	candidates := map[string]bool{}
	seen := map[store.Hash]bool{}
	for _, t := range toks {
		seen[t.Hash] = true
	}
	for _, f := range fams {
		revoked, err := m.endFamily(ctx, f.ID, now)
		if err != nil {
			return res, err
		}
		if revoked {
			res.Families++
		}
		if f.EnrollmentID != "" {
			candidates[f.EnrollmentID] = true
		}
		// Refreshed access tokens belong to the family whatever their
		// own records say.
		ft, err := m.Store.TokensForFamily(ctx, f.ID)
		if err != nil {
			return res, err
		}
		for _, t := range ft {
			if !seen[t.Hash] {
				seen[t.Hash] = true
				toks = append(toks, t)
			}
		}
	}
	for _, t := range toks {
		ended[t.Hash] = true
		if t.EnrollmentID != "" {
			candidates[t.EnrollmentID] = true
		}
		if !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt) {
			continue // already unusable
		}
		revoked, err := m.revokeAt(ctx, t.Hash, now)
		if err != nil {
			return res, err
		}
		if revoked {
			res.Tokens++
		}
	}
	userWide := sid == ""
	if userWide {
		es, err := m.Store.EnrollmentsForUser(ctx, iss, sub)
		if err != nil {
			return res, err
		}
		for _, e := range es {
			candidates[e.ID] = true
		}
	}
	ids := make([]string, 0, len(candidates))
	for id := range candidates {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		moved := false
		_, err := m.Store.UpdateEnrollment(ctx, id, func(e *store.Enrollment) (*store.Enrollment, error) {
			moved = false // the store may run this more than once
			if e == nil || e.State != store.StateActive || !CanTransition(e.State, store.StateReauth) {
				return nil, nil
			}
			owned := e.Issuer == iss && e.Subject == sub
			if !ended[e.TokenHash] && !(userWide && owned) {
				return nil, nil // bound to a token of another session
			}
			e.State = store.StateReauth
			e.UpdatedAt = now
			e.Deadline = time.Time{}
			moved = true
			return e, nil
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return res, err
		}
		if moved {
			res.Enrollments = append(res.Enrollments, id)
		}
	}
	return res, nil
}

// sessionGrants lists the tokens and families that match: from the user's
// own lists when the subject is known, else (a sid-only logout) by
// scanning the store.
func (m *Manager) sessionGrants(ctx context.Context, iss, sub string, match func(iss, sub, sid string) bool) ([]*store.Token, []*store.Family, error) {
	var toks []*store.Token
	var fams []*store.Family
	if sub != "" {
		all, err := m.Store.TokensForUser(ctx, iss, sub)
		if err != nil {
			return nil, nil, err
		}
		for _, t := range all {
			if match(t.Issuer, t.Subject, t.SessionID) {
				toks = append(toks, t)
			}
		}
		fs, err := m.Store.FamiliesForUser(ctx, iss, sub)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range fs {
			if match(f.Issuer, f.Subject, f.SessionID) {
				fams = append(fams, f)
			}
		}
		return toks, fams, nil
	}
	err := m.Store.ScanTokens(ctx, nil, func(t *store.Token) bool {
		if match(t.Issuer, t.Subject, t.SessionID) {
			toks = append(toks, t)
		}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	err = m.Store.ScanFamilies(ctx, "", func(f *store.Family) bool {
		if match(f.Issuer, f.Subject, f.SessionID) {
			fams = append(fams, f)
		}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	return toks, fams, nil
}

// endFamily revokes a family (if it is not revoked yet) and drops the
// identity provider's refresh token kept in it; it reports whether this
// call revoked it. A family purged meanwhile is skipped.
func (m *Manager) endFamily(ctx context.Context, id string, now time.Time) (bool, error) {
	revoked := false
	_, err := m.Store.UpdateFamily(ctx, id, func(f *store.Family) error {
		revoked = false // the store may run this more than once
		if f.RevokedAt.IsZero() {
			f.RevokedAt = now
			f.RevokeReason = RevokeReasonBackchannelLogout
			revoked = true
		}
		f.IdPRefresh, f.IdPKeyID = nil, ""
		f.UpdatedAt = now
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return revoked, err
}

// revokeAt revokes a token and reports whether this call did. A token
// purged meanwhile is skipped.
func (m *Manager) revokeAt(ctx context.Context, h store.Hash, now time.Time) (bool, error) {
	revoked := false
	_, err := m.Store.UpdateToken(ctx, h, func(t *store.Token) error {
		revoked = false
		if t.RevokedAt.IsZero() {
			t.RevokedAt = now
			revoked = true
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return revoked, err
}
