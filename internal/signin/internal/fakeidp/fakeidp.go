// Package fakeidp is an OpenID Connect provider for tests: discovery, JWKS,
// an authorization endpoint that signs the scripted user in at once, a token
// endpoint (authorization code with PKCE S256 and client authentication;
// refresh tokens for scope offline_access, optionally rotating) and
// UserInfo, on an httptest.Server. Tests script the claims and the
// faults; the provider records what the relying party sent and reports
// protocol violations.
package fakeidp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Endpoint names one of the provider's endpoints.
type Endpoint string

// Endpoints.
const (
	Discovery Endpoint = "discovery"
	JWKS      Endpoint = "jwks"
	Authorize Endpoint = "authorize"
	Token     Endpoint = "token"
	UserInfo  Endpoint = "userinfo"
)

var paths = map[Endpoint]string{
	Discovery: "/.well-known/openid-configuration",
	JWKS:      "/jwks",
	Authorize: "/authorize",
	Token:     "/token",
	UserInfo:  "/userinfo",
}

// Login scripts what the provider does for the next authorizations.
type Login struct {
	// Subject is the user's sub.
	Subject string
	// IDClaims are added to the ID token's claims, replacing the defaults
	// (iss, sub, aud, exp, iat, nonce, auth_time); a nil value removes the
	// claim.
	IDClaims map[string]any
	// UserInfoClaims are UserInfo's claims; sub defaults to Subject, a nil
	// value removes a claim.
	UserInfoClaims map[string]any

	// Error makes the authorization endpoint redirect back with
	// error=<Error> instead of a code.
	Error string
	// TokenStatus and TokenError make the token endpoint answer with that
	// status and OAuth error code instead of tokens (the code stays usable).
	TokenStatus int
	TokenError  string
	// NoIDToken leaves id_token out of the token response.
	NoIDToken bool
	// RawIDToken replaces the signed ID token.
	RawIDToken string
	// SigningKey signs the ID token instead of the published key (with the
	// published key id).
	SigningKey *rsa.PrivateKey
	// UserInfoStatus makes UserInfo answer with that status.
	UserInfoStatus int
	// NoRefreshToken issues no refresh token even for scope offline_access
	// (a provider that wants more, like Google's access_type=offline).
	NoRefreshToken bool
}

// Refresh scripts what the token endpoint does with refresh_token grants.
type Refresh struct {
	// Status and Error refuse every refresh with that status and OAuth
	// error code: 400 invalid_grant is a refusal of the user, a 5xx an
	// outage.
	Status int
	Error  string
	// Rotate replaces the refresh token on every refresh; the old one is
	// retired and presenting it again is a protocol violation.
	Rotate bool
	// NoIDToken leaves id_token out of refresh responses.
	NoIDToken bool
	// Subject, when set, is the sub of refreshed ID tokens (and of
	// UserInfo with the refreshed access token).
	Subject string
	// IDClaims and UserInfoClaims are laid over the user's claims in
	// every refresh response (a nil value removes a claim).
	IDClaims       map[string]any
	UserInfoClaims map[string]any
}

type grant struct {
	login       Login
	clientQuery url.Values
	challenge   string
	nonce       string
	redirectURI string
	authTime    time.Time
	accessToken string
	// offline is set when the authorization asked for offline_access.
	offline bool
}

// Provider is a running fake OpenID Connect provider.
type Provider struct {
	// Issuer is the provider's issuer URL (no trailing slash).
	Issuer       string
	ClientID     string
	ClientSecret string

	srv *httptest.Server
	now func() time.Time
	key *rsa.PrivateKey
	kid string

	mu         sync.Mutex
	login      Login
	down       map[Endpoint]int
	hits       map[Endpoint]int
	codes      map[string]*grant
	access     map[string]*grant
	refresh    Refresh
	refreshes  map[string]*grant // live refresh tokens
	retired    map[string]bool   // refresh tokens replaced by rotation
	revoked    map[string]bool   // refresh tokens of disabled users
	authz      []url.Values
	tokenReqs  []url.Values
	issued     []string
	violations []string
}

// keyBits is the size of the provider's RSA keys.
const keyBits = 2048

var (
	keyOnce sync.Once
	keys    [2]*rsa.PrivateKey
	errKey  error
)

func testKeys() ([2]*rsa.PrivateKey, error) {
	keyOnce.Do(func() {
		for i := range keys {
			if keys[i], errKey = rsa.GenerateKey(rand.Reader, keyBits); errKey != nil {
				return
			}
		}
	})
	return keys, errKey
}

// OtherKey returns an RSA key the provider does not publish, for forged
// signatures.
func OtherKey() *rsa.PrivateKey {
	k, err := testKeys()
	if err != nil {
		panic(err)
	}
	return k[1]
}

// New starts a provider whose clock is now (time.Now when nil). Close it
// when done.
func New(now func() time.Time) *Provider {
	k, err := testKeys()
	if err != nil {
		panic(err)
	}
	if now == nil {
		now = time.Now
	}
	p := &Provider{
		ClientID:     "mdmauth-test",
		ClientSecret: "client-secret-" + rand.Text(),
		now:          now,
		key:          k[0],
		kid:          "key-1",
		login:        Login{Subject: "alice-sub"},
		down:         map[Endpoint]int{},
		hits:         map[Endpoint]int{},
		codes:        map[string]*grant{},
		access:       map[string]*grant{},
		refreshes:    map[string]*grant{},
		retired:      map[string]bool{},
		revoked:      map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+paths[Discovery], p.guard(Discovery, p.discovery))
	mux.HandleFunc("GET "+paths[JWKS], p.guard(JWKS, p.jwks))
	mux.HandleFunc("GET "+paths[Authorize], p.guard(Authorize, p.authorize))
	mux.HandleFunc("POST "+paths[Token], p.guard(Token, p.token))
	mux.HandleFunc("GET "+paths[UserInfo], p.guard(UserInfo, p.userinfo))
	p.srv = httptest.NewServer(mux)
	p.Issuer = p.srv.URL
	return p
}

// Close shuts the provider down; later connections are refused.
func (p *Provider) Close() { p.srv.Close() }

// Client returns an HTTP client for the provider.
func (p *Provider) Client() *http.Client { return p.srv.Client() }

// URL returns the URL of an endpoint.
func (p *Provider) URL(e Endpoint) string { return p.Issuer + paths[e] }

// Script sets what the next authorizations do.
func (p *Provider) Script(l Login) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.login = l
}

// ScriptRefresh sets what the next refresh_token grants do.
func (p *Provider) ScriptRefresh(r Refresh) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.IDClaims = maps.Clone(r.IDClaims)
	r.UserInfoClaims = maps.Clone(r.UserInfoClaims)
	p.refresh = r
}

// DisableUser revokes every refresh token issued to subject: the next
// refresh with one of them is refused with invalid_grant (no violation).
func (p *Provider) DisableUser(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for rt, g := range p.refreshes {
		if g.login.Subject == subject {
			delete(p.refreshes, rt)
			p.revoked[rt] = true
		}
	}
}

// RefreshTokens returns the live refresh tokens issued to subject.
func (p *Provider) RefreshTokens(subject string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for rt, g := range p.refreshes {
		if g.login.Subject == subject {
			out = append(out, rt)
		}
	}
	slices.Sort(out)
	return out
}

// Refreshes returns how many refresh_token grants the token endpoint
// received.
func (p *Provider) Refreshes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.tokenReqs {
		if f.Get("grant_type") == "refresh_token" {
			n++
		}
	}
	return n
}

// SetDown makes an endpoint answer with status (0: serve normally).
func (p *Provider) SetDown(e Endpoint, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if status == 0 {
		delete(p.down, e)
		return
	}
	p.down[e] = status
}

// Hits returns how many requests an endpoint received.
func (p *Provider) Hits(e Endpoint) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[e]
}

// Authorizations returns the query of every authorization request.
func (p *Provider) Authorizations() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.authz)
}

// TokenRequests returns the form of every token request, without the
// client secret.
func (p *Provider) TokenRequests() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.tokenReqs)
}

// Secrets returns every credential that passed through the provider: codes,
// PKCE verifiers, access and ID tokens, and the client secret.
func (p *Provider) Secrets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string{p.ClientSecret}, p.issued...)
}

// Violations returns the protocol violations the provider saw and forgets
// them.
func (p *Provider) Violations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.violations
	p.violations = nil
	return v
}

func (p *Provider) violate(format string, args ...any) {
	p.violations = append(p.violations, fmt.Sprintf(format, args...))
}

func (p *Provider) guard(e Endpoint, h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.hits[e]++
		status := p.down[e]
		p.mu.Unlock()
		if status != 0 {
			writeJSON(w, status, map[string]string{"error": "temporarily_unavailable"})
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.Issuer,
		"authorization_endpoint":                p.URL(Authorize),
		"token_endpoint":                        p.URL(Token),
		"userinfo_endpoint":                     p.URL(UserInfo),
		"jwks_uri":                              p.URL(JWKS),
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"backchannel_logout_supported":          true,
		"backchannel_logout_session_supported":  true,
	})
}

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

// authorize signs the scripted user in at once and redirects back.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.authz = append(p.authz, q)

	redirect := q.Get("redirect_uri")
	u, err := url.Parse(redirect)
	if redirect == "" || err != nil || !u.IsAbs() {
		p.violate("authorize: bad redirect_uri %q", redirect)
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	back := func(v url.Values) {
		v.Set("state", q.Get("state"))
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	var bad []string
	if q.Get("response_type") != "code" {
		bad = append(bad, "response_type="+q.Get("response_type"))
	}
	if q.Get("client_id") != p.ClientID {
		bad = append(bad, "client_id="+q.Get("client_id"))
	}
	if !slices.Contains(strings.Fields(q.Get("scope")), "openid") {
		bad = append(bad, "scope without openid")
	}
	if q.Get("state") == "" {
		bad = append(bad, "no state")
	}
	if q.Get("nonce") == "" {
		bad = append(bad, "no nonce")
	}
	if q.Get("code_challenge_method") != "S256" {
		bad = append(bad, "code_challenge_method="+q.Get("code_challenge_method"))
	}
	if c, err := base64.RawURLEncoding.DecodeString(q.Get("code_challenge")); err != nil || len(c) != sha256.Size {
		bad = append(bad, "code_challenge is not a base64url SHA-256")
	}
	if len(bad) > 0 {
		p.violate("authorize: %s", strings.Join(bad, ", "))
		back(url.Values{"error": {"invalid_request"}})
		return
	}
	if p.login.Error != "" {
		back(url.Values{"error": {p.login.Error}, "error_description": {"scripted"}})
		return
	}
	code := "code-" + rand.Text()
	p.issued = append(p.issued, code)
	p.codes[code] = &grant{
		login:       cloneLogin(p.login),
		clientQuery: q,
		challenge:   q.Get("code_challenge"),
		nonce:       q.Get("nonce"),
		redirectURI: redirect,
		authTime:    p.now(),
		offline:     slices.Contains(strings.Fields(q.Get("scope")), "offline_access"),
	}
	back(url.Values{"code": {code}})
}

func cloneLogin(l Login) Login {
	l.IDClaims = maps.Clone(l.IDClaims)
	l.UserInfoClaims = maps.Clone(l.UserInfoClaims)
	return l
}

func (p *Provider) clientAuth(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if ok {
		// RFC 6749 section 2.3.1: form-urlencoded inside Basic.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == p.ClientID && subtle.ConstantTimeCompare([]byte(secret), []byte(p.ClientSecret)) == 1
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	form := maps.Clone(r.PostForm)
	form.Del("client_secret")
	p.tokenReqs = append(p.tokenReqs, form)
	if v := r.PostForm.Get("code_verifier"); v != "" {
		p.issued = append(p.issued, v)
	}
	if !p.clientAuth(r) {
		p.violate("token: client authentication failed")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "authorization_code":
		p.exchange(w, r)
	case "refresh_token":
		p.refreshGrant(w, r)
	default:
		p.violate("token: grant_type=%s", gt)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
	}
}

// exchange redeems an authorization code. Called with p.mu held.
func (p *Provider) exchange(w http.ResponseWriter, r *http.Request) {
	g := p.codes[r.PostForm.Get("code")]
	if g == nil {
		p.violate("token: unknown or used code")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	if g.login.TokenStatus != 0 {
		writeJSON(w, g.login.TokenStatus, map[string]string{"error": g.login.TokenError})
		return
	}
	if ru := r.PostForm.Get("redirect_uri"); ru != g.redirectURI {
		p.violate("token: redirect_uri %q, authorized %q", ru, g.redirectURI)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		p.violate("token: code_verifier does not match the S256 code_challenge")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	delete(p.codes, r.PostForm.Get("code"))

	resp, err := p.tokens(g, !g.login.NoIDToken)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	if g.offline && !g.login.NoRefreshToken {
		rt := "rt-" + rand.Text()
		p.refreshes[rt] = g
		p.issued = append(p.issued, rt)
		resp["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, resp)
}

// tokens issues an access token (and an ID token) for g. Called with p.mu
// held.
func (p *Provider) tokens(g *grant, withIDToken bool) (map[string]any, error) {
	g.accessToken = "at-" + rand.Text()
	p.access[g.accessToken] = g
	p.issued = append(p.issued, g.accessToken)
	resp := map[string]any{"access_token": g.accessToken, "token_type": "Bearer", "expires_in": 3600}
	if withIDToken {
		idt := g.login.RawIDToken
		if idt == "" {
			var err error
			if idt, err = p.idToken(g); err != nil {
				return nil, err
			}
		}
		p.issued = append(p.issued, idt)
		resp["id_token"] = idt
	}
	return resp, nil
}

// refreshGrant redeems a refresh token: the provider re-checks the user
// (scripted with ScriptRefresh and DisableUser). Called with p.mu held.
func (p *Provider) refreshGrant(w http.ResponseWriter, r *http.Request) {
	rt := r.PostForm.Get("refresh_token")
	g := p.refreshes[rt]
	switch {
	case rt == "":
		p.violate("token: refresh without refresh_token")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	case p.retired[rt]:
		p.violate("token: refresh token used again after rotation")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	case p.revoked[rt]:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	case g == nil:
		p.violate("token: unknown refresh token")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	if r.PostForm.Has("redirect_uri") || r.PostForm.Has("code") || r.PostForm.Has("code_verifier") {
		p.violate("token: refresh with authorization code parameters")
	}
	sc := p.refresh
	if sc.Status != 0 {
		writeJSON(w, sc.Status, map[string]string{"error": sc.Error})
		return
	}
	// The refreshed grant: the same user and authentication, with the
	// claims the provider has now; no nonce (OpenID Connect Core 12.2).
	ng := *g
	ng.login = cloneLogin(g.login)
	if sc.Subject != "" {
		ng.login.Subject = sc.Subject
	}
	if ng.login.IDClaims == nil {
		ng.login.IDClaims = map[string]any{}
	}
	maps.Copy(ng.login.IDClaims, sc.IDClaims)
	if len(sc.UserInfoClaims) > 0 {
		if ng.login.UserInfoClaims == nil {
			ng.login.UserInfoClaims = map[string]any{}
		}
		maps.Copy(ng.login.UserInfoClaims, sc.UserInfoClaims)
	}
	ng.login.RawIDToken, ng.login.SigningKey = "", nil
	ng.nonce = ""
	resp, err := p.tokens(&ng, !sc.NoIDToken)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	if sc.Rotate {
		next := "rt-" + rand.Text()
		delete(p.refreshes, rt)
		p.retired[rt] = true
		p.refreshes[next] = g
		p.issued = append(p.issued, next)
		resp["refresh_token"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

func (p *Provider) idToken(g *grant) (string, error) {
	now := p.now()
	claims := map[string]any{
		"iss":       p.Issuer,
		"sub":       g.login.Subject,
		"aud":       p.ClientID,
		"iat":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
		"auth_time": g.authTime.Unix(),
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	overlay(claims, g.login.IDClaims)
	return p.sign(claims, g.login.SigningKey, "JWT")
}

// overlay lays extra over claims; a nil value removes the claim.
func overlay(claims, extra map[string]any) {
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
}

// sign returns the compact JWS (RS256) of claims, under the published key
// id, signed with key or, when key is nil, the published key; typ is the
// JOSE typ header, "" for none.
func (p *Provider) sign(claims map[string]any, key *rsa.PrivateKey, typ string) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	if key == nil {
		key = p.key
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: p.kid}}, opts)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g := p.access[at]
	if !ok || g == nil {
		p.violate("userinfo: no valid access token")
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	if g.login.UserInfoStatus != 0 {
		writeJSON(w, g.login.UserInfoStatus, map[string]string{"error": "server_error"})
		return
	}
	claims := map[string]any{"sub": g.login.Subject}
	overlay(claims, g.login.UserInfoClaims)
	writeJSON(w, http.StatusOK, claims)
}

// Follow sends the browser's request for an authorization URL and returns
// where the provider redirects it (the relying party's callback).
func (p *Provider) Follow(authURL string) (*url.URL, error) {
	c := *p.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(authURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("fakeidp: authorization answered %s", resp.Status)
	}
	return resp.Location()
}
