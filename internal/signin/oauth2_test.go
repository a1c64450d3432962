package signin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
	"github.com/mdmauth/mdmauth/internal/token"
)

// The whole apple-oauth2 sign-in as the device does it: authorization
// request, the provider, the 308 with code and state, the token request
// and a refresh, each encoded exactly as iOS does.
func TestOAuth2DeviceSignIn(t *testing.T) {
	e := newOAuthEnv(t, false)
	w := e.authorize(e.deviceQuery(Flow{Kind: KindEnroll, Mode: "adde", ModelFamily: "iPad"}, "alice@example.com").String())
	if w.Code != http.StatusFound {
		t.Fatalf("authorize: status %d, want 302; body: %s", w.Code, w.Body)
	}
	authURL, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := authURL.Scheme + "://" + authURL.Host + authURL.Path; got != e.idp.URL(fakeidp.Authorize) {
		t.Fatalf("authorize redirects to %s, want the provider", got)
	}
	q := authURL.Query()
	// The provider sees the gateway as its client, never the device's
	// client id, redirect URL or state.
	if q.Get("client_id") != e.idp.ClientID || q.Get("redirect_uri") != callbackURL || q.Get("state") == deviceState || q.Get("login_hint") != "alice@example.com" {
		t.Errorf("provider authorization request %v", q)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != CookieName {
		t.Fatalf("authorize cookies %v", cookies)
	}
	st, _ := e.loginStateOf(q.Get("state"))
	if st.OAuth == nil || *st.OAuth != (oauthRequest{State: deviceState, Redirect: DefaultRedirectURL, ClientID: deviceClientID}) {
		t.Errorf("stored authorization request %+v", st.OAuth)
	}
	if st.UserIdentifier != "alice@example.com" || st.Flow.Mode != "adde" || st.Flow.ModelFamily != "iPad" {
		t.Errorf("stored sign-in %+v", st)
	}

	cb := e.callback(e.follow(authURL).RawQuery, cookies[0])
	code := e.codeIssued(cb, deviceState)
	if want := "apple-remotemanagement-user-login:/oauth2/redirection?code=" + code + "&state=" + deviceState; cb.Header().Get("Location") != want {
		t.Errorf("Location %q, want %q", cb.Header().Get("Location"), want)
	}
	codes := e.st.codeList()
	if len(codes) != 1 {
		t.Fatalf("%d codes stored, want 1", len(codes))
	}
	c := codes[0]
	now := e.clock.Now()
	if c.Hash != token.HashOf(code) || c.ClientID != deviceClientID || c.RedirectURI != DefaultRedirectURL || c.CodeChallenge != "" ||
		c.Issuer != e.idp.Issuer || c.Subject != "alice-sub" || c.ManagedAppleID != "alice@example.com" || c.SessionID != "sid-alice" ||
		c.UserIdentifier != "alice@example.com" || c.Mode != "adde" || c.ModelFamily != "iPad" || c.EnrollmentID != "" ||
		!c.SignedInAt.Equal(now) || len(c.IdPRefresh) != 0 || !c.ExpiresAt.Equal(now.Add(token.DefaultCodeTTL)) {
		t.Errorf("stored code %+v", c)
	}
	if logged := e.logs.FilterMessage("authorization code issued").All(); len(logged) != 1 || logged[0].ContextMap()["sub"] != "alice-sub" {
		t.Errorf("code issuance log %v", logged)
	}

	// The token request, as iOS sends it.
	e.clock.Advance(10 * time.Second)
	tr := e.tokensIssued(e.tokenReq(iosCodeBody(code)))
	if tr.ExpiresIn != int64(oauthAccessTTL/time.Second) {
		t.Errorf("expires_in %d, want %d", tr.ExpiresIn, int64(oauthAccessTTL/time.Second))
	}
	rec, err := e.web.OAuth2.Tokens.M.Lookup(e.ctx, tr.AccessToken)
	if err != nil {
		t.Fatalf("the access token is not usable: %v", err)
	}
	if rec.Subject != "alice-sub" || rec.ManagedAppleID != "alice@example.com" || rec.Mode != "adde" || rec.FamilyID == "" {
		t.Errorf("access token record %+v", rec)
	}
	f := e.familyOf(tr.RefreshToken)
	if f.ID != rec.FamilyID || f.ClientID != deviceClientID || !f.SignedInAt.Equal(now) {
		t.Errorf("family %+v", f)
	}
	if logged := e.logs.FilterMessage("token issued").All(); len(logged) != 1 || logged[0].ContextMap()["token_id"] != rec.ID() {
		t.Errorf("token issued log %v", logged)
	}

	// A refresh, as iOS sends it: a new pair, the old access token stays
	// valid until it expires, and a refresh token on every response.
	e.clock.Advance(30 * time.Minute)
	tr2 := e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	if tr2.AccessToken == tr.AccessToken || tr2.RefreshToken == tr.RefreshToken {
		t.Errorf("the refresh did not rotate the tokens")
	}
	rec2, err := e.web.OAuth2.Tokens.M.Lookup(e.ctx, tr2.AccessToken)
	if err != nil || rec2.FamilyID != rec.FamilyID {
		t.Errorf("refreshed access token: %+v, %v", rec2, err)
	}
	e.tokensIssued(e.tokenReq(iosRefreshBody(tr2.RefreshToken)))
	if logged := e.logs.FilterMessage("token refreshed").All(); len(logged) != 2 {
		t.Errorf("%d token refreshed log lines, want 2", len(logged))
	}
	if e.idp.Refreshes() != 0 {
		t.Errorf("the provider was asked to refresh without re-validation")
	}
}

// An OAuth 2 re-authentication binds the code to the enrollment.
func TestOAuth2Reauth(t *testing.T) {
	e := newOAuthEnv(t, false)
	e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", "alice@example.com", "adde"))
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(reauthFlow, "alice@example.com")), deviceState)
	c := e.st.codeList()[0]
	if c.EnrollmentID != reauthFlow.EnrollmentID || c.Mode != "adde" {
		t.Errorf("code for a re-authentication: enrollment %q mode %q", c.EnrollmentID, c.Mode)
	}
	e.tokensIssued(e.tokenReq(iosCodeBody(code)))

	// Someone else cannot re-authenticate the device.
	e.idp.Script(fakeidp.Login{Subject: "bob-sub", IDClaims: map[string]any{"email": "bob@example.com", "email_verified": true}})
	e.refused(e.deviceSignIn(e.deviceQuery(reauthFlow, "bob@example.com")), http.StatusForbidden, "wrong_user", 1)
	if n := len(e.st.codeList()); n != 1 {
		t.Errorf("%d codes after a refused sign-in, want 1", n)
	}
}

// Every refusal of an authorization request is an HTML page: an unknown
// client or redirect URI never redirects, and nothing is stored or sent to
// the provider.
func TestAuthorizeRefusals(t *testing.T) {
	e := newOAuthEnv(t, false)
	base := e.deviceQuery(enrollFlow, "alice@example.com")
	old := enrollFlow
	old.IssuedAt = e.clock.Now().Add(-8 * 24 * time.Hour)
	challenge := s256("a-verifier-of-the-right-length-0123456789-abcdefghijklmnop")
	for name, c := range map[string]struct {
		q      wire
		status int
		reason string
	}{
		"unknown client":                 {base.with("client_id", "another-client"), 400, "unknown_client"},
		"client in another case":         {base.with("client_id", "MDMAUTH-DEVICE"), 400, "unknown_client"},
		"no client":                      {base.without("client_id"), 400, "unknown_client"},
		"empty client":                   {base.with("client_id", ""), 400, "unknown_client"},
		"unknown client and redirect":    {base.with("client_id", "x").with("redirect_uri", "https://evil.example.com/cb"), 400, "unknown_client"},
		"unknown redirect":               {base.with("redirect_uri", "https://evil.example.com/cb"), 400, "unknown_redirect_uri"},
		"redirect with a longer path":    {base.with("redirect_uri", DefaultRedirectURL+"/x"), 400, "unknown_redirect_uri"},
		"redirect with a query":          {base.with("redirect_uri", DefaultRedirectURL+"%3Fx%3D1"), 400, "unknown_redirect_uri"},
		"redirect in another case":       {base.with("redirect_uri", "Apple-RemoteManagement-User-Login:/oauth2/redirection"), 400, "unknown_redirect_uri"},
		"redirect with authority":        {base.with("redirect_uri", "apple-remotemanagement-user-login://oauth2/redirection"), 400, "unknown_redirect_uri"},
		"no redirect":                    {base.without("redirect_uri"), 400, "unknown_redirect_uri"},
		"response_type token":            {base.with("response_type", "token"), 400, "unsupported_response_type"},
		"response_type code id_token":    {base.with("response_type", "code%20id_token"), 400, "unsupported_response_type"},
		"response_type in another case":  {base.with("response_type", "Code"), 400, "unsupported_response_type"},
		"no response_type":               {base.without("response_type"), 400, "unsupported_response_type"},
		"no state":                       {base.without("state"), 400, "missing_state"},
		"empty state":                    {base.with("state", ""), 400, "missing_state"},
		"state of 513 bytes":             {base.with("state", strings.Repeat("A", 513)), 400, "missing_state"},
		"PKCE plain":                     {base.plus("code_challenge", challenge).plus("code_challenge_method", "plain"), 400, "bad_pkce"},
		"PKCE without method (plain)":    {base.plus("code_challenge", challenge), 400, "bad_pkce"},
		"PKCE method in another case":    {base.plus("code_challenge", challenge).plus("code_challenge_method", "s256"), 400, "bad_pkce"},
		"PKCE challenge too short":       {base.plus("code_challenge", challenge[:42]).plus("code_challenge_method", "S256"), 400, "bad_pkce"},
		"PKCE challenge too long":        {base.plus("code_challenge", challenge+"A").plus("code_challenge_method", "S256"), 400, "bad_pkce"},
		"PKCE challenge padded":          {base.plus("code_challenge", challenge[:42]+"%3D").plus("code_challenge_method", "S256"), 400, "bad_pkce"},
		"PKCE challenge not base64url":   {base.plus("code_challenge", "+"+challenge[1:]).plus("code_challenge_method", "S256"), 400, "bad_pkce"},
		"PKCE challenge empty":           {base.plus("code_challenge", "").plus("code_challenge_method", "S256"), 400, "bad_pkce"},
		"repeated state":                 {base.plus("state", deviceState), 400, "bad_request"},
		"repeated client_id":             {base.plus("client_id", deviceClientID), 400, "bad_request"},
		"bad escape":                     {base.with("login_hint", "alice%zz"), 400, "bad_request"},
		"truncated escape":               {base.with("login_hint", "alice%4"), 400, "bad_request"},
		"escaped control character":      {base.with("state", deviceState+"%0A"), 400, "bad_request"},
		"escaped NUL in a name":          {base.plus("x%00", "1"), 400, "bad_request"},
		"too many parameters":            {append(base, manyParams(26)...), 400, "bad_request"},
		"no flow":                        {base.without("flow"), 404, "bad_link"},
		"empty flow":                     {base.with("flow", ""), 404, "bad_link"},
		"flow with another's signature":  {base.with("flow", swapSignature(e.link(Flow{Kind: KindEnroll, Mode: "adde"}), e.link(enrollFlow))), 404, "bad_link"},
		"flow signed with another key":   {base.with("flow", forgedFlow(t)), 404, "bad_link"},
		"expired flow":                   {base.with("flow", e.link(old)), 404, "bad_link"},
		"query over 8 KiB":               {base.with("login_hint", strings.Repeat("a", 8192)), 414, "bad_request"},
		"unknown client, overlong state": {base.with("client_id", "x").with("state", strings.Repeat("A", 600)), 400, "unknown_client"},
	} {
		t.Run(name, func(t *testing.T) {
			logins, hits := e.st.loginCount(), e.idp.Hits(fakeidp.Discovery)
			w := e.authorize(c.q.String())
			wantPage(t, w, c.status, c.reason)
			if len(w.Header().Values("Location")) != 0 {
				t.Errorf("a refused authorization request has a Location header")
			}
			if sc := w.Header().Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("a refused authorization request sets cookies: %q", sc)
			}
			if strings.Contains(w.Body.String(), "evil.example.com") {
				t.Errorf("the page shows the unknown redirect URI")
			}
			if e.st.loginCount() != logins || e.idp.Hits(fakeidp.Discovery) != hits {
				t.Errorf("a refused authorization request stored a login state or reached the provider")
			}
		})
	}
	if e.idp.Hits(fakeidp.Authorize) != 0 || len(e.st.codeList()) != 0 || e.st.tokenCount() != 0 {
		t.Errorf("refused requests reached the provider or stored codes or tokens")
	}
	// Refusals are logged with their reason.
	if n := len(e.logs.FilterMessage("sign-in failed").FilterField(zap.String("reason", "unknown_redirect_uri")).All()); n == 0 {
		t.Errorf("unknown redirect URI refusals are not logged")
	}
}

// manyParams returns n distinct harmless parameters.
func manyParams(n int) wire {
	var q wire
	for i := range n {
		q = append(q, param{"x" + strings.Repeat("x", i), "1"})
	}
	return q
}

// swapSignature returns payload's flow with the signature of sigOf.
func swapSignature(payloadOf, sigOf string) string {
	p, _, _ := strings.Cut(payloadOf, ".")
	_, sig, _ := strings.Cut(sigOf, ".")
	return p + "." + sig
}

func forgedFlow(t *testing.T) string {
	t.Helper()
	f := enrollFlow
	f.IssuedAt = epoch
	v, err := Signer{Key: []byte(strings.Repeat("z", 32))}.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// errTransient is a store failure worth retrying.
var errTransient = errors.New("store busy")

// A server without apple-oauth2 has no authorization or token endpoint.
func TestOAuth2Disabled(t *testing.T) {
	e := newEnv(t)
	w := httptest.NewRecorder()
	e.web.Authorize(w, httptest.NewRequest(http.MethodGet, authorizeEndpoint+"?"+e.deviceQuery(enrollFlow, "").String(), nil), callbackURL)
	if w.Code != http.StatusNotFound || w.Header().Get("Location") != "" {
		t.Errorf("authorize without OAuth2: %d %q", w.Code, w.Header().Get("Location"))
	}
	w = e.tokenReq(iosCodeBody("x"))
	if w.Code != http.StatusNotFound {
		t.Errorf("token endpoint without OAuth2: %d", w.Code)
	}
	if e.st.loginCount() != 0 {
		t.Errorf("a login state was stored")
	}
}

// What the device sends unescaped arrives intact: '+' in the login hint
// and the client id is a plus, ':' and '/' need no escaping, and an
// escaped redirect URI is the same URI.
func TestAuthorizeDeviceEncoding(t *testing.T) {
	const oddClient = "urn:mdmauth:device+ios/1"
	for name, c := range map[string]struct {
		clientID string
		raw      func(wire) string
		hint     string
	}{
		"plus in the login hint": {deviceClientID, func(q wire) string { return q.with("login_hint", "alice+mdm@example.com").String() }, "alice+mdm@example.com"},
		"escaped plus":           {deviceClientID, func(q wire) string { return q.with("login_hint", "alice%2Bmdm%40example.com").String() }, "alice+mdm@example.com"},
		"escaped redirect_uri":   {deviceClientID, func(q wire) string { return q.with("redirect_uri", url.QueryEscape(DefaultRedirectURL)).String() }, "alice@example.com"},
		"lower-case escapes": {deviceClientID, func(q wire) string {
			return q.with("redirect_uri", "apple-remotemanagement-user-login%3a%2foauth2%2fredirection").String()
		}, "alice@example.com"},
		"no scope, no hint":     {deviceClientID, func(q wire) string { return q.without("scope").without("login_hint").String() }, ""},
		"unknown extra params":  {deviceClientID, func(q wire) string { return q.plus("prompt", "login").plus("nonce", "n").String() }, "alice@example.com"},
		"empty pairs":           {deviceClientID, func(q wire) string { return "&" + strings.ReplaceAll(q.String(), "&", "&&") + "&" }, "alice@example.com"},
		"overlong hint dropped": {deviceClientID, func(q wire) string { return q.with("login_hint", strings.Repeat("a", 321)).String() }, ""},
		"odd client id":         {oddClient, func(q wire) string { return q.with("client_id", oddClient).String() }, "alice@example.com"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, false)
			e.web.OAuth2.ClientID = c.clientID
			code := e.codeIssued(e.deviceSignInRaw(c.raw(e.deviceQuery(enrollFlow, "alice@example.com"))), deviceState)
			az := e.idp.Authorizations()
			if got := az[len(az)-1]; got.Get("login_hint") != c.hint || (c.hint == "" && got.Has("login_hint")) {
				t.Errorf("provider login_hint %q, want %q", got.Get("login_hint"), c.hint)
			}
			if ui := e.st.codeList()[0].UserIdentifier; ui != c.hint {
				t.Errorf("code user identifier %q, want %q", ui, c.hint)
			}
			body := "grant_type=authorization_code&code=" + code + "&redirect_uri=" + DefaultRedirectURL + "&client_id=" + c.clientID
			e.tokensIssued(e.tokenReq(body))
		})
	}
}

// The state comes back exactly as sent, as the device decodes it
// (RFC 3986: a '+' is a plus).
func TestAuthorizeStateEchoedExactly(t *testing.T) {
	for name, c := range map[string]struct{ onWire, decoded string }{
		"upper-case UUID":      {deviceState, deviceState},
		"lower-case UUID":      {strings.ToLower(deviceState), strings.ToLower(deviceState)},
		"512 bytes":            {strings.Repeat("S", 512), strings.Repeat("S", 512)},
		"plus":                 {"a+b", "a+b"},
		"escaped plus":         {"a%2Bb", "a+b"},
		"escaped ampersand":    {"a%26code%3Dforged", "a&code=forged"},
		"unreserved and colon": {"a-b._~:c/d", "a-b._~:c/d"},
		"escaped space":        {"a%20b", "a b"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, false)
			w := e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com").with("state", c.onWire))
			if w.Code != http.StatusPermanentRedirect {
				t.Fatalf("status %d, want 308; body %s", w.Code, w.Body)
			}
			loc := w.Header().Get("Location")
			_, query, _ := strings.Cut(loc, "?")
			p, err := ParseParams(query, 4)
			if err != nil || len(p) != 2 || !token.WellFormed(p["code"]) {
				t.Fatalf("Location %q: want exactly code and state (%v)", loc, err)
			}
			if p["state"] != c.decoded {
				t.Errorf("state comes back as %q (raw %q), want %q", p["state"], loc[strings.Index(loc, "&state=")+7:], c.decoded)
			}
		})
	}
}

// A state that is not printable ASCII (RFC 6749 VSCHAR) cannot be echoed
// exactly: it is refused, never changed.
func TestAuthorizeStateNotVSCHAR(t *testing.T) {
	for name, state := range map[string]string{
		"invalid UTF-8": "A%FFB",
		"DEL":           "A%7FB",
	} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, false)
			q := e.deviceQuery(enrollFlow, "alice@example.com").with("state", state)
			w := e.authorize(q.String())
			if w.Code == http.StatusFound {
				authURL, _ := url.Parse(w.Header().Get("Location"))
				w = e.callback(e.follow(authURL).RawQuery, w.Result().Cookies()[0])
				if w.Code == http.StatusPermanentRedirect {
					loc := w.Header().Get("Location")
					_, query, _ := strings.Cut(loc, "?")
					p, err := ParseParams(query, 4)
					want, _ := unescape(state)
					if err != nil || p["state"] != want {
						t.Fatalf("state %q comes back changed: Location %q", state, loc)
					}
					return
				}
			}
			wantPage(t, w, http.StatusBadRequest, "")
		})
	}
}

// PKCE is optional, but a client that sends an S256 challenge must prove
// it at the token endpoint; a code that failed the proof is spent.
func TestOAuth2PKCE(t *testing.T) {
	verifier := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B
	const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if s256(verifier) != challenge {
		t.Fatal("RFC 7636 example does not match")
	}
	for name, c := range map[string]struct {
		verifier string
		ok       bool
	}{
		"right verifier":     {verifier, true},
		"no verifier":        {"", false},
		"wrong verifier":     {strings.Repeat("v", 43), false},
		"verifier too short": {verifier[:42], false},
		"the challenge":      {challenge, false},
	} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, false)
			e.secret(verifier)
			q := e.deviceQuery(enrollFlow, "alice@example.com").plus("code_challenge", challenge).plus("code_challenge_method", "S256")
			code := e.codeIssued(e.deviceSignIn(q), deviceState)
			if got := e.st.codeList()[0].CodeChallenge; got != challenge {
				t.Errorf("stored challenge %q", got)
			}
			body := iosCodeBody(code)
			if c.verifier != "" {
				body += "&code_verifier=" + c.verifier
			}
			w := e.tokenReq(body)
			if c.ok {
				e.tokensIssued(w)
				return
			}
			wantTokenError(t, w, http.StatusBadRequest, token.ErrCodeInvalidGrant)
			// The code is spent even with the right verifier now.
			wantTokenError(t, e.tokenReq(iosCodeBody(code)+"&code_verifier="+verifier), http.StatusBadRequest, token.ErrCodeInvalidGrant)
			if e.st.tokenCount() != 0 {
				t.Errorf("tokens stored after a failed PKCE proof")
			}
		})
	}
}

// RFC 9700 §2.1.1: a token request with a code_verifier is refused when
// the authorization request had no code_challenge (PKCE downgrade).
func TestOAuth2PKCEDowngrade(t *testing.T) {
	e := newOAuthEnv(t, false)
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), deviceState)
	w := e.tokenReq(iosCodeBody(code) + "&code_verifier=" + strings.Repeat("v", 43))
	wantTokenError(t, w, http.StatusBadRequest, token.ErrCodeInvalidGrant)
}

// The device's code is single use: a second redemption is refused and
// revokes what the first one issued.
func TestOAuth2CodeReplay(t *testing.T) {
	e := newOAuthEnv(t, false)
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), deviceState)
	tr := e.tokensIssued(e.tokenReq(iosCodeBody(code)))
	wantTokenError(t, e.tokenReq(iosCodeBody(code)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
	if e.accessValid(tr.AccessToken) {
		t.Errorf("the access token survived a code replay")
	}
	wantTokenError(t, e.tokenReq(iosRefreshBody(tr.RefreshToken)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
	if f := e.familyOf(tr.RefreshToken); f.RevokeReason != "code_replay" {
		t.Errorf("family revoke reason %q", f.RevokeReason)
	}
	if logged := e.logs.FilterMessage("token request refused").FilterField(zap.String("reason", "code_replay")).All(); len(logged) != 1 {
		t.Errorf("code replay not logged: %v", logged)
	}
}

// A code is bound to the redirect URI, the client and its lifetime.
func TestOAuth2CodeBinding(t *testing.T) {
	for name, c := range map[string]struct {
		body  func(code string) string
		wait  time.Duration
		other string // ClientID configured at the token endpoint
	}{
		"other redirect_uri": {body: func(code string) string {
			return "grant_type=authorization_code&code=" + code + "&redirect_uri=https://evil.example.com/cb&client_id=" + deviceClientID
		}},
		"expired": {body: iosCodeBody, wait: token.DefaultCodeTTL},
		"code for another client": {body: func(code string) string {
			return "grant_type=authorization_code&code=" + code + "&redirect_uri=" + DefaultRedirectURL + "&client_id=renamed"
		}, other: "renamed"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, false)
			code := e.codeIssued(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), deviceState)
			e.clock.Advance(c.wait)
			if c.other != "" {
				e.web.OAuth2.ClientID = c.other
			}
			wantTokenError(t, e.tokenReq(c.body(code)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
			if e.st.tokenCount() != 0 {
				t.Errorf("a token was stored")
			}
		})
	}
}

// A store failure while redeeming a code is a temporary error: it must not
// be reported, nor logged, as a replay of the code.
func TestOAuth2ExchangeStoreFailure(t *testing.T) {
	e := newOAuthEnv(t, false)
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), deviceState)
	e.st.mu.Lock()
	e.st.failCreate, e.st.failNext = errTransient, 1
	e.st.mu.Unlock()
	w := e.tokenReq(iosCodeBody(code))
	if w.Code == http.StatusOK {
		e.tokensIssued(w)
		return
	}
	wantTokenError(t, w, http.StatusServiceUnavailable, "temporarily_unavailable")
	if n := len(e.logs.FilterField(zap.String("reason", "code_replay")).All()); n != 0 {
		t.Errorf("a store failure was logged as a code replay")
	}
}

// A transient store failure during a refresh is retried: the device gets
// its tokens.
func TestOAuth2RefreshRetriesStoreFailure(t *testing.T) {
	e := newOAuthEnv(t, false)
	tr := e.signInForTokens()
	e.st.mu.Lock()
	e.st.failCreate, e.st.failNext = errTransient, 1
	e.st.mu.Unlock()
	tr2 := e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	if !e.accessValid(tr2.AccessToken) {
		t.Errorf("the refreshed access token is not usable")
	}
	// A lasting failure is a 503 with Retry-After.
	e.st.mu.Lock()
	e.st.failCreate, e.st.failNext = errTransient, 0
	e.st.mu.Unlock()
	e.clock.Advance(2 * token.DefaultRefreshGrace)
	w := e.tokenReq(iosRefreshBody(tr2.RefreshToken))
	wantTokenError(t, w, http.StatusServiceUnavailable, "temporarily_unavailable")
	if w.Header().Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
}
