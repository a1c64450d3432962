package fakeidp

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// The provider's own checks are what make the relying party's tests mean
// something: it must refuse a wrong verifier, a wrong client secret, a
// changed redirect URI and a second use of a code.
func TestProviderEnforcesTheCodeFlow(t *testing.T) {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	p := New(func() time.Time { return now })
	defer p.Close()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, p.Client())
	conf := func(secret, redirect string) *oauth2.Config {
		return &oauth2.Config{
			ClientID: p.ClientID, ClientSecret: secret, RedirectURL: redirect, Scopes: []string{"openid"},
			Endpoint: oauth2.Endpoint{AuthURL: p.URL(Authorize), TokenURL: p.URL(Token), AuthStyle: oauth2.AuthStyleInHeader},
		}
	}
	const redirect = "https://rp.example.com/callback"
	code := func(verifier string) string {
		t.Helper()
		u := conf(p.ClientSecret, redirect).AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n-1"))
		cb, err := p.Follow(u)
		if err != nil {
			t.Fatal(err)
		}
		if cb.Query().Get("state") != "state-1" || cb.Query().Get("code") == "" {
			t.Fatalf("callback %s", cb)
		}
		return cb.Query().Get("code")
	}
	rejected := func(err error, want string) {
		t.Helper()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != want {
			t.Errorf("exchange: %v, want %s", err, want)
		}
	}

	v := oauth2.GenerateVerifier()
	c := code(v)
	_, err := conf(p.ClientSecret, redirect).Exchange(ctx, c, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	rejected(err, "invalid_grant")
	_, err = conf("wrong", redirect).Exchange(ctx, c, oauth2.VerifierOption(v))
	rejected(err, "invalid_client")
	_, err = conf(p.ClientSecret, redirect+"/other").Exchange(ctx, c, oauth2.VerifierOption(v))
	rejected(err, "invalid_grant")
	if n := len(p.Violations()); n != 3 {
		t.Errorf("%d violations recorded, want 3", n)
	}

	tok, err := conf(p.ClientSecret, redirect).Exchange(ctx, c, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if idt, _ := tok.Extra("id_token").(string); strings.Count(idt, ".") != 2 {
		t.Errorf("id_token %q", idt)
	}
	_, err = conf(p.ClientSecret, redirect).Exchange(ctx, c, oauth2.VerifierOption(v))
	rejected(err, "invalid_grant")

	// Authorization without PKCE is refused back to the client.
	cb, err := p.Follow(conf(p.ClientSecret, redirect).AuthCodeURL("state-2", oauth2.SetAuthURLParam("nonce", "n")))
	if err != nil {
		t.Fatal(err)
	}
	if cb.Query().Get("error") != "invalid_request" || cb.Query().Has("code") {
		t.Errorf("authorization without PKCE: %s", cb)
	}

	// UserInfo needs an access token it issued.
	req, _ := http.NewRequest(http.MethodGet, p.URL(UserInfo), nil)
	req.Header.Set("Authorization", "Bearer forged")
	resp, err := p.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("UserInfo with a forged token: %s", resp.Status)
	}
}

// Refresh tokens: issued only for offline_access, refused for a disabled
// user or as scripted, rotated on request; a retired or unknown refresh
// token is a violation.
func TestProviderRefresh(t *testing.T) {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	p := New(func() time.Time { return now })
	defer p.Close()
	p.Script(Login{Subject: "alice-sub", IDClaims: map[string]any{"groups": []string{"staff"}}})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, p.Client())
	const redirect = "https://rp.example.com/callback"
	conf := func(scopes ...string) *oauth2.Config {
		return &oauth2.Config{
			ClientID: p.ClientID, ClientSecret: p.ClientSecret, RedirectURL: redirect, Scopes: scopes,
			Endpoint: oauth2.Endpoint{AuthURL: p.URL(Authorize), TokenURL: p.URL(Token), AuthStyle: oauth2.AuthStyleInHeader},
		}
	}
	signIn := func(c *oauth2.Config) *oauth2.Token {
		t.Helper()
		v := oauth2.GenerateVerifier()
		cb, err := p.Follow(c.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("nonce", "n")))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := c.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	refresh := func(rt string) (*oauth2.Token, error) {
		return conf("openid").TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	}
	rejected := func(err error, want string) {
		t.Helper()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != want {
			t.Errorf("refresh: %v, want %s", err, want)
		}
	}

	if tok := signIn(conf("openid")); tok.RefreshToken != "" {
		t.Errorf("a refresh token without offline_access")
	}
	offline := conf("openid", "offline_access")
	rt := signIn(offline).RefreshToken
	if !strings.HasPrefix(rt, "rt-") || len(p.RefreshTokens("alice-sub")) != 1 {
		t.Fatalf("refresh token %q, live %d", rt, len(p.RefreshTokens("alice-sub")))
	}

	// Without rotation the same refresh token keeps working; the refreshed
	// ID token carries the scripted claims and no nonce.
	p.ScriptRefresh(Refresh{IDClaims: map[string]any{"groups": []string{"contractors"}}})
	tok, err := refresh(rt)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != rt {
		t.Errorf("refresh token changed without rotation")
	}
	idt, _ := tok.Extra("id_token").(string)
	parts := strings.Split(idt, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q", idt)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(payload), `"groups":["contractors"]`) || strings.Contains(string(payload), "nonce") {
		t.Errorf("refreshed ID token claims %s", payload)
	}

	// Rotation retires the old token.
	p.ScriptRefresh(Refresh{Rotate: true, NoIDToken: true})
	tok, err = refresh(rt)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == rt || tok.Extra("id_token") != nil {
		t.Errorf("rotation: refresh token %q, id_token %v", tok.RefreshToken, tok.Extra("id_token"))
	}
	if v := p.Violations(); len(v) != 0 {
		t.Fatalf("violations %q", v)
	}
	_, err = refresh(rt)
	rejected(err, "invalid_grant")
	_, err = refresh("rt-never-issued")
	rejected(err, "invalid_grant")
	if n := len(p.Violations()); n != 2 {
		t.Errorf("%d violations, want 2 (retired and unknown refresh token)", n)
	}
	rt = tok.RefreshToken

	// Scripted outage and refusal, then a disabled user.
	p.ScriptRefresh(Refresh{Status: http.StatusServiceUnavailable, Error: "temporarily_unavailable"})
	_, err = refresh(rt)
	rejected(err, "temporarily_unavailable")
	p.ScriptRefresh(Refresh{})
	p.DisableUser("alice-sub")
	_, err = refresh(rt)
	rejected(err, "invalid_grant")
	if v := p.Violations(); len(v) != 0 || len(p.RefreshTokens("alice-sub")) != 0 {
		t.Errorf("disabled user: violations %q, live tokens %d", v, len(p.RefreshTokens("alice-sub")))
	}
	if n := p.Refreshes(); n != 6 {
		t.Errorf("%d refresh grants counted, want 6", n)
	}

	// A provider that ignores offline_access.
	p.Script(Login{Subject: "bob-sub", NoRefreshToken: true})
	if tok := signIn(offline); tok.RefreshToken != "" {
		t.Errorf("NoRefreshToken: refresh token issued")
	}
}
