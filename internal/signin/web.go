package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/policy"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// CookieName binds a pending sign-in to the browser that started it.
const CookieName = "__Host-mdmauth-login"

// Claims are the rules that turn a verified identity into a Managed Apple ID.
type Claims struct {
	// ManagedAppleID is the claim holding the Managed Apple ID (default email).
	ManagedAppleID string
	// RequireEmailVerified requires email_verified=true when the claim is email.
	RequireEmailVerified bool
	// RequireIdentifierMatch requires the identifier typed on the device to
	// equal the Managed Apple ID (case-insensitively).
	RequireIdentifierMatch bool
	// Template, when set, builds the Managed Apple ID from claims, e.g.
	// "{claim.preferred_username}@appleid.example.com"; ManagedAppleID is
	// then unused.
	Template string
}

// Web is the apple-as-web sign-in: Start opens it, Callback finishes it.
type Web struct {
	RP     *RP
	Tokens *token.Manager
	Store  store.Store
	Signer Signer
	Claims Claims
	// ReauthMaxAge, when set, asks the provider for max_age instead of
	// prompt=login on re-authentication.
	ReauthMaxAge time.Duration
	// LoginTTL bounds a pending sign-in (default 10 minutes).
	LoginTTL time.Duration
	// OAuth2, when set, serves the apple-oauth2 method.
	OAuth2 *OAuth2
	// ClientIP gives the client address for audit entries (optional).
	ClientIP audit.ClientIP
	// Require lists claims the user must have, checked at sign-in and at
	// every identity-provider re-validation.
	Require []ClaimRequirement
	// Policy, when set, re-checks who may enroll how with the user's
	// claims: a deny, a mode other than discovery announced, or a user at
	// the device limit ends the sign-in with no token.
	Policy *policy.Policy
	Now    func() time.Time
	Rand   io.Reader
	Log    *zap.Logger
}

func (s *Web) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Web) random(n int) (string, error) {
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

type loginState struct {
	Flow           Flow      `json:"flow"`
	Nonce          string    `json:"nonce"`
	Verifier       string    `json:"verifier"`
	Binding        []byte    `json:"binding"`
	UserIdentifier string    `json:"ui,omitempty"`
	Created        time.Time `json:"created"`
	// OAuth is set for an apple-oauth2 authorization request.
	OAuth *oauthRequest `json:"oauth,omitempty"`
}

// Start handles GET <sign-in url>: it checks the signed flow, records the
// pending sign-in bound to this browser and redirects to the provider.
// callbackURL is the redirect URI registered at the provider.
func (s *Web) Start(w http.ResponseWriter, r *http.Request, flowValue, callbackURL string) {
	if len(r.URL.RawQuery) > 8192 {
		s.fail(w, r, http.StatusRequestURITooLong, "bad_request", "Sign-in failed", "The request was too long.", nil)
		return
	}
	now := s.now()
	flow, err := s.Signer.Decode(flowValue, now)
	if errors.Is(err, ErrKeyUnavailable) {
		s.fail(w, r, http.StatusServiceUnavailable, "store_unavailable", "Sign-in is temporarily unavailable", "Please try again in a few minutes.", err)
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusNotFound, "bad_link", "This sign-in link is not valid", "Start the enrollment again from Settings on your device.", err)
		return
	}
	// The device replaces the url's query with ?user-identifier=<typed>.
	var ui string
	// RFC 3986 decoding: the device sends '+' unescaped (a+b@example.com).
	q, _ := ParseParams(r.URL.RawQuery, 16)
	// Discovery accepts only valid UTF-8; anything else would be stored
	// altered (JSON) and differ from the login_hint the provider got.
	if raw := q["user-identifier"]; raw != "" && len(raw) <= 320 && utf8.ValidString(raw) {
		ui = raw
	}
	s.begin(w, r, flow, ui, nil, callbackURL)
}

// begin records the pending sign-in, bound to this browser, and redirects
// to the provider.
func (s *Web) begin(w http.ResponseWriter, r *http.Request, flow Flow, ui string, oreq *oauthRequest, callbackURL string) {
	now := s.now()
	if flow.Kind == KindReauth && flow.EnrollmentID != "" {
		if page := s.checkEnrollment(r.Context(), flow.EnrollmentID, nil); page != nil {
			s.fail(w, r, page.status, page.reason, page.title, page.msg, nil)
			return
		}
	}
	state, err1 := s.random(32)
	nonce, err2 := s.random(32)
	binding, err3 := s.random(32)
	if err := errors.Join(err1, err2, err3); err != nil {
		s.fail(w, r, http.StatusInternalServerError, "internal", "Sign-in is not available", "Please try again later.", err)
		return
	}
	verifier := oauth2.GenerateVerifier()
	authURL, err := s.RP.AuthCodeURL(r.Context(), AuthRequest{
		RedirectURL: callbackURL, State: state, Nonce: nonce, Verifier: verifier,
		LoginHint: ui, Fresh: flow.Kind == KindReauth, MaxAge: s.ReauthMaxAge,
	})
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "idp_unavailable", "Sign-in is temporarily unavailable", "The organization's sign-in service cannot be reached. Please try again in a few minutes.", err)
		return
	}
	bh := sha256.Sum256([]byte(binding))
	data, _ := json.Marshal(loginState{Flow: flow, Nonce: nonce, Verifier: verifier, Binding: bh[:], UserIdentifier: ui, Created: now, OAuth: oreq})
	ttl := s.LoginTTL
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	if err := s.Store.PutLoginState(r.Context(), state, store.LoginState{Data: data, ExpiresAt: now.Add(ttl)}); err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "store_unavailable", "Sign-in is temporarily unavailable", "Please try again in a few minutes.", err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: binding, Path: "/", MaxAge: int(ttl / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	SecurityHeaders(w.Header())
	s.Log.Info("sign-in started", append(audit.Fields(audit.SignInStarted, r, s.ClientIP), zap.String("kind", flow.Kind), zap.String("mode", flow.Mode), zap.Bool("oauth2", oreq != nil),
		zap.String("model_family", flow.ModelFamily), zap.String("user_identifier", ui),
		zap.String("enrollment_id", flow.EnrollmentID))...)
	http.Redirect(w, r, authURL, http.StatusFound)
}

type refusal struct {
	status             int
	reason, title, msg string
}

// checkEnrollment refuses a sign-in for an enrollment that may not get a
// token; with a user, it also refuses someone other than the owner.
func (s *Web) checkEnrollment(ctx context.Context, id string, who *Identity) *refusal {
	e, err := s.Store.Enrollment(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return &refusal{http.StatusServiceUnavailable, "store_unavailable", "Sign-in is temporarily unavailable", "Please try again in a few minutes."}
	}
	switch e.State {
	case store.StateBlocked:
		return &refusal{http.StatusForbidden, "enrollment_blocked", "This device is blocked", "Your organization has blocked this device. Contact your IT administrator."}
	case store.StateOffboarding, store.StateRemoved:
		return &refusal{http.StatusForbidden, "enrollment_ending", "This device is being removed from management", "Your organization is removing this device from management; it cannot sign in again. Contact your IT administrator."}
	}
	if who != nil && e.Issuer != "" && (e.Issuer != who.Issuer || e.Subject != who.Subject) {
		return &refusal{http.StatusForbidden, "wrong_user", "This device is enrolled by another user", "Only the person who enrolled this device can sign in on it. Sign in with that account, or contact your IT administrator."}
	}
	return nil
}

// Callback handles the provider's redirect: it takes the pending sign-in
// once, checks the browser binding, redeems the code, verifies the ID token
// and mints the access token, answered with a 308 to the device's callback
// scheme. On any failure nothing is stored and an error page is shown.
func (s *Web) Callback(w http.ResponseWriter, r *http.Request, callbackURL string) {
	if len(r.URL.RawQuery) > 8192 {
		s.fail(w, r, http.StatusRequestURITooLong, "bad_request", "Sign-in failed", "The request was too long.", nil)
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		s.fail(w, r, http.StatusBadRequest, "missing_state", "Sign-in failed", "The sign-in response is incomplete. Start again from Settings on your device.", nil)
		return
	}
	ctx := r.Context()
	ls, err := s.Store.TakeLoginState(ctx, state)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, http.StatusBadRequest, "unknown_state", "This sign-in has expired or was already used", "Start again from Settings on your device.", nil)
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "store_unavailable", "Sign-in is temporarily unavailable", "Please try again in a few minutes.", err)
		return
	}
	var st loginState
	if err := json.Unmarshal(ls.Data, &st); err != nil {
		s.fail(w, r, http.StatusBadRequest, "unknown_state", "This sign-in has expired or was already used", "Start again from Settings on your device.", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	c, err := r.Cookie(CookieName)
	if err != nil || subtle.ConstantTimeCompare(sha256Sum(c.Value), st.Binding) != 1 {
		s.fail(w, r, http.StatusBadRequest, "browser_mismatch", "Sign-in failed", "This sign-in was started in another browser. Start again from Settings on your device.", nil)
		return
	}
	if e := q.Get("error"); e != "" {
		s.fail(w, r, http.StatusForbidden, "idp_error", "Sign-in was not completed", "The identity provider did not sign you in ("+sanitize(e)+").", nil)
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		s.fail(w, r, http.StatusBadRequest, "missing_code", "Sign-in failed", "The sign-in response is incomplete. Start again from Settings on your device.", nil)
		return
	}
	id, err := s.RP.Exchange(ctx, code, st.Verifier, callbackURL, st.Nonce)
	if err != nil {
		s.idpFail(w, r, err)
		return
	}
	if st.Flow.Kind == KindReauth && s.ReauthMaxAge == 0 {
		// prompt=login was requested: the provider must have authenticated
		// the user during this sign-in, not earlier.
		if id.AuthTime.IsZero() || id.AuthTime.Before(st.Created.Add(-time.Minute)) {
			s.fail(w, r, http.StatusForbidden, "stale_login", "Please sign in again", "The identity provider did not confirm a new sign-in. Start again from Settings on your device.", nil)
			return
		}
	} else if st.Flow.Kind == KindReauth && s.ReauthMaxAge > 0 {
		if id.AuthTime.IsZero() || s.now().Sub(id.AuthTime) > s.ReauthMaxAge+time.Minute {
			s.fail(w, r, http.StatusForbidden, "stale_login", "Please sign in again", "The identity provider did not confirm a recent sign-in. Start again from Settings on your device.", nil)
			return
		}
	}
	maid, ref := s.managedAppleID(ctx, id, st.UserIdentifier)
	if ref == nil {
		ref = s.checkRequirements(ctx, id)
	}
	if ref != nil {
		s.fail(w, r, ref.status, ref.reason, ref.title, ref.msg, nil)
		return
	}
	mode := st.Flow.Mode
	if st.Flow.Kind == KindReauth && st.Flow.EnrollmentID != "" {
		if ref := s.checkEnrollment(ctx, st.Flow.EnrollmentID, id); ref != nil {
			s.fail(w, r, ref.status, ref.reason, ref.title, ref.msg, nil)
			return
		}
		if e, err := s.Store.Enrollment(ctx, st.Flow.EnrollmentID); err == nil {
			if e.Mode != "" {
				mode = e.Mode
			}
			// AssignedManagedAppleID may never change for an enrollment.
			if e.ManagedAppleID != "" && e.ManagedAppleID != maid {
				s.Log.Warn("the Managed Apple ID mapping changed; the enrollment keeps its own",
					zap.String("event", audit.ManagedAppleIDKept), zap.String("enrollment_id", e.ID), zap.String("enrollment_managed_apple_id", e.ManagedAppleID),
					zap.String("mapped_managed_apple_id", maid))
				maid = e.ManagedAppleID
			}
		}
	}
	grant := token.Grant{
		Issuer: id.Issuer, Subject: id.Subject, SessionID: id.SessionID,
		UserIdentifier: st.UserIdentifier, ManagedAppleID: maid,
		Mode: mode, ModelFamily: st.Flow.ModelFamily,
	}
	if s.Policy != nil {
		if ref := s.applyPolicy(ctx, st, id, maid, &grant); ref != nil {
			s.fail(w, r, ref.status, ref.reason, ref.title, ref.msg, nil)
			return
		}
	}
	if st.OAuth != nil {
		s.finishOAuth(w, r, st, id, grant)
		return
	}
	raw, t, err := s.Tokens.Issue(ctx, grant)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "store_unavailable", "Sign-in is temporarily unavailable", "Please try again in a few minutes.", err)
		return
	}
	s.Log.Info("token issued", append(audit.Fields(audit.TokenIssued, r, s.ClientIP), zap.String("token_id", t.ID()), zap.String("iss", t.Issuer), zap.String("sub", t.Subject),
		zap.String("managed_apple_id", t.ManagedAppleID), zap.String("mode", t.Mode), zap.String("kind", st.Flow.Kind),
		zap.String("enrollment_id", st.Flow.EnrollmentID), zap.Time("expires_at", t.ExpiresAt))...)
	SecurityHeaders(w.Header())
	w.Header().Set("Location", apple.AuthenticationResultsURL(raw))
	w.WriteHeader(http.StatusPermanentRedirect)
}

func (s *Web) managedAppleID(ctx context.Context, id *Identity, typed string) (string, *refusal) {
	claim := s.Claims.ManagedAppleID
	if claim == "" {
		claim = "email"
	}
	if s.Claims.Template != "" {
		return s.templatedAppleID(ctx, id, typed)
	}
	v, err := id.Claim(ctx, claim)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return "", &refusal{http.StatusServiceUnavailable, "idp_unavailable", "Sign-in is temporarily unavailable", "The organization's sign-in service cannot be reached. Please try again in a few minutes."}
		}
		return "", &refusal{http.StatusForbidden, "claims_invalid", "Sign-in failed", "Your account's details could not be verified. Contact your IT administrator."}
	}
	maid, _ := v.(string)
	if maid == "" {
		return "", &refusal{http.StatusForbidden, "no_managed_apple_id", "Your account cannot enroll devices", "Your account has no " + claim + " to use as Managed Apple Account. Contact your IT administrator."}
	}
	if claim == "email" && s.Claims.RequireEmailVerified {
		ev, err := id.Claim(ctx, "email_verified")
		if errors.Is(err, ErrUnavailable) {
			return "", &refusal{http.StatusServiceUnavailable, "idp_unavailable", "Sign-in is temporarily unavailable", "The organization's sign-in service cannot be reached. Please try again in a few minutes."}
		}
		if err != nil {
			return "", &refusal{http.StatusForbidden, "claims_invalid", "Sign-in failed", "Your account's details could not be verified. Contact your IT administrator."}
		}
		if !truthy(ev) {
			return "", &refusal{http.StatusForbidden, "email_unverified", "Your account cannot enroll devices", "Your email address is not verified at the identity provider. Contact your IT administrator."}
		}
	}
	if !isAddress(maid) {
		return "", &refusal{http.StatusForbidden, "bad_managed_apple_id", "Your account cannot enroll devices", "Your account's " + claim + " is not a valid Managed Apple Account. Contact your IT administrator."}
	}
	if s.Claims.RequireIdentifierMatch && !strings.EqualFold(typed, maid) {
		return "", &refusal{http.StatusForbidden, "identifier_mismatch", "Signed in with a different account", "You signed in with an account other than the one you typed on your device. Start again and sign in as " + sanitize(typed) + "."}
	}
	return maid, nil
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true"
	}
	return false
}

func isAddress(s string) bool {
	if len(s) > 254 || strings.ContainsAny(s, " \t\r\n<>\"") {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return false
	}
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && strings.Contains(domain, ".") && !strings.Contains(domain, "@")
}

func (s *Web) idpFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrUnavailable):
		s.fail(w, r, http.StatusServiceUnavailable, "idp_unavailable", "Sign-in is temporarily unavailable", "The organization's sign-in service cannot be reached. Please try again in a few minutes.", err)
	case errors.Is(err, ErrRejected):
		s.fail(w, r, http.StatusBadRequest, "code_rejected", "Sign-in failed", "The identity provider did not accept this sign-in. Start again from Settings on your device.", err)
	default:
		s.fail(w, r, http.StatusForbidden, "id_token_invalid", "Sign-in failed", "The sign-in could not be verified. Contact your IT administrator.", err)
	}
}

func (s *Web) fail(w http.ResponseWriter, r *http.Request, status int, reason, title, msg string, err error) {
	fields := append(audit.Fields(audit.SignInFailed, r, s.ClientIP), zap.String("reason", reason), zap.Int("status", status))
	if err != nil {
		fields = append(fields, zap.String("error", err.Error()))
	}
	s.Log.Warn("sign-in failed", fields...)
	Page(w, status, title, msg, reason)
}

func sha256Sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// sanitize keeps a short, printable, ASCII excerpt of untrusted text.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
	}
	return b.String()
}
