package signin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig configures the relying party.
type OIDCConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Scopes       []string
	// HTTPClient is used for every call to the provider; its timeout bounds
	// them. Default: a client with a 10 s timeout.
	// AuthParams are added to every authorization request (provider
	// quirks, e.g. Google's access_type=offline).
	AuthParams map[string]string
	HTTPClient *http.Client
	// RetryAfter is how long a failed discovery is remembered before the
	// next attempt. Default 2 s.
	RetryAfter time.Duration
	Now        func() time.Time
}

// Provider errors, mapped to statuses at the HTTP edge.
var (
	// ErrUnavailable: the provider could not be reached or answered with a
	// server error (503).
	ErrUnavailable = errors.New("identity provider unavailable")
	// ErrRejected: the provider refused the code exchange (400).
	ErrRejected = errors.New("identity provider refused the sign-in")
	// ErrIDToken: the ID token failed verification (401).
	ErrIDToken = errors.New("invalid ID token")
)

// RP is an OIDC relying party whose discovery is lazy, cached and retried:
// nothing touches the network until the first sign-in.
type RP struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	failedAt time.Time
	lastErr  error
}

// NewRP returns a relying party. It does no I/O.
func NewRP(cfg OIDCConfig) (*RP, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("signin: issuer and client_id are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	return &RP{cfg: cfg}, nil
}

func (rp *RP) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, rp.cfg.HTTPClient)
}

func (rp *RP) load(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.provider != nil {
		return rp.provider, rp.verifier, nil
	}
	if !rp.failedAt.IsZero() && rp.cfg.Now().Sub(rp.failedAt) < rp.cfg.RetryAfter {
		return nil, nil, rp.lastErr
	}
	p, err := oidc.NewProvider(rp.ctx(ctx), rp.cfg.Issuer)
	if err != nil {
		rp.failedAt = rp.cfg.Now()
		rp.lastErr = fmt.Errorf("%w: discovery: %v", ErrUnavailable, err)
		return nil, nil, rp.lastErr
	}
	rp.provider = p
	rp.verifier = p.Verifier(&oidc.Config{ClientID: rp.cfg.ClientID, Now: rp.cfg.Now})
	rp.failedAt, rp.lastErr = time.Time{}, nil
	return rp.provider, rp.verifier, nil
}

func (rp *RP) oauth2(p *oidc.Provider, redirectURL string) *oauth2.Config {
	ep := p.Endpoint()
	if ep.AuthStyle == oauth2.AuthStyleAutoDetect {
		// Auto-detection would retry every failed exchange with the
		// secret in the body: decide from the discovery document.
		ep.AuthStyle = authStyle(p)
	}
	return &oauth2.Config{
		ClientID:     rp.cfg.ClientID,
		ClientSecret: rp.cfg.ClientSecret,
		Endpoint:     ep,
		RedirectURL:  redirectURL,
		Scopes:       rp.cfg.Scopes,
	}
}

// AuthRequest is what the authorization request carries.
type AuthRequest struct {
	RedirectURL string
	State       string
	Nonce       string
	Verifier    string // PKCE verifier; the S256 challenge is sent
	LoginHint   string
	// Fresh asks the provider for a new login: prompt=login, or max_age
	// when MaxAge is set.
	Fresh  bool
	MaxAge time.Duration
}

// AuthCodeURL returns the provider's authorization URL.
func (rp *RP) AuthCodeURL(ctx context.Context, a AuthRequest) (string, error) {
	p, _, err := rp.load(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{
		oidc.Nonce(a.Nonce),
		oauth2.S256ChallengeOption(a.Verifier),
	}
	for k, v := range rp.cfg.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if a.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", a.LoginHint))
	}
	if a.Fresh {
		if a.MaxAge > 0 {
			opts = append(opts, oauth2.SetAuthURLParam("max_age", fmt.Sprint(int64(a.MaxAge/time.Second))))
		} else {
			opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
		}
	}
	return rp.oauth2(p, a.RedirectURL).AuthCodeURL(a.State, opts...), nil
}

// Identity is the verified outcome of a sign-in.
type Identity struct {
	Issuer    string
	Subject   string
	SessionID string
	AuthTime  time.Time
	// Claims are the ID token's claims, completed from UserInfo by Claim.
	Claims map[string]any

	rp    *RP
	token *oauth2.Token
	info  map[string]any
}

// Exchange redeems the code, verifies the ID token (issuer, audience,
// expiry, signature, nonce) and returns the identity.
func (rp *RP) Exchange(ctx context.Context, code, verifier, redirectURL, nonce string) (*Identity, error) {
	p, v, err := rp.load(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := rp.oauth2(p, redirectURL).Exchange(rp.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, fmt.Errorf("%w: %s", ErrRejected, re.ErrorCode)
		}
		return nil, fmt.Errorf("%w: token endpoint: %v", ErrUnavailable, redactErr(err))
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return nil, fmt.Errorf("%w: no id_token in the token response", ErrIDToken)
	}
	idt, err := v.Verify(rp.ctx(ctx), raw)
	if err != nil {
		// go-oidc flattens key-set errors to text: failing to fetch the
		// provider's keys is an outage, not a bad token.
		if strings.Contains(err.Error(), "fetching keys") {
			return nil, fmt.Errorf("%w: jwks: %v", ErrUnavailable, redactErr(err))
		}
		return nil, fmt.Errorf("%w: %v", ErrIDToken, err)
	}
	if idt.Subject == "" {
		return nil, fmt.Errorf("%w: no subject", ErrIDToken)
	}
	if idt.Nonce != nonce {
		return nil, fmt.Errorf("%w: nonce mismatch", ErrIDToken)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIDToken, err)
	}
	id := &Identity{Issuer: idt.Issuer, Subject: idt.Subject, Claims: claims, rp: rp, token: tok}
	if s, ok := claims["sid"].(string); ok {
		id.SessionID = s
	}
	if at, ok := claims["auth_time"].(float64); ok {
		id.AuthTime = time.Unix(int64(at), 0)
	}
	return id, nil
}

// Claim returns a claim of the ID token or, when the ID token lacks it, of
// UserInfo — whose subject must then equal the ID token's.
func (id *Identity) Claim(ctx context.Context, name string) (any, error) {
	if v, ok := id.Claims[name]; ok {
		return v, nil
	}
	if id.info == nil {
		p, _, err := id.rp.load(ctx)
		if err != nil {
			return nil, err
		}
		ui, err := p.UserInfo(id.rp.ctx(ctx), oauth2.StaticTokenSource(id.token))
		if err != nil {
			return nil, fmt.Errorf("%w: userinfo: %v", ErrUnavailable, redactErr(err))
		}
		if ui.Subject != id.Subject {
			return nil, fmt.Errorf("%w: userinfo subject differs from the ID token's", ErrIDToken)
		}
		info := map[string]any{}
		if err := ui.Claims(&info); err != nil {
			return nil, fmt.Errorf("%w: userinfo: %v", ErrIDToken, err)
		}
		id.info = info
	}
	return id.info[name], nil
}

// redactErr keeps URLs with query strings (which may hold codes) out of
// error text.
func redactErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, "?"); i >= 0 {
		if j := strings.IndexAny(s[i:], " \"'"); j >= 0 {
			return s[:i] + "?…" + s[i+j:]
		}
		return s[:i] + "?…"
	}
	return s
}

// authStyle picks client_secret_basic (the OIDC default) unless the provider
// only supports client_secret_post.
func authStyle(p *oidc.Provider) oauth2.AuthStyle {
	var doc struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := p.Claims(&doc); err != nil || len(doc.Methods) == 0 {
		return oauth2.AuthStyleInHeader
	}
	post := false
	for _, m := range doc.Methods {
		switch m {
		case "client_secret_basic":
			return oauth2.AuthStyleInHeader
		case "client_secret_post":
			post = true
		}
	}
	if post {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// RefreshToken is the provider's refresh token from the code exchange, if
// it issued one (scope offline_access).
func (id *Identity) RefreshToken() string {
	if id.token == nil {
		return ""
	}
	return id.token.RefreshToken
}

// Refresh redeems the provider's refresh token for subject: the provider
// re-checks the user. A refusal (the user is disabled, the session revoked)
// is ErrRejected; an outage ErrUnavailable. The returned identity's claims
// come from the refreshed ID token when there is one, else from UserInfo.
func (rp *RP) Refresh(ctx context.Context, refreshToken, subject string) (*Identity, error) {
	p, v, err := rp.load(ctx)
	if err != nil {
		return nil, err
	}
	cfg := rp.oauth2(p, "")
	tok, err := cfg.TokenSource(rp.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		// Only invalid_grant refuses the user. Anything else (our client
		// refused after a secret rotation, a provider error) is treated as
		// an outage: it must not cut off every device at once.
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return nil, fmt.Errorf("%w: refresh: %s", ErrRejected, re.ErrorCode)
		}
		return nil, fmt.Errorf("%w: refresh: %v", ErrUnavailable, redactErr(err))
	}
	id := &Identity{Issuer: rp.cfg.Issuer, Subject: subject, Claims: map[string]any{}, rp: rp, token: tok}
	if raw, ok := tok.Extra("id_token").(string); ok && raw != "" {
		idt, err := v.Verify(rp.ctx(ctx), raw)
		if err != nil {
			return nil, fmt.Errorf("%w: refreshed ID token: %v", ErrIDToken, err)
		}
		if idt.Subject != subject {
			return nil, fmt.Errorf("%w: refreshed ID token names another subject", ErrIDToken)
		}
		id.Issuer = idt.Issuer
		if err := idt.Claims(&id.Claims); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrIDToken, err)
		}
	}
	return id, nil
}
