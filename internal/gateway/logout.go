package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// BackchannelLogout serves OpenID Connect Back-Channel Logout 1.0 at
// <prefix>/oidc/backchannel-logout: the identity provider posts a logout
// token and the gateway ends what that session established.
type BackchannelLogout struct {
	// Verifier checks the logout tokens (a *signin.Logout or *signin.RP).
	Verifier LogoutVerifier
	// AllSessions honours logout tokens that name only the user (sub, no
	// sid) by ending every session of the user. Off, they are refused: a
	// provider would otherwise end every device's session whenever the
	// user signs out of any application.
	AllSessions bool
}

// LogoutVerifier verifies a logout token (section 2.6 of the
// specification), all but the jti replay check.
type LogoutVerifier interface {
	VerifyLogoutToken(ctx context.Context, raw string) (*signin.LogoutToken, error)
}

// maxLogoutBody bounds the back-channel logout request body: the largest
// logout token signin accepts, form-encoded, with room to spare.
const maxLogoutBody = 2 * signin.MaxLogoutTokenSize

// logoutEnabled reports whether the back-channel logout endpoint is served.
func (g *Gateway) logoutEnabled() bool {
	return g.cfg.BackchannelLogout != nil && g.cfg.BackchannelLogout.Verifier != nil
}

// backchannelLogout handles POST <prefix>/oidc/backchannel-logout
// (sections 2.5 to 2.8): a form with logout_token. It answers 200 once the
// session has ended, 400 with an OAuth error object otherwise (405 for
// another method), always with Cache-Control: no-store.
func (g *Gateway) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		logoutError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	refuse := func(reason, desc string, fields ...zap.Field) {
		g.log.Warn("back-channel logout refused", append(g.audit(audit.LogoutRefused, r, fields), zap.String("reason", reason), zap.Int("status", http.StatusBadRequest))...)
		logoutError(w, http.StatusBadRequest, "invalid_request", desc)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		refuse("content_type", "the request must be application/x-www-form-urlencoded")
		return
	}
	if r.ContentLength > maxLogoutBody {
		refuse("body_too_large", "the request is too large")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLogoutBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			refuse("body_too_large", "the request is too large")
		} else {
			refuse("unreadable_body", "the request could not be read")
		}
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		refuse("malformed_body", "the request body is not a form")
		return
	}
	raws := form["logout_token"]
	switch {
	case len(raws) == 0 || raws[0] == "":
		refuse("no_logout_token", "logout_token is missing")
		return
	case len(raws) > 1:
		refuse("repeated_logout_token", "logout_token is repeated")
		return
	}
	cfg := g.cfg.BackchannelLogout
	ctx := r.Context()
	lt, err := cfg.Verifier.VerifyLogoutToken(ctx, raws[0])
	if err != nil {
		if reason := signin.LogoutReasonOf(err); reason != "" {
			refuse(string(reason), "the logout token is not valid", zap.String("error", err.Error()))
			return
		}
		g.log.Error("back-channel logout failed", append(g.audit(audit.LogoutRefused, r, nil), zap.String("reason", "idp_unavailable"),
			zap.Int("status", http.StatusBadRequest), zap.Error(err))...)
		logoutError(w, http.StatusBadRequest, "temporarily_unavailable", "the logout could not be completed; try again later")
		return
	}
	who := []zap.Field{zap.String("iss", lt.Issuer), zap.String("sub", lt.Subject), zap.Bool("sid_present", lt.SessionID != "")}
	if lt.SessionID == "" && !cfg.AllSessions {
		// Section 2.7 makes a sub-only token end all of the user's
		// sessions; that is opt-in here.
		refuse("all_sessions_disabled", "logout tokens without sid are not accepted", who...)
		return
	}
	key := lt.ReplayKey()
	err = g.store.PutLoginState(ctx, key, store.LoginState{Data: []byte("{}"), ExpiresAt: lt.ReplayUntil})
	if errors.Is(err, store.ErrExists) {
		refuse("replay", "the logout token was already used", who...)
		return
	}
	if err != nil {
		g.logoutFailed(w, r, who, err)
		return
	}
	res, err := g.tokens.EndSession(ctx, lt.Issuer, lt.Subject, lt.SessionID, cfg.AllSessions)
	if err != nil {
		// Forget the jti, so the provider's retry of this token is honoured.
		if _, terr := g.store.TakeLoginState(context.WithoutCancel(ctx), key); terr != nil && !errors.Is(terr, store.ErrNotFound) {
			g.log.Error("forgetting the logout token's jti", zap.Error(terr))
		}
		if errors.Is(err, token.ErrAllSessionsOff) || errors.Is(err, token.ErrSessionUnnamed) {
			refuse("all_sessions_disabled", "logout tokens without sid are not accepted", who...)
			return
		}
		g.logoutFailed(w, r, who, err)
		return
	}
	g.log.Info("back-channel logout", append(g.audit(audit.LogoutBackchannel, r, who),
		zap.Bool("all_sessions", lt.SessionID == ""), zap.Int("tokens", res.Tokens), zap.Int("families", res.Families),
		zap.Int("enrollments", len(res.Enrollments)), zap.Strings("enrollment_ids", res.Enrollments))...)
	w.WriteHeader(http.StatusOK)
}

// logoutFailed answers a logout the store could not complete.
func (g *Gateway) logoutFailed(w http.ResponseWriter, r *http.Request, who []zap.Field, err error) {
	g.log.Error("back-channel logout failed", append(g.audit(audit.LogoutRefused, r, who), zap.String("reason", "store_unavailable"),
		zap.Int("status", http.StatusBadRequest), zap.Error(err))...)
	logoutError(w, http.StatusBadRequest, "temporarily_unavailable", "the logout could not be completed; try again later")
}

// logoutError writes the OAuth 2.0 error object of section 2.8.
func logoutError(w http.ResponseWriter, status int, code, desc string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
