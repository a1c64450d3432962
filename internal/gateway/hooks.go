package gateway

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// Hooks let the server embedding the gateway observe two outcomes of the
// guard that its audit entries do not fully describe: the requests it lets
// through (not logged, they are the bulk of the traffic) and the new
// bindings it commits. Each hook is optional; an unset one costs a nil
// check. Hooks run synchronously on the request path: they must be cheap
// and must not block.
type Hooks struct {
	// Allowed is called for every protected request passed on to the MDM,
	// with the reason: ok, checkout, mac_device_channel or offboarding.
	Allowed func(token.Reason)
	// Bound is called after the MDM accepted a request whose token was
	// not yet bound to its enrollment and the binding was committed: the
	// enrollment's first binding, or a new token after a new sign-in.
	Bound func(Binding)
	// Limited is called for every request an abuse limit refuses (429),
	// with the limit's name (one of the Limit* constants). The audit log
	// has one entry per limited client, this hook every refusal.
	Limited func(limit string)
}

// Binding describes a committed binding: who owns the enrollment now. It
// never holds a token.
type Binding struct {
	EnrollmentID   string
	Issuer         string
	Subject        string
	UserIdentifier string
	ManagedAppleID string
	Mode           string
	ModelFamily    string
	// Platform is store.PlatformMac, store.PlatformOther or unknown ("").
	Platform string
	// Replaced is set when the binding took the enrollment from another
	// token, which it revoked.
	Replaced bool
	At       time.Time
}

// newBinding reports whether committing d binds its token to the
// enrollment anew (rather than only recording the platform), and whether
// that takes the enrollment from another token. Call it before Commit.
func newBinding(d *token.Decision) (fresh, replaced bool) {
	t, e := d.Token, d.Enrollment
	if t == nil || t.EnrollmentID != "" && e != nil && e.State == store.StateActive && token.SameHash(e.TokenHash, t.Hash) {
		return false, false
	}
	return true, e != nil && e.State != store.StateRemoved && e.TokenHash != (store.Hash{}) && !token.SameHash(e.TokenHash, t.Hash)
}

// bound reports a committed new binding to Hooks.Bound. The enrollment is
// read back so that the report shows what was stored (an enrollment keeps
// its first Managed Apple ID and mode); if that read fails, the token's
// values stand in (platform unknown).
func (g *Gateway) bound(ctx context.Context, t *store.Token, id string, replaced bool) {
	b := Binding{EnrollmentID: id, Issuer: t.Issuer, Subject: t.Subject, UserIdentifier: t.UserIdentifier,
		ManagedAppleID: t.ManagedAppleID, Mode: t.Mode, ModelFamily: t.ModelFamily, Replaced: replaced, At: g.now()}
	e, err := g.store.Enrollment(ctx, id)
	if err == nil {
		b.Issuer, b.Subject, b.Platform = e.Issuer, e.Subject, e.Platform
		if e.ManagedAppleID != "" {
			b.ManagedAppleID = e.ManagedAppleID
		}
		if e.Mode != "" {
			b.Mode = e.Mode
		}
	} else {
		g.log.Warn("reading back a new binding", zap.String("enrollment_id", id), zap.Error(err))
	}
	g.Hooks.Bound(b)
}
