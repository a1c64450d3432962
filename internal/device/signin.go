package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Browser performs the interactive part of a sign-in, as
// ASWebAuthenticationSession and the user do: it opens signInURL and
// returns the apple-remotemanagement-user-login: URL the flow ends at.
type Browser interface {
	SignIn(ctx context.Context, signInURL string) (callbackURL string, err error)
}

// oauthState is what the device keeps after an apple-oauth2 sign-in.
type oauthState struct {
	tokenURL     string
	clientID     string
	refreshToken string
}

// signIn answers a challenge and returns the new access token.
func (d *Device) signIn(ctx context.Context, ch *Challenge) (string, error) {
	if d.cfg.Browser == nil {
		return "", errors.New("sign-in: no Browser configured")
	}
	switch ch.Method {
	case MethodWeb:
		return d.webSignIn(ctx, ch)
	case MethodOAuth2:
		return d.oauthSignIn(ctx, ch)
	}
	return "", deviation(StepChallenge, "method %q", ch.Method)
}

// webSignIn runs apple-as-web: the challenge url with its query replaced by
// ?user-identifier=<typed identifier>, then the callback's access-token.
func (d *Device) webSignIn(ctx context.Context, ch *Challenge) (string, error) {
	u, err := d.checkURL(StepChallenge, "sign-in url", ch.URL)
	if err != nil {
		return "", err
	}
	u.RawQuery = "user-identifier=" + escapeQueryValue(d.cfg.UserIdentifier, keepIdentifier)
	u.Fragment, u.RawFragment = "", ""
	d.log(StepSignIn, "opening web sign-in %s", shortURL(u))
	cb, err := d.cfg.Browser.SignIn(ctx, u.String())
	if err != nil {
		return "", err
	}
	tok, err := ParseSignInCallback(cb)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	d.oauth = nil
	d.mu.Unlock()
	d.log(StepCallback, "received an access token")
	return tok, nil
}

// oauthSignIn runs apple-oauth2: a public-client authorization-code grant
// without PKCE, nonce or client secret.
func (d *Device) oauthSignIn(ctx context.Context, ch *Challenge) (string, error) {
	if _, err := d.checkURL(StepChallenge, "authorization-url", ch.AuthorizationURL); err != nil {
		return "", err
	}
	if _, err := d.checkURL(StepChallenge, "token-url", ch.TokenURL); err != nil {
		return "", err
	}
	state, err := newUUID(d.rand)
	if err != nil {
		return "", err
	}
	authURL := ch.AuthorizationURL
	switch {
	case !strings.Contains(authURL, "?"):
		authURL += "?"
	case !strings.HasSuffix(authURL, "?") && !strings.HasSuffix(authURL, "&"):
		authURL += "&"
	}
	authURL += "response_type=code&client_id=" + escapeQueryValue(ch.ClientID, "") +
		"&redirect_uri=" + escapeQueryValue(ch.RedirectURL, "")
	if ch.Scope != "" {
		authURL += "&scope=" + escapeQueryValue(ch.Scope, "")
	}
	authURL += "&state=" + state + "&login_hint=" + escapeQueryValue(d.cfg.UserIdentifier, "")
	d.log(StepSignIn, "opening OAuth 2 authorization %s", clipURL(authURL))
	cb, err := d.cfg.Browser.SignIn(ctx, authURL)
	if err != nil {
		return "", err
	}
	code, err := parseOAuthCallback(cb, ch.RedirectURL, state)
	if err != nil {
		return "", err
	}
	ts, err := d.tokenRequest(ctx, ch.TokenURL, [][2]string{
		{"grant_type", "authorization_code"},
		{"code", code},
		{"redirect_uri", ch.RedirectURL},
		{"client_id", ch.ClientID},
	})
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	d.oauth = &oauthState{tokenURL: ch.TokenURL, clientID: ch.ClientID, refreshToken: ts.refresh}
	d.mu.Unlock()
	d.log(StepToken, "received an access token (refresh token: %t)", ts.refresh != "")
	return ts.access, nil
}

// refresh tries a silent OAuth 2 refresh. ok is false when the device holds
// no refresh token.
func (d *Device) refresh(ctx context.Context) (token string, ok bool, err error) {
	d.mu.Lock()
	st := d.oauth
	var s oauthState
	if st != nil {
		s = *st
	}
	d.mu.Unlock()
	if st == nil || s.refreshToken == "" {
		return "", false, nil
	}
	ts, err := d.tokenRequest(ctx, s.tokenURL, [][2]string{
		{"grant_type", "refresh_token"},
		{"refresh_token", s.refreshToken},
		{"client_id", s.clientID},
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refreshes++
	if err != nil {
		// A failed refresh leaves only an interactive sign-in.
		d.oauth = nil
		return "", true, err
	}
	// The device replaces its stored set wholesale.
	d.oauth = &oauthState{tokenURL: s.tokenURL, clientID: s.clientID, refreshToken: ts.refresh}
	if ts.refresh == "" {
		d.log(StepToken, "note: refresh answer has no refresh_token; silent refresh stops for this device")
	}
	return ts.access, true, nil
}

type tokenSet struct {
	access    string
	refresh   string
	expiresIn int64 // 0 when absent
}

// tokenRequest POSTs an OAuth 2 token request the way the device does (':',
// '/' and '+' left unencoded, no Authorization header) and checks the
// answer: status 200, a JSON object with token_type Bearer (any case) and
// access_token; refresh_token and expires_in (number or numeric string)
// optional.
func (d *Device) tokenRequest(ctx context.Context, tokenURL string, form [][2]string) (*tokenSet, error) {
	parts := make([]string, len(form))
	for i, kv := range form {
		parts[i] = kv[0] + "=" + escapeQueryValue(kv[1], keepTokenBody)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(strings.Join(parts, "&")))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", userAgentDMC)
	resp, body, err := d.do(req, limitSmall)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", StepToken, err)
	}
	d.log(StepToken, "POST %s (%s) → %d", clipURL(tokenURL), form[0][1], resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		if obj, err := parseStrictObject(body); err == nil {
			if code, ok, _ := obj.stringField("error"); ok {
				desc, _, _ := obj.stringField("error_description")
				return nil, &OAuthError{Step: StepToken, Status: resp.StatusCode, Code: code, Description: desc}
			}
		}
		return nil, &HTTPError{Step: StepToken, Status: resp.StatusCode, Body: body}
	}
	obj, err := parseStrictObject(body)
	if err != nil {
		return nil, &ProtocolError{Step: StepToken, Reason: "token answer is not a JSON object", Err: err}
	}
	tt, ok, err := obj.stringField("token_type")
	if err != nil || !ok {
		return nil, deviation(StepToken, "token answer without a string token_type")
	}
	if !strings.EqualFold(tt, "Bearer") {
		return nil, deviation(StepToken, "token_type %q, want Bearer", tt)
	}
	ts := &tokenSet{}
	if ts.access, ok, err = obj.stringField("access_token"); err != nil || !ok || ts.access == "" {
		return nil, deviation(StepToken, "token answer without a string access_token")
	}
	if ts.refresh, _, err = obj.stringField("refresh_token"); err != nil {
		return nil, deviation(StepToken, "refresh_token is not a string")
	}
	if raw, ok := obj.Values["expires_in"]; ok {
		if ts.expiresIn, err = parseExpiresIn(raw); err != nil {
			return nil, deviation(StepToken, "expires_in %s is neither a number nor a numeric string", clip(string(raw), 20))
		}
	}
	return ts, nil
}

func parseExpiresIn(raw json.RawMessage) (int64, error) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return strconv.ParseInt(n.String(), 10, 64)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}
