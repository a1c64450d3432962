package admin

import (
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/mdmauth/mdmauth/internal/store"
)

// RevokeReason is the RevokeReason of families the admin API revokes.
const RevokeReason = "admin"

// Revoked counts what a change revoked: the tokens and token families
// that were live until then.
type Revoked struct {
	Tokens   int `json:"tokens_revoked"`
	Families int `json:"families_revoked"`
}

func (r *Revoked) add(o Revoked) {
	r.Tokens += o.Tokens
	r.Families += o.Families
}

// errUnchanged aborts an update that has nothing to write.
var errUnchanged = errors.New("unchanged")

// revokeTokenHash revokes one live token; a missing, revoked or expired
// one is left as it is.
func (c *call) revokeTokenHash(ctx context.Context, h store.Hash, n *Revoked) error {
	now := c.h.now()
	live := false
	_, err := c.st.UpdateToken(ctx, h, func(t *store.Token) error {
		live = false
		if grantState(t.RevokedAt, t.ExpiresAt, now) != TokenLive {
			return errUnchanged // dead already
		}
		live = true
		t.RevokedAt = now
		return nil
	})
	switch {
	case err == nil:
		if live {
			n.Tokens++
		}
		return nil
	case errors.Is(err, errUnchanged), errors.Is(err, store.ErrNotFound):
		return nil
	}
	return err
}

// revokeFamily revokes an OAuth 2 token family, drops the identity
// provider's refresh token it kept, and revokes every access token issued
// in it (a token a concurrent refresh stores afterwards is revoked by the
// refresh itself, which checks the family after storing).
func (c *call) revokeFamily(ctx context.Context, id string, n *Revoked) error {
	now := c.h.now()
	live := false
	_, err := c.st.UpdateFamily(ctx, id, func(f *store.Family) error {
		live = false
		if !f.RevokedAt.IsZero() && len(f.IdPRefresh) == 0 {
			return errUnchanged
		}
		if f.RevokedAt.IsZero() {
			live = now.Before(f.ExpiresAt)
			f.RevokedAt = now
			f.RevokeReason = RevokeReason
		}
		f.IdPRefresh, f.IdPKeyID = nil, ""
		f.UpdatedAt = now
		return nil
	})
	switch {
	case err == nil:
		if live {
			n.Families++
		}
	case errors.Is(err, errUnchanged), errors.Is(err, store.ErrNotFound):
	default:
		return err
	}
	toks, err := c.st.TokensForFamily(ctx, id)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if err := c.revokeTokenHash(ctx, t.Hash, n); err != nil {
			return err
		}
	}
	return nil
}

// enrollmentGrants returns the tokens bound to e (oldest first) and the
// OAuth 2 families its tokens came from or that are bound to it (oldest
// sign-in first).
func enrollmentGrants(ctx context.Context, st store.Store, e *store.Enrollment) ([]*store.Token, []*store.Family, error) {
	toks, err := st.TokensForEnrollment(ctx, e.ID)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(toks, func(a, b *store.Token) int {
		return cmp.Or(a.IssuedAt.Compare(b.IssuedAt), cmp.Compare(a.Hash.ID(), b.Hash.ID()))
	})
	seen := map[string]bool{}
	var fams []*store.Family
	addFamily := func(f *store.Family) {
		if !seen[f.ID] {
			seen[f.ID] = true
			fams = append(fams, f)
		}
	}
	if e.Issuer != "" {
		owned, err := st.FamiliesForUser(ctx, e.Issuer, e.Subject)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range owned {
			if f.EnrollmentID == e.ID {
				addFamily(f)
			}
		}
	}
	for _, t := range toks {
		if t.FamilyID == "" || seen[t.FamilyID] {
			continue
		}
		f, err := st.Family(ctx, t.FamilyID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		addFamily(f)
	}
	slices.SortFunc(fams, func(a, b *store.Family) int {
		return cmp.Or(a.SignedInAt.Compare(b.SignedInAt), cmp.Compare(a.ID, b.ID))
	})
	return toks, fams, nil
}

// revokeEnrollment revokes the OAuth 2 families of e (so that no refresh
// gets a token for it again) and, with tokens, every token bound to it.
func (c *call) revokeEnrollment(ctx context.Context, e *store.Enrollment, tokens bool) (Revoked, error) {
	var n Revoked
	toks, fams, err := enrollmentGrants(ctx, c.st, e)
	if err != nil {
		return n, err
	}
	for _, f := range fams {
		if err := c.revokeFamily(ctx, f.ID, &n); err != nil {
			return n, err
		}
	}
	if !tokens {
		return n, nil
	}
	for _, t := range toks {
		if err := c.revokeTokenHash(ctx, t.Hash, &n); err != nil {
			return n, err
		}
	}
	if e.TokenHash != (store.Hash{}) {
		if err := c.revokeTokenHash(ctx, e.TokenHash, &n); err != nil {
			return n, err
		}
	}
	return n, nil
}

// revokeUser revokes every token and OAuth 2 family of (iss, sub), bound
// to an enrollment or not.
func (c *call) revokeUser(ctx context.Context, iss, sub string) (Revoked, error) {
	var n Revoked
	fams, err := c.st.FamiliesForUser(ctx, iss, sub)
	if err != nil {
		return n, err
	}
	for _, f := range fams {
		if err := c.revokeFamily(ctx, f.ID, &n); err != nil {
			return n, err
		}
	}
	toks, err := c.st.TokensForUser(ctx, iss, sub)
	if err != nil {
		return n, err
	}
	for _, t := range toks {
		if err := c.revokeTokenHash(ctx, t.Hash, &n); err != nil {
			return n, err
		}
	}
	return n, nil
}
