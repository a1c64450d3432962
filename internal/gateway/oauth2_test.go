package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/token"
)

// Paths of the apple-oauth2 endpoints under the default prefix.
const (
	authzPath = "/mdmauth/oauth2/authorize"
	tokenPath = "/mdmauth/oauth2/token"
)

// oauth2Challenge is the apple-oauth2 configuration of the tests.
var oauth2Challenge = gateway.OAuth2Challenge{ClientID: "mdmauth", RedirectURL: signin.DefaultRedirectURL, Scope: "mdm"}

// withOAuth2 makes the gateway challenge with apple-oauth2.
func withOAuth2(c *gateway.Config) {
	o := oauth2Challenge
	c.OAuth2 = &o
}

// oauth2Params are the parameters of an apple-oauth2 challenge.
type oauth2Params struct {
	AuthorizationURL *url.URL
	TokenURL         string
	RedirectURL      string
	ClientID         string
	Scope            string // "" when the challenge has none
}

// oauth2Challenge checks that w is a 401 with exactly one apple-oauth2
// challenge whose parameters come in the documented order
// (authorization-url, token-url, redirect-url, client-id, then scope when
// configured), and returns them.
func (e *env) oauth2Challenge(w *httptest.ResponseRecorder) oauth2Params {
	e.tb.Helper()
	res := w.Result()
	if res.StatusCode != http.StatusUnauthorized {
		e.tb.Fatalf("status %d, want 401; body %q", res.StatusCode, w.Body)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		e.tb.Errorf("Cache-Control %q, want no-store", got)
	}
	values := res.Header.Values("WWW-Authenticate")
	if len(values) != 1 {
		e.tb.Fatalf("%d WWW-Authenticate headers, want exactly 1: %q", len(values), values)
	}
	method, params, err := apple.ParseChallenge(values[0])
	if err != nil {
		e.tb.Fatalf("challenge %q: %v", values[0], err)
	}
	if method != "apple-oauth2" {
		e.tb.Fatalf("challenge %q: method %q, want apple-oauth2", values[0], method)
	}
	var names []string
	var p oauth2Params
	for _, prm := range params {
		names = append(names, prm.Name)
		switch prm.Name {
		case "authorization-url":
			u, err := url.Parse(prm.Value)
			if err != nil {
				e.tb.Fatalf("authorization-url %q: %v", prm.Value, err)
			}
			p.AuthorizationURL = u
		case "token-url":
			p.TokenURL = prm.Value
		case "redirect-url":
			p.RedirectURL = prm.Value
		case "client-id":
			p.ClientID = prm.Value
		case "scope":
			p.Scope = prm.Value
		}
	}
	want := []string{"authorization-url", "token-url", "redirect-url", "client-id", "scope"}
	if p.Scope == "" {
		want = want[:4]
	}
	if !slices.Equal(names, want) {
		e.tb.Fatalf("challenge %q: parameters %q, want %q in that order", values[0], names, want)
	}
	return p
}

// oauth2Flow checks an apple-oauth2 challenge as oauth2Challenge does,
// and that its URLs are https URLs of the gateway's endpoints under base
// (scheme://host + prefix) and its other parameters those of the test
// configuration. It returns the flow the authorization-url carries.
func (e *env) oauth2Flow(w *httptest.ResponseRecorder, base string) signin.Flow {
	e.tb.Helper()
	p := e.oauth2Challenge(w)
	u := p.AuthorizationURL
	if u.Scheme != "https" {
		e.tb.Errorf("authorization-url %q is not https", u)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != base+"/oauth2/authorize" {
		e.tb.Errorf("authorization-url %q: want %s/oauth2/authorize?flow=…", u, base)
	}
	if u.Fragment != "" || u.User != nil {
		e.tb.Errorf("authorization-url %q has a fragment or user info", u)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil || len(q) != 1 || len(q["flow"]) != 1 {
		e.tb.Fatalf("authorization-url %q: query %v (%v), want exactly one flow parameter", u, q, err)
	}
	if !strings.HasPrefix(p.TokenURL, "https://") || p.TokenURL != base+"/oauth2/token" {
		e.tb.Errorf("token-url %q, want %s/oauth2/token", p.TokenURL, base)
	}
	if p.RedirectURL != oauth2Challenge.RedirectURL || p.ClientID != oauth2Challenge.ClientID || p.Scope != oauth2Challenge.Scope {
		e.tb.Errorf("redirect-url %q, client-id %q, scope %q; want %q, %q, %q", p.RedirectURL, p.ClientID, p.Scope,
			oauth2Challenge.RedirectURL, oauth2Challenge.ClientID, oauth2Challenge.Scope)
	}
	f, err := e.signer.Decode(q.Get("flow"), e.clock.Now())
	if err != nil {
		e.tb.Fatalf("authorization-url flow: %v", err)
	}
	if !f.IssuedAt.Equal(e.clock.Now().Truncate(time.Second)) {
		e.tb.Errorf("flow issued at %s, want %s", f.IssuedAt, e.clock.Now())
	}
	f.IssuedAt = time.Time{}
	return f
}

func TestOAuth2EnrollChallenge(t *testing.T) {
	e := newEnv(t, withOAuth2)
	expired, _ := e.issue(grant("byod"))
	e.clock.Advance(tokenTTL)
	tests := []struct {
		name   string
		mode   string
		query  string
		bearer string
		want   signin.Flow
	}{
		{"iPhone", "byod", "model-family=iPhone", "",
			signin.Flow{Kind: signin.KindEnroll, Mode: "byod", ModelFamily: "iPhone"}},
		{"Mac, account-driven device enrollment", "adde", "model-family=Mac", "",
			signin.Flow{Kind: signin.KindEnroll, Mode: "adde", ModelFamily: "Mac"}},
		{"no model family", "byod", "", "",
			signin.Flow{Kind: signin.KindEnroll, Mode: "byod"}},
		{"expired bearer", "byod", "model-family=iPad", expired,
			signin.Flow{Kind: signin.KindEnroll, Mode: "byod", ModelFamily: "iPad"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.mustServe(enrollRequest(tt.mode, tt.query, fixture(t, "enroll/iphone-signed.der"), tt.bearer), failNext(t))
			if got := e.oauth2Flow(w, origin+"/mdmauth"); got != tt.want {
				t.Errorf("flow %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestOAuth2ChallengePublicURLAndPrefix checks that the challenge's URLs
// use the public URL (https although the request reached the gateway over
// plain HTTP) and the configured prefix.
func TestOAuth2ChallengePublicURLAndPrefix(t *testing.T) {
	public, err := url.Parse("https://enroll.example.net")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withOAuth2, func(c *gateway.Config) { c.PublicURL = public; c.Prefix = "/gw" })
	r := httptest.NewRequest(http.MethodPost, "http://internal:8080/gw/enroll/adde?model-family=Mac", nil)
	w := e.mustServe(r, failNext(t))
	if got, want := e.oauth2Flow(w, "https://enroll.example.net/gw"), (signin.Flow{Kind: signin.KindEnroll, Mode: "adde", ModelFamily: "Mac"}); got != want {
		t.Errorf("flow %+v, want %+v", got, want)
	}
}

// TestOAuth2ChallengeWithoutScope checks that an empty scope is left out
// rather than sent empty (an empty value is not a valid challenge value).
func TestOAuth2ChallengeWithoutScope(t *testing.T) {
	e := newEnv(t, withOAuth2, func(c *gateway.Config) { c.OAuth2.Scope = "" })
	w := e.mustServe(enrollRequest("byod", "", nil, ""), failNext(t))
	p := e.oauth2Challenge(w)
	if p.Scope != "" || p.ClientID != "mdmauth" || p.RedirectURL != signin.DefaultRedirectURL {
		t.Errorf("challenge parameters %+v", p)
	}
}

func TestOAuth2Routing(t *testing.T) {
	tests := []struct {
		name, method, path string
		oauth2             bool
		want               int
		allow              string
	}{
		{"authorize without oauth2", http.MethodGet, authzPath + "?flow=x", false, http.StatusNotFound, ""},
		{"authorize by POST without oauth2", http.MethodPost, authzPath, false, http.StatusNotFound, ""},
		{"token without oauth2", http.MethodPost, tokenPath, false, http.StatusNotFound, ""},
		{"token by GET without oauth2", http.MethodGet, tokenPath, false, http.StatusNotFound, ""},

		{"token by GET", http.MethodGet, tokenPath, true, http.StatusMethodNotAllowed, "POST"},
		{"token by HEAD", http.MethodHead, tokenPath, true, http.StatusMethodNotAllowed, "POST"},
		{"token by PUT", http.MethodPut, tokenPath, true, http.StatusMethodNotAllowed, "POST"},
		{"authorize by POST", http.MethodPost, authzPath, true, http.StatusMethodNotAllowed, "GET"},
		{"authorize by HEAD", http.MethodHead, authzPath, true, http.StatusMethodNotAllowed, "GET"},
		{"below authorize", http.MethodGet, authzPath + "/x", true, http.StatusNotFound, ""},
		{"below token", http.MethodPost, tokenPath + "/x", true, http.StatusNotFound, ""},
		{"oauth2 itself", http.MethodGet, "/mdmauth/oauth2", true, http.StatusNotFound, ""},
		{"upper-case token path", http.MethodPost, "/mdmauth/oauth2/TOKEN", true, http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *env
			if tt.oauth2 {
				e = newEnv(t, withOAuth2)
			} else {
				e = newEnv(t)
			}
			w := e.mustServe(httptest.NewRequest(tt.method, origin+tt.path, nil), failNext(t))
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d; body %q", w.Code, tt.want, w.Body)
			}
			if got := w.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

// TestOAuth2TokenByGET checks the token endpoint's refusal of GET is an
// OAuth 2 error answer.
func TestOAuth2TokenByGET(t *testing.T) {
	e := newEnv(t, withOAuth2)
	w := e.mustServe(httptest.NewRequest(http.MethodGet, origin+tokenPath+"?grant_type=authorization_code&code=x", nil), failNext(t))
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("status %d, want 405", w.Code)
	}
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q, want application/json", got)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != token.ErrCodeInvalidRequest {
		t.Errorf("body %q (%v), want an invalid_request error", w.Body, err)
	}
}

// authorizeRequest is the device's authorization request: the challenge's
// authorization-url with the device's parameters appended, in the order
// the device sends them.
func authorizeRequest(authzURL *url.URL, clientID string) *http.Request {
	q := "response_type=code&client_id=" + url.QueryEscape(clientID) +
		"&redirect_uri=" + url.QueryEscape(signin.DefaultRedirectURL) +
		"&scope=mdm&state=6A2F1C64-0B3D-4E53-9C1A-8E7F2D4B5A60&login_hint=" + url.QueryEscape("alice@example.com")
	u := *authzURL
	u.RawQuery += "&" + q
	return httptest.NewRequest(http.MethodGet, u.String(), nil)
}

// TestOAuth2ChallengeLinkRoutes follows the challenge's authorization-url
// back into the gateway as the device does: the request is accepted and
// the sign-in reaches the (unreachable) identity provider; a wrong client
// or a forged flow is refused first.
func TestOAuth2ChallengeLinkRoutes(t *testing.T) {
	e := newEnv(t, withOAuth2)
	w := e.mustServe(enrollRequest("byod", "model-family=iPhone", nil, ""), failNext(t))
	e.oauth2Flow(w, origin+"/mdmauth")
	authz := e.oauth2Challenge(w).AuthorizationURL

	w = e.mustServe(authorizeRequest(authz, "mdmauth"), failNext(t))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("authorization request: status %d, want 503 (provider unreachable); body %q", w.Code, w.Body)
	}
	w = e.mustServe(authorizeRequest(authz, "someone-else"), failNext(t))
	if w.Code != http.StatusBadRequest {
		t.Errorf("authorization request of another client: status %d, want 400", w.Code)
	}
	if loc := w.Header().Get("Location"); loc != "" {
		t.Errorf("authorization request of another client redirected to %q", loc)
	}
	forged := *authz
	forged.RawQuery = "flow=forged.value"
	w = e.mustServe(authorizeRequest(&forged, "mdmauth"), failNext(t))
	if w.Code != http.StatusNotFound {
		t.Errorf("authorization request with a forged flow: status %d, want 404", w.Code)
	}
}

// TestOAuth2TokenRoute redeems a code at the challenge's token-url and
// uses the access token for the enrollment and a protected request.
func TestOAuth2TokenRoute(t *testing.T) {
	e := newEnv(t, withOAuth2)
	w := e.mustServe(enrollRequest("byod", "model-family=iPhone", nil, ""), failNext(t))
	e.oauth2Flow(w, origin+"/mdmauth")
	tokenURL := e.oauth2Challenge(w).TokenURL

	code, err := e.oauth.NewCode(e.ctx, token.CodeGrant{
		Grant: grant("byod"), ClientID: "mdmauth", RedirectURI: signin.DefaultRedirectURL, SignedInAt: e.clock.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	// The device's body: ':' and '/' are not percent-encoded.
	body := "grant_type=authorization_code&code=" + code + "&redirect_uri=" + signin.DefaultRedirectURL + "&client_id=mdmauth"
	r := httptest.NewRequest(http.MethodPost, tokenURL, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("User-Agent", "DeviceManagementClient/1.0")
	w = e.mustServe(r, failNext(t))
	if w.Code != http.StatusOK {
		t.Fatalf("token request: status %d, want 200; body %q", w.Code, w.Body)
	}
	var res struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatalf("token response %q: %v", w.Body, err)
	}
	if res.TokenType != "Bearer" || res.AccessToken == "" || res.RefreshToken == "" || res.ExpiresIn != int64(tokenTTL/time.Second) {
		t.Errorf("token response: type %q, access token %v, refresh token %v, expires_in %d; want Bearer, both tokens, %d",
			res.TokenType, res.AccessToken != "", res.RefreshToken != "", res.ExpiresIn, int64(tokenTTL/time.Second))
	}

	w = e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), res.AccessToken), failNext(t))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("enrollment with the access token: status %d, Content-Type %q; want the profile", w.Code, w.Header().Get("Content-Type"))
	}
	e.bind(res.AccessToken, fixture(t, "checkin/ue-authenticate.plist"))
	if tok := e.storedToken(hashOf(res.AccessToken)); tok.EnrollmentID != ueID {
		t.Errorf("access token bound to %q, want %q", tok.EnrollmentID, ueID)
	}

	// Neither the code nor the tokens reach the logs.
	entries := e.logs.All()
	if len(entries) < 3 {
		t.Fatalf("%d log entries, want one per request at least", len(entries))
	}
	for _, en := range entries {
		line := en.Message
		for k, v := range en.ContextMap() {
			line += " " + k + "=" + anyString(v)
		}
		for name, secret := range map[string]string{"code": code, "access token": res.AccessToken, "refresh token": res.RefreshToken} {
			if strings.Contains(line, secret) {
				t.Errorf("log entry holds the %s: %q", name, en.Message)
			}
		}
	}
}
