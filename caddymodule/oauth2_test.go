package caddymodule

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// provisioned provisions the handler config h (as validHandler builds it)
// the way Caddy does, in a context whose mdm_auth app stores in a fresh
// directory, and returns the handler and the app's store. The store is
// released when the test ends.
func provisioned(t *testing.T, h map[string]any) (*Handler, store.Store) {
	t.Helper()
	cfg := &caddy.Config{
		Admin:   &caddy.AdminConfig{Disabled: true},
		AppsRaw: caddy.ModuleMap{"mdm_auth": caddyconfig.JSON(map[string]any{"storage_dir": filepath.Join(t.TempDir(), "store")}, nil)},
	}
	ctx, err := caddy.ProvisionContext(cfg)
	if err != nil {
		t.Fatalf("provisioning the mdm_auth app: %v", err)
	}
	appIface, err := ctx.App("mdm_auth")
	if err != nil {
		t.Fatal(err)
	}
	app := appIface.(*App)
	t.Cleanup(func() {
		if err := app.Cleanup(); err != nil {
			t.Errorf("releasing the store: %v", err)
		}
	})
	// The module's own config, without the "handler" key that names it.
	own := map[string]any{}
	for k, v := range h {
		if k != "handler" {
			own[k] = v
		}
	}
	mod, err := ctx.LoadModuleByID("http.handlers.mdm_auth", caddyconfig.JSON(own, nil))
	if err != nil {
		t.Fatalf("provisioning the handler: %v", err)
	}
	return mod.(*Handler), app.Store()
}

// serveHandler runs one request through a provisioned handler whose next
// handler must not run.
func serveHandler(t *testing.T, h *Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		t.Errorf("next handler called for %s %s", r.Method, r.URL.Path)
		return nil
	})
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w
}

// enrollPOST is the device's first enrollment POST, without a bearer
// unless one is given.
func enrollPOST(bearer string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "https://mdm.example.com/mdmauth/enroll/byod?model-family=iPhone", strings.NewReader("not signed"))
	r.Header.Set("Content-Type", "application/pkcs7-signature")
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	return r
}

// challengeOf checks that w is a 401 with exactly one challenge and
// returns its method and parameters.
func challengeOf(t *testing.T, w *httptest.ResponseRecorder) (string, []apple.Param) {
	t.Helper()
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401; body %q", w.Code, w.Body)
	}
	values := w.Header().Values("WWW-Authenticate")
	if len(values) != 1 {
		t.Fatalf("%d WWW-Authenticate headers, want exactly 1: %q", len(values), values)
	}
	method, params, err := apple.ParseChallenge(values[0])
	if err != nil {
		t.Fatalf("challenge %q: %v", values[0], err)
	}
	return method, params
}

// storeSecret returns a secret the handler keeps in the store, or nil
// when it is not there.
func storeSecret(t *testing.T, st store.Store, name string) []byte {
	t.Helper()
	key, err := st.Secret(context.Background(), name, func() ([]byte, error) { return nil, errNoSecret })
	switch {
	case errors.Is(err, errNoSecret):
		return nil
	case err != nil:
		t.Fatalf("reading %s: %v", name, err)
	}
	return key
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

// postToken sends a device token request to tokenURL.
func postToken(t *testing.T, h *Handler, tokenURL, body string) (int, tokenResponse) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, tokenURL, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("User-Agent", "DeviceManagementClient/1.0")
	w := serveHandler(t, h, r)
	var res tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatalf("token response %q: %v", w.Body, err)
	}
	return w.Code, res
}

// TestSignInOAuth2Provisioned provisions sign_in oauth2 with and without
// an oauth2 block and checks, through the handler's answers, what each
// configured: the challenge's parameters, the client and redirect URL the
// authorization and token endpoints accept, and the access token lifetime.
func TestSignInOAuth2Provisioned(t *testing.T) {
	tests := []struct {
		name                      string
		change                    func(h map[string]any)
		clientID, redirect, scope string
		ttl                       time.Duration
	}{
		{"defaults", func(h map[string]any) { h["sign_in"] = "oauth2" },
			"mdmauth", "apple-remotemanagement-user-login:/oauth2/redirection", "mdm", time.Hour},
		{"empty oauth2 block", func(h map[string]any) {
			h["sign_in"] = "oauth2"
			h["oauth2"] = map[string]any{}
		}, "mdmauth", "apple-remotemanagement-user-login:/oauth2/redirection", "mdm", time.Hour},
		{"configured", func(h map[string]any) {
			h["sign_in"] = "oauth2"
			h["oauth2"] = map[string]any{
				"client_id": "com.example.mdm", "redirect_url": "com.example.mdm:/oauth2/done", "scope": "mdm.enroll",
				"refresh_token_ttl": "720h", "sign_in_every": "4320h", "refresh_grace": "2m",
			}
			h["access_token_ttl"] = "5m"
		}, "com.example.mdm", "com.example.mdm:/oauth2/done", "mdm.enroll", 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newFakeIdP(t)
			hc := validHandler(copyProfile(t, t.TempDir()))
			hc["oidc"].(map[string]any)["issuer"] = idp.URL
			tt.change(hc)
			h, st := provisioned(t, hc)

			// The challenge: apple-oauth2, its parameters in order.
			method, params := challengeOf(t, serveHandler(t, h, enrollPOST("")))
			if method != "apple-oauth2" {
				t.Fatalf("challenge method %q, want apple-oauth2", method)
			}
			var names []string
			got := map[string]string{}
			for _, p := range params {
				names = append(names, p.Name)
				got[p.Name] = p.Value
			}
			if want := []string{"authorization-url", "token-url", "redirect-url", "client-id", "scope"}; !slices.Equal(names, want) {
				t.Fatalf("challenge parameters %q, want %q", names, want)
			}
			if got["redirect-url"] != tt.redirect || got["client-id"] != tt.clientID || got["scope"] != tt.scope {
				t.Errorf("redirect-url %q, client-id %q, scope %q; want %q, %q, %q",
					got["redirect-url"], got["client-id"], got["scope"], tt.redirect, tt.clientID, tt.scope)
			}
			if want := "https://mdm.example.com/mdmauth/oauth2/token"; got["token-url"] != want {
				t.Errorf("token-url %q, want %q", got["token-url"], want)
			}
			authz, err := url.Parse(got["authorization-url"])
			if err != nil || authz.Scheme+"://"+authz.Host+authz.Path != "https://mdm.example.com/mdmauth/oauth2/authorize" {
				t.Fatalf("authorization-url %q (%v), want https://mdm.example.com/mdmauth/oauth2/authorize?flow=…", got["authorization-url"], err)
			}
			signer := signin.Signer{Key: storeSecret(t, st, "signin-flow-hmac"), MaxAge: signInLinkMaxAge}
			flow, err := signer.Decode(authz.Query().Get("flow"), time.Now())
			if err != nil {
				t.Fatalf("authorization-url flow: %v", err)
			}
			if flow.Kind != signin.KindEnroll || flow.Mode != "byod" || flow.ModelFamily != "iPhone" {
				t.Errorf("flow %+v, want an iPhone byod enrollment", flow)
			}

			// The authorization request of the configured client goes on to
			// the provider; another client is refused on the spot.
			authorize := func(clientID string) *httptest.ResponseRecorder {
				q := url.Values{
					"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {tt.redirect},
					"scope": {tt.scope}, "state": {"0C1B8E3A-5F47-4D2B-A6E9-7B3C1D2E4F50"}, "login_hint": {"alice@example.com"},
				}
				return serveHandler(t, h, httptest.NewRequest(http.MethodGet, got["authorization-url"]+"&"+q.Encode(), nil))
			}
			w := authorize(tt.clientID)
			if loc := w.Header().Get("Location"); w.Code != http.StatusFound || !strings.HasPrefix(loc, idp.URL+"/authorize?") {
				t.Errorf("authorization request: status %d to %q, want 302 to the provider", w.Code, loc)
			}
			if w = authorize("another-client"); w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
				t.Errorf("authorization request of another client: status %d to %q, want 400", w.Code, w.Header().Get("Location"))
			}

			// A code for the configured client and redirect URL, redeemed at
			// token-url as the device does.
			minter := &token.OAuth{M: &token.Manager{Store: st}, Key: key32}
			code, err := minter.NewCode(context.Background(), token.CodeGrant{
				Grant: token.Grant{
					Issuer: idp.URL, Subject: "sub-alice", UserIdentifier: "alice@example.com",
					ManagedAppleID: "alice@example.com", Mode: "byod", ModelFamily: "iPhone",
				},
				ClientID: tt.clientID, RedirectURI: tt.redirect, SignedInAt: time.Now(),
			})
			if err != nil {
				t.Fatal(err)
			}
			body := "grant_type=authorization_code&code=" + code + "&redirect_uri=" + tt.redirect + "&client_id="
			if status, res := postToken(t, h, got["token-url"], body+"another-client"); status != http.StatusUnauthorized || res.Error != "invalid_client" {
				t.Errorf("token request of another client: %d %q, want 401 invalid_client", status, res.Error)
			}
			status, res := postToken(t, h, got["token-url"], body+tt.clientID)
			if status != http.StatusOK || res.TokenType != "Bearer" || res.AccessToken == "" || res.RefreshToken == "" {
				t.Fatalf("token request: %d, type %q, error %q; want 200 with both tokens", status, res.TokenType, res.Error)
			}
			// ±10% jitter, and a second or two of test time.
			low, high := int64(tt.ttl.Seconds()*0.9)-2, int64(tt.ttl.Seconds()*1.1)
			if res.ExpiresIn < low || res.ExpiresIn > high {
				t.Errorf("expires_in %d, want %s ±10%% (%d…%d)", res.ExpiresIn, tt.ttl, low, high)
			}

			// The access token gets the profile.
			w = serveHandler(t, h, enrollPOST(res.AccessToken))
			if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-apple-aspen-config" {
				t.Errorf("enrollment with the access token: status %d, Content-Type %q; want the profile", w.Code, w.Header().Get("Content-Type"))
			}
		})
	}
}

// TestSignInWebProvisioned checks that without sign_in oauth2 (the
// default, or sign_in web) the challenge is apple-as-web and the oauth2
// endpoints do not exist.
func TestSignInWebProvisioned(t *testing.T) {
	for _, signIn := range []string{"", "web"} {
		t.Run("sign_in "+signIn, func(t *testing.T) {
			hc := validHandler(copyProfile(t, t.TempDir()))
			if signIn != "" {
				hc["sign_in"] = signIn
			}
			h, _ := provisioned(t, hc)
			method, params := challengeOf(t, serveHandler(t, h, enrollPOST("")))
			if method != "apple-as-web" || len(params) != 1 || params[0].Name != "url" ||
				!strings.HasPrefix(params[0].Value, "https://mdm.example.com/mdmauth/sign-in/") {
				t.Errorf("challenge %q %v, want apple-as-web with a sign-in url", method, params)
			}
			for _, r := range []*http.Request{
				httptest.NewRequest(http.MethodGet, "https://mdm.example.com/mdmauth/oauth2/authorize?flow=x", nil),
				httptest.NewRequest(http.MethodPost, "https://mdm.example.com/mdmauth/oauth2/token", strings.NewReader("grant_type=refresh_token")),
			} {
				if w := serveHandler(t, h, r); w.Code != http.StatusNotFound {
					t.Errorf("%s %s: status %d, want 404", r.Method, r.URL.Path, w.Code)
				}
			}
		})
	}
}

// TestRevalidateOnRefreshProvisioned checks what revalidate_on_refresh
// sets up: offline_access (added once) and the auth_params in the
// provider's authorization request, and the key of the kept provider
// refresh tokens, generated in the store unless refresh_token_keys gives
// one.
func TestRevalidateOnRefreshProvisioned(t *testing.T) {
	tests := []struct {
		name      string
		scopes    []string
		keys      string
		wantScope string
		storeKey  bool
	}{
		{"default scopes, key in the store", nil, "",
			"openid email profile offline_access", true},
		{"configured scopes, keys from the environment", []string{"openid", "email"}, "{env.MDMAUTH_TEST_IDP_KEYS}",
			"openid email offline_access", false},
		{"offline_access already requested", []string{"openid", "offline_access", "email"}, "",
			"openid offline_access email", true},
	}
	t.Setenv("MDMAUTH_TEST_IDP_KEYS", "k2:"+base64.StdEncoding.EncodeToString(key32)+",k1:"+base64.RawURLEncoding.EncodeToString(key32))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newFakeIdP(t)
			hc := validHandler(copyProfile(t, t.TempDir()))
			hc["sign_in"] = "oauth2"
			oidc := hc["oidc"].(map[string]any)
			oidc["issuer"] = idp.URL
			oidc["revalidate_on_refresh"] = true
			oidc["auth_params"] = map[string]string{"access_type": "offline"}
			if tt.scopes != nil {
				oidc["scopes"] = tt.scopes
			}
			if tt.keys != "" {
				oidc["refresh_token_keys"] = tt.keys
			}
			h, st := provisioned(t, hc)

			_, params := challengeOf(t, serveHandler(t, h, enrollPOST("")))
			q := url.Values{
				"response_type": {"code"}, "client_id": {"mdmauth"}, "redirect_uri": {signin.DefaultRedirectURL},
				"scope": {"mdm"}, "state": {"0C1B8E3A-5F47-4D2B-A6E9-7B3C1D2E4F50"}, "login_hint": {"alice@example.com"},
			}
			w := serveHandler(t, h, httptest.NewRequest(http.MethodGet, params[0].Value+"&"+q.Encode(), nil))
			loc, err := url.Parse(w.Header().Get("Location"))
			if w.Code != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), idp.URL+"/authorize?") {
				t.Fatalf("authorization request: status %d to %q, want 302 to the provider", w.Code, w.Header().Get("Location"))
			}
			if got := loc.Query().Get("scope"); got != tt.wantScope {
				t.Errorf("provider scope %q, want %q", got, tt.wantScope)
			}
			if got := loc.Query().Get("access_type"); got != "offline" {
				t.Errorf("provider access_type %q, want offline", got)
			}
			key := storeSecret(t, st, "idp-refresh-key")
			if tt.storeKey && len(key) != 32 {
				t.Errorf("provider refresh-token key in the store: %d bytes, want 32", len(key))
			}
			if !tt.storeKey && key != nil {
				t.Error("a provider refresh-token key was generated in the store although refresh_token_keys is set")
			}
		})
	}
}
