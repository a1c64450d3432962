package fakeidp

import (
	"context"
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
