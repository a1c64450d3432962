package testenv

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

var testUsers = []User{
	{ID: "alice-id", Username: "alice@example.test", Password: "alice-pw", FirstName: "Alice", LastName: "A", Email: "alice@example.test", EmailVerified: true},
	{ID: "bob-id", Username: "bob@example.test", Password: "bob-pw", FirstName: "Bob", LastName: "B", Email: "bob@example.test"},
}

// appRedirect is a custom-scheme redirect like the one Apple's OAuth 2 client uses.
const appRedirect = "apple-remotemanagement-user-login:/oauth2/redirection"

// relyingParty is a minimal web client: /start redirects to the provider with a state cookie,
// /callback checks the state and hands the code on to a custom scheme, as mdmauth's sign-in
// ends with a redirect out of the web view.
func relyingParty(t *testing.T, conf func() *oauth2.Config, authOpts ...oauth2.AuthCodeOption) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		state := rand.Text()
		http.SetCookie(w, &http.Cookie{Name: "state", Value: state, Path: "/", HttpOnly: true})
		http.Redirect(w, r, conf().AuthCodeURL(state, authOpts...), http.StatusFound)
	})
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("state")
		if err != nil || c.Value != r.URL.Query().Get("state") {
			http.Error(w, "state mismatch", http.StatusBadRequest)
			return
		}
		q := url.Values{"code": {r.URL.Query().Get("code")}}
		http.Redirect(w, r, "apple-remotemanagement-user-login://authentication-results?"+q.Encode(), http.StatusPermanentRedirect)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestOIDCDiscoveryAndJWKS(t *testing.T) {
	t.Parallel()
	o, err := StartOIDC(t, testUsers, []string{"http://127.0.0.1:1/callback"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(o.Issuer, "http://localhost:") || !strings.HasSuffix(o.Issuer, "/") {
		t.Errorf("issuer %q", o.Issuer)
	}
	var disc struct {
		Issuer                string   `json:"issuer"`
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		TokenEndpoint         string   `json:"token_endpoint"`
		UserinfoEndpoint      string   `json:"userinfo_endpoint"`
		JWKSURI               string   `json:"jwks_uri"`
		CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
		ResponseTypes         []string `json:"response_types_supported"`
	}
	getJSON(t, o.DiscoveryURL(), &disc)
	if disc.Issuer != o.Issuer {
		t.Errorf("discovery issuer %q, want %q", disc.Issuer, o.Issuer)
	}
	if disc.AuthorizationEndpoint != o.Issuer+"auth" || disc.TokenEndpoint != o.Issuer+"oauth/token" {
		t.Errorf("endpoints: %q %q", disc.AuthorizationEndpoint, disc.TokenEndpoint)
	}
	if !slices.Contains(disc.CodeChallengeMethods, "S256") || !slices.Contains(disc.ResponseTypes, "code") {
		t.Errorf("discovery: %+v", disc)
	}
	var jwks struct {
		Keys []struct {
			Kty, Alg, Use, Kid string
		} `json:"keys"`
	}
	getJSON(t, disc.JWKSURI, &jwks)
	if len(jwks.Keys) == 0 || jwks.Keys[0].Kty != "RSA" || jwks.Keys[0].Alg != "RS256" || jwks.Keys[0].Kid == "" {
		t.Errorf("jwks: %+v", jwks)
	}
}

// TestOIDCWebSignIn runs the authorization-code flow of the confidential client through a
// relying party, and pins the provider behaviour mdmauth relies on: nonce and auth_time in the
// ID token, email only from UserInfo, no provider session (every authorization asks for the
// password), and users that can be removed.
func TestOIDCWebSignIn(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var conf *oauth2.Config
	nonce := rand.Text()
	rp := relyingParty(t, func() *oauth2.Config { return conf }, oidc.Nonce(nonce),
		oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"),
		oauth2.SetAuthURLParam("login_hint", "alice@example.test"))
	o, err := StartOIDC(t, testUsers, []string{rp.URL + "/callback"})
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, o.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	conf = &oauth2.Config{
		ClientID: o.ClientID, ClientSecret: o.ClientSecret, Endpoint: provider.Endpoint(),
		RedirectURL: rp.URL + "/callback", Scopes: []string{oidc.ScopeOpenID, "email", "profile"},
	}

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar}
	before := time.Now().Add(-2 * time.Second)
	final, err := o.SignIn(ctx, browser, rp.URL+"/start", "alice@example.test", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	if final.Scheme != "apple-remotemanagement-user-login" || final.Host != "authentication-results" {
		t.Fatalf("sign-in ended at %s", final)
	}
	tok, err := conf.Exchange(ctx, final.Query().Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: o.ClientID}).Verify(ctx, rawID)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Email    *string `json:"email"`
		AuthTime int64   `json:"auth_time"`
		AMR      []string
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != "alice-id" || idt.Nonce != nonce {
		t.Errorf("sub %q nonce %q", idt.Subject, idt.Nonce)
	}
	if at := time.Unix(claims.AuthTime, 0); at.Before(before) || at.After(time.Now().Add(2*time.Second)) {
		t.Errorf("auth_time %v not the time of this sign-in", at)
	}
	if claims.Email != nil {
		t.Errorf("ID token carries email %q; the provider was expected to keep it for UserInfo", *claims.Email)
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	if ui.Email != "alice@example.test" || !ui.EmailVerified || ui.Subject != "alice-id" {
		t.Errorf("userinfo: %+v", ui)
	}

	// No provider session: a second authorization in the same cookie jar asks for the
	// password again, so a wrong one fails.
	_, err = o.SignIn(ctx, browser, rp.URL+"/start", "alice@example.test", "wrong")
	var se *SignInError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "username or password wrong") {
		t.Fatalf("wrong password: %v", err)
	}

	// Removing a user (the way to disable one) takes effect after the restart SetUsers does.
	if err := o.SetUsers(testUsers[1:]); err != nil {
		t.Fatal(err)
	}
	if _, err := o.SignIn(ctx, browser, rp.URL+"/start", "alice@example.test", "alice-pw"); !errors.As(err, &se) || !strings.Contains(se.Message, "username or password wrong") {
		t.Fatalf("removed user signed in: %v", err)
	}
	if _, err := o.SignIn(ctx, browser, rp.URL+"/start", "bob@example.test", "bob-pw"); err != nil {
		t.Fatalf("remaining user: %v", err)
	}
}

// TestOIDCNativePKCE runs the public client with PKCE S256 and a custom-scheme redirect.
func TestOIDCNativePKCE(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := StartOIDC(t, testUsers, []string{appRedirect})
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, o.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	conf := &oauth2.Config{ClientID: o.NativeClientID, Endpoint: provider.Endpoint(), RedirectURL: appRedirect, Scopes: []string{oidc.ScopeOpenID}}

	authorize := func(opts ...oauth2.AuthCodeOption) string {
		t.Helper()
		state := rand.Text()
		final, err := o.SignIn(ctx, http.DefaultClient, conf.AuthCodeURL(state, opts...), "bob@example.test", "bob-pw")
		if err != nil {
			t.Fatal(err)
		}
		if final.Query().Get("state") != state || final.Query().Get("code") == "" {
			t.Fatalf("redirect %s", final)
		}
		return final.Query().Get("code")
	}

	verifier := oauth2.GenerateVerifier()
	code := authorize(oauth2.S256ChallengeOption(verifier))
	if _, err := conf.Exchange(ctx, code, oauth2.VerifierOption("not-the-verifier-"+verifier)); err == nil {
		t.Error("token issued for a wrong code_verifier")
	}
	code = authorize(oauth2.S256ChallengeOption(verifier))
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.Extra("id_token") == nil {
		t.Errorf("token response lacks tokens")
	}

	// A public client without PKCE gets no token.
	code = authorize()
	if _, err := conf.Exchange(ctx, code); err == nil || !strings.Contains(err.Error(), "PKCE") {
		t.Errorf("exchange without PKCE: %v", err)
	}
}

// getJSON decodes the JSON answer of a GET.
func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}
