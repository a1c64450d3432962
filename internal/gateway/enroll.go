package gateway

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/profile"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// enroll handles POST <BaseURL>: 401 + challenge without a valid bearer,
// the enrollment profile with one.
func (g *Gateway) enroll(w http.ResponseWriter, r *http.Request, modeSeg string) {
	mode, err := apple.ParseMode(modeSeg)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if !allow(w, r, http.MethodPost) {
		return
	}
	// Never form-parse this body: read the raw bytes whatever the type says.
	body, ok := readBody(w, r, g.cfg.MaxEnrollBody)
	if !ok {
		return
	}
	q, _ := signin.ParseParams(r.URL.RawQuery, 8)
	family := q["model-family"]
	if len(family) > 32 {
		family = ""
	}
	info, derr := apple.DecodeEnrollBody(body)
	devFields := []zap.Field{zap.String("path", r.URL.Path), zap.String("product", info.Product), zap.String("os_version", info.Version),
		zap.String("language", info.Language), zap.Bool("signed_body", info.Signed)}
	if derr != nil {
		devFields = append(devFields, zap.String("body_error", derr.Error()))
	}

	bearer, has := apple.ParseBearer(r.Header.Get("Authorization"))
	if !has {
		// Enrollment SSO: on this 401 only, and never for a Mac.
		esso := g.cfg.ESSO != nil && family != "Mac" && !apple.IsMacModel(info.Product)
		if esso {
			w.Header().Set(g.cfg.ESSO.Header, g.base(r)+g.cfg.Prefix+pathESSO)
		}
		g.log.Info("enrollment challenged", append(g.audit(audit.EnrollmentChallenged, r, devFields), zap.String("mode", string(mode)), zap.String("model_family", family), zap.Bool("esso", esso))...)
		g.challenge(w, r, signin.Flow{Kind: signin.KindEnroll, Mode: string(mode), ModelFamily: family})
		return
	}
	tok, err := g.tokens.Lookup(r.Context(), bearer)
	if reason := token.ReasonOf(err); reason != "" || err == nil && tok == nil {
		// The device reads this 401 as "account invalidated" and stops.
		g.log.Warn("enrollment refused", append(g.audit(audit.EnrollmentRefused, r, devFields), zap.String("reason", string(reason)), tokenID(tok))...)
		g.challenge(w, r, signin.Flow{Kind: signin.KindEnroll, Mode: string(mode), ModelFamily: family})
		return
	}
	if err != nil {
		storeUnavailable(w, g.log, err)
		return
	}
	if tok.Mode != string(mode) {
		g.refuseEnroll(w, r, "com.apple.mdmauth.mode-mismatch", "This sign-in was for another kind of enrollment. Start again from Settings.", tok, devFields)
		return
	}
	if tok.EnrollmentID != "" {
		// The profile belongs to the enrollment step only: a token bound to
		// an enrollment (or re-authenticating one) has a device already.
		// Serving it again would hand a copied token the profile's
		// enrollment secrets (a SCEP challenge, say) for another device.
		g.refuseEnroll(w, r, "com.apple.mdmauth.token-in-use", "This sign-in belongs to a device that is already enrolled. Start again from Settings.", tok, devFields)
		return
	}
	tmpl := g.cfg.Template
	if tok.Profile != "" {
		tmpl = g.cfg.Templates[tok.Profile]
	}
	if tmpl == nil {
		g.log.Error("the token names an enrollment profile that is no longer configured", zap.String("profile", tok.Profile), tokenID(tok))
		g.refuseEnroll(w, r, "com.apple.mdmauth.profile-unavailable", "This enrollment cannot be completed now. Contact your IT administrator.", tok, devFields)
		return
	}
	prof, err := tmpl.Render(profile.Params{Mode: tok.Mode, ManagedAppleID: tok.ManagedAppleID, RequiredAppID: tok.RequiredAppID})
	if err == nil && g.cfg.Signer != nil {
		prof, err = g.cfg.Signer.Sign(prof)
	}
	if err != nil {
		g.log.Error("rendering profile", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-apple-aspen-config")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(prof)
	g.log.Info("profile served", append(g.audit(audit.ProfileServed, r, devFields), tokenID(tok), zap.String("managed_apple_id", tok.ManagedAppleID),
		zap.String("mode", tok.Mode), zap.String("iss", tok.Issuer), zap.String("sub", tok.Subject),
		zap.String("profile", tok.Profile), zap.Bool("signed", g.cfg.Signer != nil))...)
}

func (g *Gateway) refuseEnroll(w http.ResponseWriter, r *http.Request, code, msg string, tok *store.Token, f []zap.Field) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write(apple.EnrollmentRefused(code, msg))
	g.log.Warn("enrollment refused", append(g.audit(audit.EnrollmentRefused, r, f), zap.String("reason", code), tokenID(tok))...)
}

func tokenID(t *store.Token) zap.Field {
	if t == nil {
		return zap.Skip()
	}
	return zap.String("token_id", t.ID())
}
