package signin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

const (
	// deviceClientID is the challenge's client-id.
	deviceClientID = "mdmauth-device"
	// authorizeEndpoint and tokenEndpoint are the challenge's
	// authorization-url (without its query) and token-url.
	authorizeEndpoint = "https://mdm.example.com/mdmauth/oauth2/authorize"
	tokenEndpoint     = "https://mdm.example.com/mdmauth/oauth2/token"
	// deviceState is a state as iOS sends it: an upper-case UUID.
	deviceState = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"
	// oauthAccessTTL is the access token lifetime of the OAuth 2 tests.
	oauthAccessTTL = time.Hour
	// idpKeyID names the keyring's first key.
	idpKeyID = "k1"
)

// idpKey is the keyring key of the re-validation tests.
var idpKey = bytes.Repeat([]byte{0x5a}, 32)

// newOAuthEnv is newEnv serving apple-oauth2. With revalidate the scopes
// include offline_access and the provider's refresh token is kept,
// encrypted, and used on device refreshes; cfg adjusts the relying party
// after that.
func newOAuthEnv(t *testing.T, revalidate bool, cfg ...func(*OIDCConfig)) *env {
	t.Helper()
	scopes := func(c *OIDCConfig) {
		c.Scopes = []string{"openid", "email", "profile"}
		if revalidate {
			c.Scopes = append(c.Scopes, "offline_access")
		}
	}
	e := newEnv(t, append([]func(*OIDCConfig){scopes}, cfg...)...)
	o := &token.OAuth{
		M: &token.Manager{
			Store: e.st, Now: e.clock.Now,
			Lifetime: token.Lifetime{TTL: oauthAccessTTL, Floor: token.OAuthFloor},
		},
		Key: bytes.Repeat([]byte("o"), 32),
	}
	e.web.OAuth2 = &OAuth2{ClientID: deviceClientID, RedirectURL: DefaultRedirectURL, Tokens: o}
	if revalidate {
		kr, err := NewKeyring(idpKeyID, idpKey)
		if err != nil {
			t.Fatal(err)
		}
		e.web.OAuth2.Revalidate = true
		e.web.OAuth2.Keyring = kr
		o.Revalidate = e.web.Revalidator()
		e.secret(string(idpKey))
		e.secret(base64.StdEncoding.EncodeToString(idpKey))
	}
	return e
}

// param is one query or form parameter exactly as it goes on the wire.
type param struct{ k, v string }

// wire is an ordered parameter list, written without any escaping: the
// test writes each value the way the device would.
type wire []param

func (q wire) String() string {
	parts := make([]string, len(q))
	for i, p := range q {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// with replaces the first k (or appends it).
func (q wire) with(k, v string) wire {
	out := slices.Clone(q)
	for i := range out {
		if out[i].k == k {
			out[i].v = v
			return out
		}
	}
	return append(out, param{k, v})
}

// plus appends k even if present.
func (q wire) plus(k, v string) wire { return append(slices.Clone(q), param{k, v}) }

func (q wire) without(k string) wire {
	return slices.DeleteFunc(slices.Clone(q), func(p param) bool { return p.k == k })
}

// deviceQuery is the authorization request the device sends: the
// authorization-url's own query (flow=…) followed by response_type,
// client_id, redirect_uri, scope, state and login_hint, in this order,
// with ':' '/' '@' and '+' left unescaped.
func (e *env) deviceQuery(f Flow, loginHint string) wire {
	e.t.Helper()
	return wire{
		{"flow", e.link(f)},
		{"response_type", "code"},
		{"client_id", deviceClientID},
		{"redirect_uri", DefaultRedirectURL},
		{"scope", "openid%20profile"},
		{"state", deviceState},
		{"login_hint", loginHint},
	}
}

// authorize sends the device's authorization request.
func (e *env) authorize(rawQuery string) *httptest.ResponseRecorder {
	e.t.Helper()
	w := httptest.NewRecorder()
	e.web.Authorize(w, httptest.NewRequest(http.MethodGet, authorizeEndpoint+"?"+rawQuery, nil), callbackURL)
	checkSecurityHeaders(e.t, "authorize", w.Header())
	for _, c := range w.Result().Cookies() {
		e.secret(c.Value)
	}
	return w
}

// deviceSignIn runs authorize, the provider and the callback, and returns
// the callback's answer.
func (e *env) deviceSignIn(q wire) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.deviceSignInRaw(q.String())
}

// deviceSignInRaw is deviceSignIn with a raw query.
func (e *env) deviceSignInRaw(rawQuery string) *httptest.ResponseRecorder {
	e.t.Helper()
	tokens := e.st.tokenCount()
	defer func() {
		if n := e.st.tokenCount() - tokens; n != 0 {
			e.t.Errorf("the sign-in stored %d access token(s); only the token endpoint may", n)
		}
	}()
	w := e.authorize(rawQuery)
	if w.Code != http.StatusFound {
		e.t.Fatalf("authorize: status %d, want 302; body: %s", w.Code, w.Body)
	}
	authURL, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		e.t.Fatalf("authorize set %d cookies, want 1", len(cookies))
	}
	return e.callback(e.follow(authURL).RawQuery, cookies[0])
}

// codeIssued asserts the 308 to the device's redirect-url with the code
// and the state exactly as sent, and returns the code.
func (e *env) codeIssued(w *httptest.ResponseRecorder, state string) string {
	e.t.Helper()
	if w.Code != http.StatusPermanentRedirect {
		e.t.Fatalf("callback: status %d, want 308; body: %s", w.Code, w.Body)
	}
	loc := w.Header().Get("Location")
	rest, ok := strings.CutPrefix(loc, DefaultRedirectURL+"?code=")
	code, gotState, ok2 := strings.Cut(rest, "&state=")
	if !ok || !ok2 || !token.WellFormed(code) {
		e.t.Fatalf("Location %q: want %s?code=<code>&state=<state>", loc, DefaultRedirectURL)
	}
	if gotState != state {
		e.t.Errorf("Location state %q, want exactly %q", gotState, state)
	}
	if w.Body.Len() != 0 {
		e.t.Errorf("308 has a body: %q", w.Body)
	}
	return code
}

// iosCodeBody and iosRefreshBody are token requests encoded exactly as iOS
// does: ':' and '/' unescaped, this parameter order.
func iosCodeBody(code string) string {
	return "grant_type=authorization_code&code=" + code + "&redirect_uri=" + DefaultRedirectURL + "&client_id=" + deviceClientID
}

func iosRefreshBody(refresh string) string {
	return "grant_type=refresh_token&refresh_token=" + refresh + "&client_id=" + deviceClientID
}

// tokenReq posts body to the token endpoint as the device does; opts
// change the request.
func (e *env) tokenReq(body string, opts ...func(*http.Request)) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(http.MethodPost, tokenEndpoint, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("User-Agent", "DeviceManagementClient/1.0")
	for _, o := range opts {
		o(r)
	}
	w := httptest.NewRecorder()
	e.st.tokenEndpoint(func() {
		// net/http would survive a panic by dropping the connection: the
		// device gets no answer. Make it a test failure, not a crash.
		defer func() {
			if p := recover(); p != nil {
				e.t.Errorf("the token endpoint panicked: %v\n%s", p, debug.Stack())
				w = httptest.NewRecorder()
				w.Code = 0
			}
		}()
		e.web.TokenEndpoint(w, r)
	})
	if w.Code == 0 {
		return w
	}
	if w.Code == http.StatusNotFound && e.web.OAuth2 == nil {
		return w
	}
	h := w.Header()
	for k, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"} {
		if got := h.Get(k); got != want {
			e.t.Errorf("token response: %s = %q, want %q", k, got, want)
		}
	}
	if h.Get("Location") != "" || h.Get("Set-Cookie") != "" {
		e.t.Errorf("token response with Location %q / Set-Cookie %q", h.Get("Location"), h.Get("Set-Cookie"))
	}
	if w.Code == http.StatusOK {
		var tr tokenResponse
		if err := json.Unmarshal(w.Body.Bytes(), &tr); err == nil {
			e.secret(tr.AccessToken)
			e.secret(tr.RefreshToken)
		}
	}
	return w
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// tokensIssued asserts a 200 token response with exactly access_token,
// token_type Bearer, expires_in and refresh_token.
func (e *env) tokensIssued(w *httptest.ResponseRecorder) tokenResponse {
	e.t.Helper()
	if w.Code != http.StatusOK {
		e.t.Fatalf("token endpoint: status %d, want 200; body: %s", w.Code, w.Body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		e.t.Fatalf("token response %q: %v", w.Body, err)
	}
	keys := slices.Sorted(maps.Keys(raw))
	if want := []string{"access_token", "expires_in", "refresh_token", "token_type"}; !slices.Equal(keys, want) {
		e.t.Errorf("token response keys %q, want %q", keys, want)
	}
	var tr tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
		e.t.Fatal(err)
	}
	if tr.TokenType != "Bearer" || !token.WellFormed(tr.AccessToken) || tr.RefreshToken == "" || tr.ExpiresIn <= 0 {
		e.t.Errorf("token response: type %q, access token well-formed %v, refresh token set %v, expires_in %d",
			tr.TokenType, token.WellFormed(tr.AccessToken), tr.RefreshToken != "", tr.ExpiresIn)
	}
	return tr
}

// wantTokenError asserts an RFC 6749 §5.2 error response.
func wantTokenError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body: %s", w.Code, status, w.Body)
	}
	var raw map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatalf("error response %q is not a JSON object: %v", w.Body, err)
	}
	if raw["error"] != code {
		t.Errorf("error %v, want %s", raw["error"], code)
	}
	for k, v := range raw {
		s, ok := v.(string)
		if k != "error" && k != "error_description" || !ok {
			t.Errorf("error response member %s = %v", k, v)
		}
		// RFC 6749 §5.2: %x20-21 / %x23-5B / %x5D-7E.
		for _, c := range []byte(s) {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Errorf("%s %q has a character RFC 6749 forbids", k, s)
				break
			}
		}
	}
}

// signInForTokens runs a device sign-in and the code exchange.
func (e *env) signInForTokens() tokenResponse {
	e.t.Helper()
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), deviceState)
	return e.tokensIssued(e.tokenReq(iosCodeBody(code)))
}

// familyOf returns the stored family of a refresh token.
func (e *env) familyOf(refresh string) *store.Family {
	e.t.Helper()
	id, _, _ := strings.Cut(refresh, ".")
	f, err := e.db.Family(e.ctx, id)
	if err != nil {
		e.t.Fatalf("family of the refresh token: %v", err)
	}
	return f
}

// keptIdPRefresh decrypts the provider refresh token a family keeps.
func (e *env) keptIdPRefresh(f *store.Family) string {
	e.t.Helper()
	rt, err := e.web.OAuth2.Keyring.Open(f.IdPRefresh, f.IdPKeyID, aad(f.Issuer, f.Subject))
	if err != nil {
		e.t.Fatalf("cannot open the kept provider refresh token: %v", err)
	}
	return string(rt)
}

// accessValid reports whether an access token is usable.
func (e *env) accessValid(raw string) bool {
	_, err := e.web.OAuth2.Tokens.M.Lookup(e.ctx, raw)
	return err == nil
}
