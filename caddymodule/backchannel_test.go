package caddymodule

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// signingIdP is an OpenID provider that signs users in for real: it
// redirects every authorization back with a code, redeems codes for ID
// tokens (with a session id) signed with the key its JWKS publishes, and
// signs back-channel logout tokens with the same key.
type signingIdP struct {
	*httptest.Server
	t      *testing.T
	key    *rsa.PrivateKey
	secret string

	mu     sync.Mutex
	nonces map[string]string // code → nonce
}

const (
	bclSubject = "alice-sub"
	bclSession = "sid-alice-1"
)

func newSigningIdP(t *testing.T, secret string) *signingIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &signingIdP{t: t, key: key, secret: secret, nonces: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		doc := discoveryDocument(p.URL)
		doc["backchannel_logout_supported"] = true
		doc["backchannel_logout_session_supported"] = true
		writeJSONBody(w, http.StatusOK, doc)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		writeJSONBody(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: &p.key.PublicKey, KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig",
		}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		back, err := url.Parse(q.Get("redirect_uri"))
		if err != nil || q.Get("client_id") != "mdmauth" || q.Get("nonce") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := "code-" + rand.Text()
		p.mu.Lock()
		p.nonces[code] = q.Get("nonce")
		p.mu.Unlock()
		back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, sec, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || !ok || id != "mdmauth" || sec != p.secret {
			writeJSONBody(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
		p.mu.Lock()
		nonce, found := p.nonces[r.PostForm.Get("code")]
		delete(p.nonces, r.PostForm.Get("code"))
		p.mu.Unlock()
		if !found {
			writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		now := time.Now()
		idt := p.sign("JWT", map[string]any{
			"iss": p.URL, "aud": "mdmauth", "sub": bclSubject, "sid": bclSession, "nonce": nonce,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "auth_time": now.Unix(),
			"email": "alice@example.com", "email_verified": true,
		}, p.key)
		writeJSONBody(w, http.StatusOK, map[string]any{"access_token": "at-" + rand.Text(), "token_type": "Bearer", "expires_in": 3600, "id_token": idt})
	})
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

// sign returns the compact JWS of claims with typ, signed by key under
// the published key id.
func (p *signingIdP) sign(typ string, claims map[string]any, key *rsa.PrivateKey) string {
	p.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		p.t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		p.t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		p.t.Fatal(err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		p.t.Fatal(err)
	}
	return raw
}

// logoutToken is a back-channel logout token for alice's session, signed
// by key.
func (p *signingIdP) logoutToken(key *rsa.PrivateKey) string {
	now := time.Now()
	return p.sign("logout+jwt", map[string]any{
		"iss": p.URL, "aud": "mdmauth", "sub": bclSubject, "sid": bclSession,
		"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": "jti-" + rand.Text(),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}, key)
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// TestCaddyBackchannelLogout runs Caddy in-process with back-channel
// logout configured: a device signs in through the provider and enrolls,
// its MDM traffic passes; the provider posts a logout token for the
// sign-in's session; the device's next MDM request is challenged. A replay
// of the token and a forged token are refused with 400.
func TestCaddyBackchannelLogout(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MDMAUTH_IT_OIDC_SECRET", itSecret)
	idp := newSigningIdP(t, itSecret)
	nanomdm := newRecordingUpstream(t)
	cfg := strings.NewReplacer(
		"{{.Store}}", filepath.Join(dir, "store"), "{{.Issuer}}", idp.URL, "{{.Profile}}", copyProfile(t, dir),
		"{{.NanoMDM}}", strings.TrimPrefix(nanomdm.URL, "http://"),
		"{{.Discovery}}", "domains example.com", "{{.Name}}", "logout",
		"client_secret {env.MDMAUTH_IT_OIDC_SECRET}\n", "client_secret {env.MDMAUTH_IT_OIDC_SECRET}\n\t\t\tbackchannel_logout\n",
	).Replace(itConfig)
	if !strings.Contains(cfg, "backchannel_logout") {
		t.Fatal("the test config lacks backchannel_logout")
	}
	tester := newTester(t)
	tester.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() {
		tester.InitServer("{\n\tadmin localhost:2999\n\thttp_port 9080\n\thttps_port 9443\n\tskip_install_trust\n}\n", "caddyfile")
	})
	client := &http.Client{
		Transport:     caddytest.CreateTestingTransport(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	// Sign in as the device's browser does and enroll.
	access := signInThroughProvider(t, client, enrollChallenge(t, client))
	res := do(t, client, http.MethodPost, itBase+"/mdmauth/enroll/byod?model-family=iPhone", "application/pkcs7-signature", "not signed", access)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("enrollment with the access token: %d %q, want the profile", res.StatusCode, res.Header.Get("Content-Type"))
	}
	nanomdm.reset()
	for i := 0; i < 2; i++ {
		res = do(t, client, http.MethodPut, itBase+"/mdm/ad", "application/x-apple-aspen-mdm-checkin", tokenUpdate, access)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("check-in %d with the access token: %d, want 200 from NanoMDM", i+1, res.StatusCode)
		}
	}
	if got := nanomdm.paths(); len(got) != 2 {
		t.Fatalf("NanoMDM received %v, want two check-ins", got)
	}

	// A forged logout token changes nothing.
	res = postLogoutToken(t, client, idp.logoutToken(otherKey(t)))
	wantOAuthError(t, res, "forged logout token")
	if res = do(t, client, http.MethodPut, itBase+"/mdm/ad", "application/x-apple-aspen-mdm-checkin", tokenUpdate, access); res.StatusCode != http.StatusOK {
		t.Fatalf("check-in after a forged logout: %d, want 200", res.StatusCode)
	}

	// The provider ends the session.
	lt := idp.logoutToken(idp.key)
	res = postLogoutToken(t, client, lt)
	if res.StatusCode != http.StatusOK || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("logout: %d, Cache-Control %q; want 200 and no-store", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	nanomdm.reset()
	res = do(t, client, http.MethodPut, itBase+"/mdm/ad", "application/x-apple-aspen-mdm-checkin", tokenUpdate, access)
	if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), `Bearer method="apple-as-web"`) {
		t.Errorf("check-in after the logout: %d, WWW-Authenticate %q; want 401 with the challenge", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	if got := nanomdm.paths(); len(got) != 0 {
		t.Errorf("after the logout NanoMDM still received %v", got)
	}

	// The same token again is a replay.
	wantOAuthError(t, postLogoutToken(t, client, lt), "replayed logout token")
}

// otherKey is an RSA key the provider does not publish.
func otherKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// do sends one request with a bearer and returns the response, its body
// read and closed.
func do(t *testing.T, client *http.Client, method, target, contentType, body, bearer string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// postLogoutToken posts raw to the back-channel logout endpoint as the
// provider does; the body stays readable.
func postLogoutToken(t *testing.T, client *http.Client, raw string) *http.Response {
	t.Helper()
	res, err := client.PostForm(itBase+"/mdmauth/oidc/backchannel-logout", url.Values{"logout_token": {raw}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// wantOAuthError checks a 400 back-channel logout answer.
func wantOAuthError(t *testing.T, res *http.Response, what string) {
	t.Helper()
	var body map[string]string
	err := json.NewDecoder(io.LimitReader(res.Body, 4096)).Decode(&body)
	if res.StatusCode != http.StatusBadRequest || err != nil || body["error"] != "invalid_request" || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: %d, body %v (%v), Cache-Control %q; want 400 invalid_request, no-store", what, res.StatusCode, body, err, res.Header.Get("Cache-Control"))
	}
}

// signInThroughProvider follows the sign-in URL of a challenge through
// the provider back to the callback and returns the access token the
// callback hands to the device.
func signInThroughProvider(t *testing.T, client *http.Client, signIn string) string {
	t.Helper()
	res, err := client.Get(signIn + "?user-identifier=" + url.QueryEscape("alice@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("sign-in link: %d, want 302 to the provider", res.StatusCode)
	}
	cookies := res.Cookies()
	res, err = client.Get(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("provider authorization: %d, want 302 back", res.StatusCode)
	}
	cb, err := http.NewRequest(http.MethodGet, res.Header.Get("Location"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		cb.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	res, err = client.Do(cb)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect {
		t.Fatalf("callback: %d, want 308 with the access token", res.StatusCode)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || loc.Query().Get("access-token") == "" {
		t.Fatal("the callback's redirect carries no access token")
	}
	return loc.Query().Get("access-token")
}

// TestBackchannelLogoutProvisioned checks what backchannel_logout sets up
// through the provisioned handler: without it the endpoint does not
// exist; with it, a provider-signed logout token without sid is refused
// unless all_sessions is on, and a sub-wide logout ends every token of the
// user; a negative max_age does not provision.
func TestBackchannelLogoutProvisioned(t *testing.T) {
	idp := newSigningIdP(t, "secret")
	post := func(h *Handler, raw string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "https://mdm.example.com/mdmauth/oidc/backchannel-logout",
			strings.NewReader(url.Values{"logout_token": {raw}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return serveHandler(t, h, r)
	}
	subOnly := func() string {
		now := time.Now()
		return idp.sign("logout+jwt", map[string]any{
			"iss": idp.URL, "aud": "mdmauth", "sub": bclSubject, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
			"jti": "jti-" + rand.Text(), "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
		}, idp.key)
	}
	for _, tt := range []struct {
		name   string
		bcl    map[string]any // nil: not configured
		status int
	}{
		{"not configured", nil, http.StatusNotFound},
		{"sid required", map[string]any{}, http.StatusBadRequest},
		{"all sessions", map[string]any{"all_sessions": true, "max_age": "5m"}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hc := validHandler(copyProfile(t, t.TempDir()))
			oidc := hc["oidc"].(map[string]any)
			oidc["issuer"] = idp.URL
			if tt.bcl != nil {
				oidc["backchannel_logout"] = tt.bcl
			}
			h, st := provisioned(t, hc)
			ctx := t.Context()
			// A token of the user, from a sign-in in some session.
			_, hash, err := token.Mint(nil)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if err := st.CreateToken(ctx, &store.Token{Hash: hash, Issuer: idp.URL, Subject: bclSubject, SessionID: bclSession,
				ManagedAppleID: "alice@example.com", Mode: "byod", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			w := post(h, subOnly())
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %q", w.Code, tt.status, w.Body)
			}
			if got := w.Header().Get("Cache-Control"); tt.status != http.StatusNotFound && got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			tok, err := st.Token(ctx, hash)
			if err != nil {
				t.Fatal(err)
			}
			if revoked := !tok.RevokedAt.IsZero(); revoked != (tt.status == http.StatusOK) {
				t.Errorf("the user's token revoked: %v", revoked)
			}
		})
	}
	t.Run("negative max_age", func(t *testing.T) {
		hc := validHandler(copyProfile(t, t.TempDir()))
		hc["oidc"].(map[string]any)["backchannel_logout"] = map[string]any{"max_age": "-1m"}
		err := caddy.Validate(testConfig(t, filepath.Join(t.TempDir(), "store"), hc))
		if err == nil || !strings.Contains(err.Error(), "backchannel_logout max_age") {
			t.Errorf("Validate: %v, want a max_age error", err)
		}
	})
}
