package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/ratelimit"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/token"
)

// ipHeader carries the test client's address; the gateway's ClientIP reads
// it the way the Caddy module reads Caddy's (trusted_proxies) address.
const ipHeader = "X-Test-Client"

func fromIP(r *http.Request, ip string) *http.Request {
	r.Header.Set(ipHeader, ip)
	return r
}

func withIPs(e *env) {
	e.gw.SetClientIP(func(r *http.Request) string { return r.Header.Get(ipHeader) })
}

// assert429 checks a limit's answer.
func assert429(tb testing.TB, w *httptest.ResponseRecorder, what string) {
	tb.Helper()
	if w.Code != http.StatusTooManyRequests {
		tb.Fatalf("%s: status %d, want 429; body %q", what, w.Code, w.Body)
	}
	if ra := w.Header().Get("Retry-After"); ra == "" || ra == "0" || strings.ContainsAny(ra, ". ") {
		tb.Errorf("%s: Retry-After %q, want whole seconds", what, ra)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		tb.Errorf("%s: Cache-Control %q", what, cc)
	}
}

// exceeded returns the ratelimit.exceeded entries of limit.
func (e *env) exceeded(limit string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, l := range e.logs.All() {
		m := l.ContextMap()
		if m["event"] == audit.RateLimitExceeded && m["limit"] == limit {
			out = append(out, l)
		}
	}
	return out
}

func discoveryOf(ui string) *http.Request {
	return discoveryRequest(http.MethodGet, "user-identifier="+url.QueryEscape(ui))
}

func TestDiscoveryLimits(t *testing.T) {
	e := newEnv(t)
	withIPs(e)
	limited := map[string]int{}
	e.gw.Hooks.Limited = func(l string) { limited[l]++ }
	e.gw.SetLimits(gateway.Limits{
		Discovery:     ratelimit.Rate{Events: 60, Per: time.Minute, Burst: 5},
		DiscoveryUser: ratelimit.Rate{Events: 6, Per: time.Minute, Burst: 3},
	})
	// The Limited hook sees every refusal, the audit log the first of
	// each client.
	defer func() {
		if limited[gateway.LimitDiscoveryUser] != 1 || limited[gateway.LimitDiscovery] != 3 {
			t.Errorf("Limited hook calls = %v, want discovery_user 1, discovery 3", limited)
		}
	}()
	// Per user identifier, across addresses and letter case.
	for i, ui := range []string{"alice@example.com", "Alice@Example.com", "ALICE@example.com"} {
		if w := e.mustServe(fromIP(discoveryOf(ui), fmt.Sprint("192.0.2.", i)), failNext(t)); w.Code != http.StatusOK {
			t.Fatalf("discovery %d: %d", i, w.Code)
		}
	}
	w := e.mustServe(fromIP(discoveryOf("alice@EXAMPLE.com"), "192.0.2.9"), failNext(t))
	assert429(t, w, "fourth discovery of alice")
	if w.Header().Get("Retry-After") != "10" {
		t.Errorf("Retry-After %q, want 10 (one event every 10 s)", w.Header().Get("Retry-After"))
	}
	if w := e.mustServe(fromIP(discoveryOf("bob@example.com"), "192.0.2.9"), failNext(t)); w.Code != http.StatusOK {
		t.Fatalf("bob is limited by alice's limit: %d", w.Code)
	}
	ex := e.exceeded(gateway.LimitDiscoveryUser)
	if len(ex) != 1 || ex[0].ContextMap()["user_identifier"] != "alice@example.com" || ex[0].ContextMap()["client_ip"] != "192.0.2.9" {
		t.Fatalf("audit entries: %+v", ex)
	}
	// Per client address: 5, then 429; another address is unaffected.
	for i := 0; i < 4; i++ {
		e.mustServe(fromIP(discoveryOf(fmt.Sprintf("u%d@example.com", i)), "198.51.100.1"), failNext(t))
	}
	e.mustServe(fromIP(discoveryOf("x@example.com"), "198.51.100.1"), failNext(t))
	for i := 0; i < 3; i++ {
		assert429(t, e.mustServe(fromIP(discoveryOf("y@example.com"), "198.51.100.1"), failNext(t)), "sixth discovery from one address")
	}
	if n := len(e.exceeded(gateway.LimitDiscovery)); n != 1 {
		t.Errorf("%d audit entries for one flooding address, want 1", n)
	}
	if w := e.mustServe(fromIP(discoveryOf("y@example.com"), "198.51.100.2"), failNext(t)); w.Code != http.StatusOK {
		t.Fatalf("another address is limited: %d", w.Code)
	}
	e.clock.Advance(time.Second)
	if w := e.mustServe(fromIP(discoveryOf("z@example.com"), "198.51.100.1"), failNext(t)); w.Code != http.StatusOK {
		t.Fatalf("after a second the address has a new event: %d", w.Code)
	}
}

// The MDM paths are not limited per address by default: a NAT full of
// devices presenting unknown tokens keeps getting challenges.
func TestBearerFailuresOffByDefault(t *testing.T) {
	e := newEnv(t)
	withIPs(e)
	e.gw.SetLimits(gateway.DefaultLimits())
	body := fixture(t, "checkin/ue-tokenupdate.plist")
	for i := 0; i < 300; i++ {
		w := e.mustServe(fromIP(mdmRequest(body, "unknown-"+fmt.Sprint(i)), "203.0.113.1"), failNext(t))
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("request %d: %d, want 401", i, w.Code)
		}
	}
}

func TestBearerFailures(t *testing.T) {
	e := newEnv(t)
	withIPs(e)
	e.gw.SetLimits(gateway.Limits{BearerFailures: ratelimit.Rate{Events: 10, Per: time.Minute, Burst: 3}})
	body := fixture(t, "checkin/ue-tokenupdate.plist")
	const nat = "203.0.113.1"
	for i := 0; i < 3; i++ {
		if w := e.mustServe(fromIP(mdmRequest(body, fmt.Sprint("forged-", i)), nat), failNext(t)); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i, w.Code)
		}
	}
	assert429(t, e.mustServe(fromIP(mdmRequest(body, "forged-x"), nat), failNext(t)), "fourth unknown bearer")
	// Ordinary refusals are neither counted nor limited: no bearer, an
	// expired token.
	if w := e.mustServe(fromIP(mdmRequest(body, ""), nat), failNext(t)); w.Code != http.StatusUnauthorized {
		t.Fatalf("no bearer: %d, want the 401 challenge", w.Code)
	}
	old, _ := e.issue(grant("byod"))
	e.clock.Advance(2 * tokenTTL)
	if w := e.mustServe(fromIP(mdmRequest(body, old), nat), failNext(t)); w.Code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d, want the 401 challenge", w.Code)
	}
	// A valid token from the same address always passes.
	for i := 0; i < 3; i++ {
		e.mustServe(fromIP(mdmRequest(body, "forged-y"), nat), failNext(t))
	}
	assert429(t, e.mustServe(fromIP(mdmRequest(body, "forged-w"), nat), failNext(t)), "unknown bearer past the refilled burst")
	raw, _ := e.issue(grant("byod"))
	n := &recNext{status: http.StatusOK}
	if w := e.mustServe(fromIP(mdmRequest(body, raw), nat), n.serve); w.Code != http.StatusOK || len(n.calls) != 1 {
		t.Fatalf("valid token behind a limited address: %d", w.Code)
	}
	if w := e.mustServe(fromIP(mdmRequest(body, "forged-z"), "203.0.113.2"), failNext(t)); w.Code != http.StatusUnauthorized {
		t.Fatalf("another address: %d, want 401", w.Code)
	}
	if ex := e.exceeded(gateway.LimitBearerFailures); len(ex) != 2 || ex[0].ContextMap()["reason"] != string(token.ReasonMalformed) {
		t.Fatalf("audit entries: %+v", ex)
	}
}

func TestTokenPerFamily(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) {
		c.OAuth2 = &gateway.OAuth2Challenge{ClientID: "mdmauth", RedirectURL: signin.DefaultRedirectURL}
	})
	withIPs(e)
	e.gw.SetLimits(gateway.Limits{TokenPerFamily: ratelimit.Rate{Events: 6, Per: time.Minute, Burst: 2}})
	post := func(refresh, ip string) *httptest.ResponseRecorder {
		form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"mdmauth"}, "refresh_token": {refresh}}
		r := httptest.NewRequest(http.MethodPost, origin+"/mdmauth/oauth2/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return e.mustServe(fromIP(r, ip), failNext(t))
	}
	famA := "AAAAAAAAAAAAAAAA.c2VjcmV0.dGFn"
	for i := 0; i < 2; i++ {
		if w := post(famA, fmt.Sprint("192.0.2.", i)); w.Code != http.StatusBadRequest {
			t.Fatalf("refresh %d: %d %s", i, w.Code, w.Body)
		}
	}
	w := post(famA, "192.0.2.50")
	assert429(t, w, "third refresh of a family")
	if !strings.Contains(w.Body.String(), `"error":"temporarily_unavailable"`) || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("429 body: %s", w.Body)
	}
	// Another family behind the same address is not limited: no per-IP limit.
	for i := 0; i < 5; i++ {
		if w := post(fmt.Sprintf("BBBBBBBBBBBBBBB%d.c2VjcmV0.dGFn", i), "192.0.2.50"); w.Code != http.StatusBadRequest {
			t.Fatalf("family %d from the same address: %d", i, w.Code)
		}
	}
	if ex := e.exceeded(gateway.LimitTokenPerFamily); len(ex) != 1 || ex[0].ContextMap()["family_id"] != "AAAAAAAAAAAAAAAA" {
		t.Fatalf("audit entries: %+v", ex)
	}
	// A real family is refreshed normally after the limit of another.
	code, err := e.oauth.NewCode(e.ctx, token.CodeGrant{Grant: grant("byod"), ClientID: "mdmauth", RedirectURI: signin.DefaultRedirectURL})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := e.oauth.Exchange(e.ctx, code, "mdmauth", signin.DefaultRedirectURL, "")
	if err != nil {
		t.Fatal(err)
	}
	if w := post(pair.RefreshToken, "192.0.2.50"); w.Code != http.StatusOK {
		t.Fatalf("real refresh: %d %s", w.Code, w.Body)
	}
}

// idp is a minimal OpenID provider: discovery, keys, and a token endpoint
// that answers every code with an ID token for alice carrying the nonce
// the test sets.
type idp struct {
	srv   *httptest.Server
	key   *rsa.PrivateKey
	now   func() time.Time
	mu    sync.Mutex
	nonce string
}

func newIdP(tb testing.TB, now func() time.Time) *idp {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	p := &idp{key: key, now: now}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		u := p.srv.URL
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": u, "authorization_endpoint": u + "/authorize", "token_endpoint": u + "/token", "jwks_uri": u + "/jwks",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		nonce := p.nonce
		p.mu.Unlock()
		now := p.now()
		claims, _ := json.Marshal(map[string]any{
			"iss": p.srv.URL, "sub": "sub-alice", "aud": "mdmauth", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"auth_time": now.Unix(), "nonce": nonce, "email": "alice@example.com", "email_verified": true,
		})
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		jws, err := sig.Sign(claims)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		idt, _ := jws.CompactSerialize()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": idt})
	})
	p.srv = httptest.NewServer(mux)
	tb.Cleanup(p.srv.Close)
	return p
}

// signInEnv is a gateway whose sign-in talks to an idp, on a Badger store
// in a temporary directory.
type signInEnv struct {
	*env
	idp *idp
}

func newSignInEnv(tb testing.TB) *signInEnv {
	clock, s, tokens := testStore(tb, tb.TempDir())
	p := newIdP(tb, clock.Now)
	signer := signin.Signer{Key: signKey, MaxAge: 30 * 24 * time.Hour}
	rp, err := signin.NewRP(signin.OIDCConfig{Issuer: p.srv.URL, ClientID: "mdmauth", Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	web := &signin.Web{RP: rp, Tokens: tokens, Store: s, Signer: signer, Now: clock.Now, Log: log}
	gw, err := gateway.New(gateway.Config{Domains: []string{"example.com"}, Template: loadTemplate(tb), Protect: []string{protect}},
		gateway.Deps{Web: web, Tokens: tokens, Store: s, Signer: signer, Log: log, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{tb: tb, ctx: context.Background(), clock: clock, store: s, tokens: tokens, signer: signer, gw: gw, logs: logs}
	withIPs(e)
	return &signInEnv{env: e, idp: p}
}

// startURL is a sign-in URL as a challenge hands it out, with the
// identifier the device appends.
func (e *signInEnv) startURL(ui string) string {
	v, err := e.signer.Encode(signin.Flow{Kind: signin.KindEnroll, Mode: string(apple.ModeBYOD), ModelFamily: "iPhone", IssuedAt: e.clock.Now()})
	if err != nil {
		e.tb.Fatal(err)
	}
	return origin + signInPath + v + "?user-identifier=" + url.QueryEscape(ui)
}

// signIn runs alice's whole web sign-in from ip and returns the final
// answer (308 with the token on success).
func (e *signInEnv) signIn(ip string) *httptest.ResponseRecorder {
	e.tb.Helper()
	w := e.mustServe(fromIP(httptest.NewRequest(http.MethodGet, e.startURL("alice@example.com"), nil), ip), failNext(e.tb))
	if w.Code != http.StatusFound {
		return w
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		e.tb.Fatal(err)
	}
	q := loc.Query()
	e.idp.mu.Lock()
	e.idp.nonce = q.Get("nonce")
	e.idp.mu.Unlock()
	cb := httptest.NewRequest(http.MethodGet, origin+"/mdmauth/oidc/callback?state="+url.QueryEscape(q.Get("state"))+"&code=c1", nil)
	for _, c := range w.Result().Cookies() {
		cb.AddCookie(c)
	}
	return e.mustServe(fromIP(cb, ip), failNext(e.tb))
}

func (e *signInEnv) pending() int {
	n, err := e.store.CountLoginStates(e.ctx)
	if err != nil {
		e.tb.Fatal(err)
	}
	return n
}

func mustToken(tb testing.TB, w *httptest.ResponseRecorder) {
	tb.Helper()
	if w.Code != http.StatusPermanentRedirect || !strings.Contains(w.Header().Get("Location"), "access-token=") {
		tb.Fatalf("sign-in: %d %q, want 308 with the token", w.Code, w.Header().Get("Location"))
	}
}

// An unauthenticated flood of 100,000 sign-in starts keeps the stored
// login states and the limiters' memory bounded. From one address, the
// per-address limit absorbs it and a real user elsewhere is unaffected;
// spread over many addresses, the pending bound stops it and real users
// are told to retry (429 with Retry-After) until the flood's states
// expire.
func TestSignInFlood(t *testing.T) {
	e := newSignInEnv(t)
	lim := gateway.DefaultLimits()
	lim.PendingSignIns = 1000
	lim.MaxKeys = 5000
	e.gw.SetLimits(lim)
	mustToken(t, e.signIn("192.0.2.10")) // the provider is warm

	// 1. 60,000 starts from one address (the user identifiers vary).
	u := e.startURL("x@example.com")
	limited := 0
	for i := 0; i < 60_000; i++ {
		r := httptest.NewRequest(http.MethodGet, u, nil)
		r.URL.RawQuery = "user-identifier=" + fmt.Sprint("victim", i%500, "@example.com")
		w := e.mustServe(fromIP(r, "203.0.113.66"), failNext(t))
		if w.Code == http.StatusTooManyRequests {
			limited++
		}
	}
	if n := e.pending(); n > lim.SignIn.Burst+1 {
		t.Fatalf("%d pending sign-ins after a one-address flood, want at most the burst %d", n, lim.SignIn.Burst)
	}
	if limited < 59_000 {
		t.Fatalf("only %d of the flood limited", limited)
	}
	if n := len(e.exceeded(gateway.LimitSignIn)); n != 1 {
		t.Errorf("%d audit entries for the one-address flood, want 1", n)
	}
	mustToken(t, e.signIn("192.0.2.11"))

	// 2. 40,000 starts, each from its own address and for its own user.
	for i := 0; i < 40_000; i++ {
		r := httptest.NewRequest(http.MethodGet, u, nil)
		r.URL.RawQuery = "user-identifier=" + fmt.Sprint("spray", i, "@example.com")
		e.mustServe(fromIP(r, fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)), failNext(t))
	}
	if n := e.pending(); n > lim.PendingSignIns+lim.SignIn.Burst+2 {
		t.Fatalf("%d pending sign-ins after a spread flood, want at most about %d", n, lim.PendingSignIns)
	}
	w := e.signIn("192.0.2.12")
	assert429(t, w, "real user during a spread flood")
	if n := len(e.exceeded(gateway.LimitPendingSignIns)); n != 1 {
		t.Errorf("%d pending_sign_ins audit entries, want 1 (once a minute)", n)
	}
	// Once the flood's states have expired, the real user gets through.
	e.clock.Advance(11 * time.Minute)
	mustToken(t, e.signIn("192.0.2.12"))
	if e.pending() != 0 {
		t.Errorf("pending sign-ins left after expiry: %d", e.pending())
	}
}
