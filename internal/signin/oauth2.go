package signin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/policy"
	"github.com/mdmauth/mdmauth/internal/ratelimit"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// DefaultRedirectURL is the redirect-url devices use for apple-oauth2.
const DefaultRedirectURL = "apple-remotemanagement-user-login:/oauth2/redirection"

// OAuth2 configures the gateway as the device's OAuth 2 authorization
// server (apple-oauth2). The user still signs in at the OIDC provider.
type OAuth2 struct {
	// ClientID the device is told to use (challenge client-id).
	ClientID string
	// RedirectURL the device is told to use (challenge redirect-url).
	RedirectURL string
	// Tokens issues codes and rotates tokens.
	Tokens *token.OAuth
	// Revalidate asks the provider for a refresh token at sign-in (scope
	// offline_access must be configured) and keeps it, encrypted with
	// Keyring, to re-check the user on device refreshes.
	Revalidate bool
	Keyring    *Keyring
	// MaxTokenBody bounds token requests (default 16 KiB).
	MaxTokenBody int64
	// FamilyLimit, when set, is asked before every refresh_token grant
	// with the token family the refresh token names (never the client's
	// address: devices share NATs). A refusal answers 429 with
	// Retry-After and touches nothing.
	FamilyLimit func(r *http.Request, familyID string) (retryAfter time.Duration, ok bool)
}

// oauthRequest is the device's authorization request, kept with the
// pending sign-in.
type oauthRequest struct {
	State     string `json:"state"`
	Redirect  string `json:"redirect"`
	ClientID  string `json:"client_id"`
	Challenge string `json:"challenge,omitempty"`
}

// ClaimRequirement requires a claim to equal one of Values (or, for a list
// claim such as groups, to contain one of them).
type ClaimRequirement struct {
	Claim  string
	Values []string
}

func (req ClaimRequirement) met(v any) bool {
	return policy.ClaimMatch{Claim: req.Claim, Values: req.Values}.Met(v)
}

func (s *Web) checkRequirements(ctx context.Context, id *Identity) *refusal {
	for _, req := range s.Require {
		v, err := id.Claim(ctx, req.Claim)
		if errors.Is(err, ErrUnavailable) {
			return &refusal{http.StatusServiceUnavailable, "idp_unavailable", "Sign-in is temporarily unavailable", "The organization's sign-in service cannot be reached. Please try again in a few minutes."}
		}
		if err != nil || !req.met(v) {
			return &refusal{http.StatusForbidden, "claim_required", "Your account cannot enroll devices", "Your account does not meet your organization's requirements for enrolling devices (" + sanitize(req.Claim) + "). Contact your IT administrator."}
		}
	}
	return nil
}

// Authorize handles the apple-oauth2 authorization request. It accepts
// exactly what the device sends (response_type=code, client_id,
// redirect_uri, scope, state, login_hint; PKCE S256 if present) plus the
// signed flow this server put in the authorization-url. An unknown client
// or redirect URI never redirects.
func (s *Web) Authorize(w http.ResponseWriter, r *http.Request, callbackURL string) {
	if s.OAuth2 == nil {
		http.NotFound(w, r)
		return
	}
	if len(r.URL.RawQuery) > 8192 {
		s.fail(w, r, http.StatusRequestURITooLong, "bad_request", "Sign-in failed", "The request was too long.", nil)
		return
	}
	q, err := ParseParams(r.URL.RawQuery, 32)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "bad_request", "Sign-in failed", "The sign-in request is malformed.", nil)
		return
	}
	bad := func(reason, msg string) {
		s.fail(w, r, http.StatusBadRequest, reason, "Sign-in failed", msg, nil)
	}
	switch {
	case q["client_id"] != s.OAuth2.ClientID:
		bad("unknown_client", "The sign-in request names an unknown client.")
		return
	case q["redirect_uri"] != s.OAuth2.RedirectURL:
		bad("unknown_redirect_uri", "The sign-in request names an unknown redirect address.")
		return
	case q["response_type"] != "code":
		bad("unsupported_response_type", "The sign-in request asks for an unsupported response type.")
		return
	case q["state"] == "" || len(q["state"]) > 512:
		bad("missing_state", "The sign-in request has no state.")
		return
	case !vschar(q["state"]):
		bad("bad_state", "The sign-in request's state has characters OAuth 2 does not allow.")
		return
	}
	oreq := &oauthRequest{State: q["state"], Redirect: q["redirect_uri"], ClientID: q["client_id"]}
	if ch, ok := q["code_challenge"]; ok {
		if q["code_challenge_method"] != "S256" || len(ch) != 43 || !token.WellFormed(ch) {
			bad("bad_pkce", "The sign-in request's PKCE challenge is not S256.")
			return
		}
		oreq.Challenge = ch
	}
	flow, err := s.Signer.Decode(q["flow"], s.now())
	if errors.Is(err, ErrKeyUnavailable) {
		s.fail(w, r, http.StatusServiceUnavailable, "store_unavailable", "Sign-in is temporarily unavailable", "Please try again in a few minutes.", err)
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusNotFound, "bad_link", "This sign-in link is not valid", "Start the enrollment again from Settings on your device.", err)
		return
	}
	ui := q["login_hint"]
	if len(ui) > 320 || !utf8.ValidString(ui) {
		ui = ""
	}
	s.begin(w, r, flow, ui, oreq, callbackURL)
}

// finishOAuth answers the provider's callback of an apple-oauth2 sign-in:
// a single-use code, 308 to the device's redirect-url.
func (s *Web) finishOAuth(w http.ResponseWriter, r *http.Request, st loginState, id *Identity, g token.Grant) {
	ctx := r.Context()
	cg := token.CodeGrant{
		Grant: g, ClientID: st.OAuth.ClientID, RedirectURI: st.OAuth.Redirect,
		CodeChallenge: st.OAuth.Challenge, SignedInAt: s.now(),
	}
	if st.Flow.Kind == KindReauth {
		cg.EnrollmentID = st.Flow.EnrollmentID
	}
	if s.OAuth2.Revalidate {
		rt := id.RefreshToken()
		if rt == "" {
			s.Log.Error("the identity provider issued no refresh token: re-validation needs scope offline_access (Google: also access_type=offline)")
			s.fail(w, r, http.StatusBadGateway, "no_idp_refresh_token", "Sign-in is not set up correctly", "The organization's sign-in service did not grant the access this server needs. Contact your IT administrator.", nil)
			return
		}
		ct, kid, err := s.OAuth2.Keyring.Seal([]byte(rt), aad(id.Issuer, id.Subject))
		if err != nil {
			s.fail(w, r, http.StatusInternalServerError, "internal", "Sign-in is not available", "Please try again later.", err)
			return
		}
		cg.IdPRefresh, cg.IdPKeyID = ct, kid
	}
	code, err := s.OAuth2.Tokens.NewCode(ctx, cg)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "store_unavailable", "Sign-in is temporarily unavailable", "Please try again in a few minutes.", err)
		return
	}
	loc := st.OAuth.Redirect
	if strings.Contains(loc, "?") {
		loc += "&"
	} else {
		loc += "?"
	}
	loc += "code=" + apple.Escape(code, "") + "&state=" + apple.Escape(st.OAuth.State, "")
	s.Log.Info("authorization code issued", append(audit.Fields(audit.CodeIssued, r, s.ClientIP), zap.String("iss", g.Issuer), zap.String("sub", g.Subject),
		zap.String("managed_apple_id", g.ManagedAppleID), zap.String("mode", g.Mode), zap.String("kind", st.Flow.Kind),
		zap.String("enrollment_id", st.Flow.EnrollmentID), zap.Bool("pkce", st.OAuth.Challenge != ""))...)
	SecurityHeaders(w.Header())
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusPermanentRedirect)
}

func aad(iss, sub string) []byte { return []byte("mdmauth-idp-refresh\x00" + iss + "\x00" + sub) }

// TokenEndpoint handles the device's token requests (authorization_code
// and refresh_token grants; public client, no client authentication).
func (s *Web) TokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if s.OAuth2 == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		tokenError(w, http.StatusMethodNotAllowed, token.ErrCodeInvalidRequest, "use POST")
		return
	}
	max := s.OAuth2.MaxTokenBody
	if max <= 0 {
		max = 16 << 10
	}
	p, ferr := readTokenForm(r.Header.Get("Content-Type"), http.MaxBytesReader(w, r.Body, max))
	if ferr != nil {
		tokenError(w, ferr.status, token.ErrCodeInvalidRequest, ferr.desc)
		return
	}
	if p["client_id"] != s.OAuth2.ClientID {
		s.Log.Info("token request refused", append(audit.Fields(audit.OAuthTokenRefused, r, s.ClientIP), zap.String("reason", "unknown_client"), zap.String("grant_type", sanitize(p["grant_type"])))...)
		tokenError(w, http.StatusUnauthorized, token.ErrCodeInvalidClient, "unknown client")
		return
	}
	ctx := r.Context()
	var (
		pair *token.TokenPair
		err  error
	)
	grant := p["grant_type"]
	switch grant {
	case "authorization_code":
		if p["code"] == "" || p["redirect_uri"] == "" {
			tokenError(w, http.StatusBadRequest, token.ErrCodeInvalidRequest, "code and redirect_uri are required")
			return
		}
		// Not retried: the first attempt may have used the code, and a
		// second would look like a replay.
		pair, err = s.OAuth2.Tokens.Exchange(ctx, p["code"], p["client_id"], p["redirect_uri"], p["code_verifier"])
	case "refresh_token":
		if p["refresh_token"] == "" {
			tokenError(w, http.StatusBadRequest, token.ErrCodeInvalidRequest, "refresh_token is required")
			return
		}
		if lim := s.OAuth2.FamilyLimit; lim != nil {
			fam, _, _ := strings.Cut(p["refresh_token"], ".")
			if wait, ok := lim(r, fam); !ok {
				w.Header().Set("Retry-After", ratelimit.Seconds(wait))
				tokenError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many requests; try again later")
				return
			}
		}
		err = retry(ctx, func() error {
			var e error
			pair, e = s.OAuth2.Tokens.Refresh(ctx, p["refresh_token"], p["client_id"])
			return e
		})
	case "":
		tokenError(w, http.StatusBadRequest, token.ErrCodeInvalidRequest, "grant_type is required")
		return
	default:
		tokenError(w, http.StatusBadRequest, token.ErrCodeUnsupportedGrantType, "unsupported grant_type")
		return
	}
	var oe *token.OAuthError
	switch {
	case errors.As(err, &oe):
		s.Log.Info("token request refused", append(audit.Fields(audit.OAuthTokenRefused, r, s.ClientIP), zap.String("grant_type", grant), zap.String("reason", oe.Reason))...)
		tokenError(w, http.StatusBadRequest, oe.Code, oe.Description)
		return
	case err != nil:
		s.Log.Error("token request failed", zap.String("grant_type", grant), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		tokenError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later")
		return
	}
	msg, event := "token refreshed", audit.OAuthTokenRefreshed
	if grant == "authorization_code" {
		msg, event = "token issued", audit.OAuthTokenIssued
	}
	s.Log.Info(msg, append(audit.Fields(event, r, s.ClientIP), zap.String("token_id", pair.Access.ID()), zap.String("family_id", pair.Family.ID),
		zap.String("iss", pair.Family.Issuer), zap.String("sub", pair.Family.Subject),
		zap.String("managed_apple_id", pair.Family.ManagedAppleID), zap.String("mode", pair.Family.Mode),
		zap.String("enrollment_id", pair.Access.EnrollmentID), zap.Time("expires_at", pair.Access.ExpiresAt))...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}{pair.AccessToken, "Bearer", pair.ExpiresIn, pair.RefreshToken})
}

// tokenFormError refuses a token request before its parameters are read:
// an invalid_request with status and description.
type tokenFormError struct {
	status int
	desc   string
}

// readTokenForm reads a token request's parameters: the Content-Type must
// be application/x-www-form-urlencoded (checked before body is read), and
// body, which the caller bounds with http.MaxBytesReader, a form of at most
// 16 parameters decoded by ParseParams. A body past its bound is 413, any
// other refusal 400.
func readTokenForm(contentType string, body io.Reader) (Params, *tokenFormError) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, &tokenFormError{http.StatusBadRequest, "Content-Type must be application/x-www-form-urlencoded"}
	}
	b, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &tokenFormError{http.StatusRequestEntityTooLarge, "request too large"}
		}
		return nil, &tokenFormError{http.StatusBadRequest, "cannot read the request"}
	}
	p, err := ParseParams(string(b), 16)
	if err != nil {
		return nil, &tokenFormError{http.StatusBadRequest, "malformed or repeated parameters"}
	}
	return p, nil
}

// vschar reports whether s has only the characters RFC 6749 allows in
// state (%x20-7E).
func vschar(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// retry runs fn up to three times while it fails with a store error that
// is not a refusal: every non-200 from the token endpoint prompts the user.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for i := 0; i < 3; i++ {
		err = fn()
		var oe *token.OAuthError
		if err == nil || errors.As(err, &oe) || errors.Is(err, store.ErrClosed) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(50*(i+1)) * time.Millisecond):
		}
	}
	return err
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, desc})
}

// Revalidator re-checks a family's user at the provider with the kept
// refresh token: a refusal or a failed claim requirement revokes the
// family; an outage lets the refresh go on.
func (s *Web) Revalidator() token.Revalidator {
	return func(ctx context.Context, f *store.Family) (*token.Revalidation, error) {
		if len(f.IdPRefresh) == 0 {
			return nil, &token.Rejection{Reason: "idp_no_refresh_token"}
		}
		rt, err := s.OAuth2.Keyring.Open(f.IdPRefresh, f.IdPKeyID, aad(f.Issuer, f.Subject))
		if err != nil {
			s.Log.Error("cannot decrypt the kept provider refresh token", zap.String("family_id", f.ID), zap.String("key_id", f.IdPKeyID), zap.Error(err))
			return nil, &token.Rejection{Reason: "idp_token_undecryptable"}
		}
		id, err := s.RP.Refresh(ctx, string(rt), f.Subject)
		switch {
		case errors.Is(err, ErrUnavailable):
			s.Log.Warn("identity provider re-validation postponed", zap.String("event", audit.IdPPostponed), zap.String("family_id", f.ID), zap.Error(err))
			return nil, err
		case err != nil:
			s.Log.Info("identity provider refused the user", zap.String("event", audit.IdPRefused), zap.String("family_id", f.ID), zap.String("sub", f.Subject), zap.Error(err))
			return nil, &token.Rejection{Reason: "idp_refused"}
		}
		if ref := s.checkRequirements(ctx, id); ref != nil {
			if ref.status == http.StatusServiceUnavailable {
				return nil, ErrUnavailable
			}
			s.Log.Info("user no longer meets the claim requirements", zap.String("event", audit.IdPClaimsFailed), zap.String("family_id", f.ID), zap.String("sub", f.Subject))
			return nil, &token.Rejection{Reason: "claim_required"}
		}
		res := &token.Revalidation{}
		if nrt := id.RefreshToken(); nrt != "" && nrt != string(rt) {
			ct, kid, err := s.OAuth2.Keyring.Seal([]byte(nrt), aad(f.Issuer, f.Subject))
			if err != nil {
				return nil, err
			}
			res.IdPRefresh, res.IdPKeyID = ct, kid
		}
		s.Log.Info("identity provider re-validated the user", zap.String("event", audit.IdPRevalidated), zap.String("family_id", f.ID), zap.String("sub", f.Subject))
		return res, nil
	}
}
