package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/mdmauth/mdmauth/internal/profile"
	"github.com/mdmauth/mdmauth/internal/store"
)

// ErrProfileUnavailable is wrapped by RenderProfile's refusals: the
// enrollment's state or record does not allow rendering its profile now.
var ErrProfileUnavailable = errors.New("gateway: the enrollment profile cannot be rendered")

// RenderProfile renders the enrollment profile of an existing enrollment
// again, for the MDM to push when it renews the identity certificate: the
// enrollment's own AssignedManagedAppleID and EnrollmentMode, and the
// template and RequiredAppIDForMDM the policy chose at its sign-in (read
// from the token bound to it, else its newest token or OAuth 2 family on
// record), signed like a served profile. The enrollment must be active or
// in reauth. An unknown enrollment is store.ErrNotFound.
func (g *Gateway) RenderProfile(ctx context.Context, enrollmentID string) ([]byte, error) {
	e, err := g.store.Enrollment(ctx, enrollmentID)
	if err != nil {
		return nil, err
	}
	switch e.State {
	case store.StateActive, store.StateReauth:
	default:
		return nil, fmt.Errorf("%w: the enrollment is %s", ErrProfileUnavailable, e.State)
	}
	if e.ManagedAppleID == "" || e.Mode == "" {
		return nil, fmt.Errorf("%w: no user has signed in for this enrollment", ErrProfileUnavailable)
	}
	ch, err := g.profileChoice(ctx, e)
	if err != nil {
		return nil, err
	}
	tmpl := g.cfg.Template
	if ch.profile != "" {
		tmpl = g.cfg.Templates[ch.profile]
	}
	if tmpl == nil {
		return nil, fmt.Errorf("%w: enrollment profile template %q is no longer configured", ErrProfileUnavailable, ch.profile)
	}
	prof, err := tmpl.Render(profile.Params{Mode: e.Mode, ManagedAppleID: e.ManagedAppleID, RequiredAppID: ch.requiredAppID})
	if err == nil && g.cfg.Signer != nil {
		prof, err = g.cfg.Signer.Sign(prof)
	}
	if err != nil {
		return nil, fmt.Errorf("gateway: rendering the profile: %w", err)
	}
	return prof, nil
}

// choice is what the policy chose for an enrollment's profile.
type choice struct {
	profile       string
	requiredAppID int64
}

// profileChoice finds the policy's choice for e on record: its bound
// token, else its newest token, else its owner's newest OAuth 2 family
// bound to it. With none left (tokens are purged some time after they
// end), the default is used only when no template or policy rule could
// have chosen otherwise.
func (g *Gateway) profileChoice(ctx context.Context, e *store.Enrollment) (choice, error) {
	if e.TokenHash != (store.Hash{}) {
		t, err := g.store.Token(ctx, e.TokenHash)
		if err == nil && t.Issuer == e.Issuer && t.Subject == e.Subject {
			return choice{t.Profile, t.RequiredAppID}, nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return choice{}, err
		}
	}
	toks, err := g.store.TokensForEnrollment(ctx, e.ID)
	if err != nil {
		return choice{}, err
	}
	toks = slices.DeleteFunc(toks, func(t *store.Token) bool { return t.Issuer != e.Issuer || t.Subject != e.Subject })
	if len(toks) > 0 {
		t := slices.MaxFunc(toks, func(a, b *store.Token) int { return a.IssuedAt.Compare(b.IssuedAt) })
		return choice{t.Profile, t.RequiredAppID}, nil
	}
	if e.Issuer != "" {
		fams, err := g.store.FamiliesForUser(ctx, e.Issuer, e.Subject)
		if err != nil {
			return choice{}, err
		}
		fams = slices.DeleteFunc(fams, func(f *store.Family) bool { return f.EnrollmentID != e.ID })
		if len(fams) > 0 {
			f := slices.MaxFunc(fams, func(a, b *store.Family) int {
				return cmp.Or(a.SignedInAt.Compare(b.SignedInAt), cmp.Compare(a.ID, b.ID))
			})
			return choice{f.Profile, f.RequiredAppID}, nil
		}
	}
	if len(g.cfg.Templates) == 0 && !g.policyChoosesProfiles() {
		return choice{}, nil
	}
	return choice{}, fmt.Errorf("%w: the sign-in that chose this enrollment's profile is no longer on record; force a new sign-in (reauth) and try again after it", ErrProfileUnavailable)
}

// policyChoosesProfiles reports whether a policy rule names a template or
// a Required App.
func (g *Gateway) policyChoosesProfiles() bool {
	if g.cfg.Policy == nil {
		return false
	}
	for _, r := range g.cfg.Policy.Rules {
		if r.Profile != "" || r.RequiredAppID != 0 {
			return true
		}
	}
	return false
}
