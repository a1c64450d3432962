package signin

// Security and fault tests of the sign-in: ID-token substitution, key
// rotation at the provider, a provider that hangs, clock skew between the
// gateway and the provider, redirect targets, login-state fixation, header
// injection through the typed identifier, and where tokens and codes may
// appear.

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
)

// secKID is the key id under which the tests' own provider key is
// published (fakeidp publishes its key as key-1).
const secKID = "key-2"

// secKey is the tests' own provider signing key; the fake provider does not
// know it, and publishes it only when a test asks.
func secKey() *rsa.PrivateKey { return fakeidp.OtherKey() }

// secTransport sits between the relying party and the fake provider. It
// can publish a different key set at the provider's JWKS URL, and make one
// path hang until the request is cancelled.
type secTransport struct {
	base http.RoundTripper

	mu       sync.Mutex
	keys     *jose.JSONWebKeySet // nil: the provider's own key set
	jwksHits int
	hangPath string
	hung     chan struct{} // closed when a request starts hanging
	// failsafe ends a hang that nothing cancelled, by passing the request
	// on; the test then fails on the outcome instead of hanging.
	failsafe time.Duration
}

func newSecTransport(base http.RoundTripper) *secTransport {
	return &secTransport{base: base, failsafe: time.Minute}
}

func (s *secTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	keys, hang, hung := s.keys, s.hangPath, s.hung
	if r.URL.Path == "/jwks" {
		s.jwksHits++
	}
	s.mu.Unlock()
	if hang != "" && r.URL.Path == hang {
		close(hung)
		select {
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-time.After(s.failsafe):
		}
	}
	if keys != nil && r.URL.Path == "/jwks" {
		b, err := json.Marshal(keys)
		if err != nil {
			return nil, err
		}
		return &http.Response{
			StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(bytes.NewReader(b)),
			ContentLength: int64(len(b)), Request: r,
		}, nil
	}
	return s.base.RoundTrip(r)
}

// publish makes the provider's JWKS URL serve keys (public keys by kid).
func (s *secTransport) publish(keys map[string]*rsa.PublicKey) {
	set := &jose.JSONWebKeySet{}
	for kid, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = set
}

// hang makes requests to path hang until cancelled; the returned channel is
// closed when one does.
func (s *secTransport) hang(path string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangPath, s.hung = path, make(chan struct{})
	return s.hung
}

func (s *secTransport) jwks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jwksHits
}

// newSecEnv is newEnv with the relying party's requests going through a
// secTransport, on a client with the given timeout (0: none).
func newSecEnv(t *testing.T, timeout time.Duration, oauth bool) (*env, *secTransport) {
	t.Helper()
	var st *secTransport
	install := func(c *OIDCConfig) {
		st = newSecTransport(c.HTTPClient.Transport)
		c.HTTPClient = &http.Client{Transport: st, Timeout: timeout}
	}
	if oauth {
		return newOAuthEnv(t, false, install), st
	}
	return newEnv(t, install), st
}

// claimsFor are the claims of a valid ID token for alice with nonce, issued
// at the provider's time idpNow.
func (e *env) claimsFor(nonce string, idpNow time.Time) map[string]any {
	return map[string]any{
		"iss": e.idp.Issuer, "sub": "alice-sub", "aud": e.idp.ClientID,
		"iat": idpNow.Unix(), "exp": idpNow.Add(time.Hour).Unix(), "auth_time": idpNow.Unix(),
		"nonce": nonce, "email": "alice@example.com", "email_verified": true, "sid": "sid-alice",
	}
}

// jws signs claims as a compact JWS.
func jws(t *testing.T, claims map[string]any, alg jose.SignatureAlgorithm, key any, kid string, opts *jose.SignerOptions) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	if opts == nil {
		opts = &jose.SignerOptions{}
	}
	var sk jose.SigningKey
	if kid == "" {
		sk = jose.SigningKey{Algorithm: alg, Key: key}
	} else {
		sk = jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}
	}
	signer, err := jose.NewSigner(sk, opts.WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// withIDToken runs a sign-in (apple-as-web, or apple-oauth2 when oauth) in
// which the provider's token endpoint returns idToken(nonce), nonce being
// the one the relying party sent. It returns the callback's answer.
func (e *env) withIDToken(oauth bool, idToken func(nonce string) string) *httptest.ResponseRecorder {
	e.t.Helper()
	var w *httptest.ResponseRecorder
	if oauth {
		w = e.authorize(e.deviceQuery(enrollFlow, "alice@example.com").String())
	} else {
		w = e.start(enrollFlow, "alice@example.com")
	}
	if w.Code != http.StatusFound {
		e.t.Fatalf("start: status %d, want 302; body %s", w.Code, w.Body)
	}
	authURL, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	l := alice()
	l.RawIDToken = idToken(authURL.Query().Get("nonce"))
	e.idp.Script(l)
	defer e.idp.Script(alice())
	return e.callback(e.follow(authURL).RawQuery, w.Result().Cookies()...)
}

// An ID token the relying party must not accept — unsigned, signed with the
// wrong algorithm, by a key the provider does not publish, altered after
// signing, or for another client, nonce, issuer or time — ends every
// sign-in on an error page with nothing issued: no access token, no
// authorization code. The control case, signed by a published key, shows
// that each refusal comes from the one thing the case changes.
func TestCallbackIDTokenSubstitution(t *testing.T) {
	pub := &secKey().PublicKey
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	enc := base64.RawURLEncoding.EncodeToString
	type build func(t *testing.T, claims map[string]any) string
	signed := func(edit func(map[string]any)) build {
		return func(t *testing.T, c map[string]any) string {
			if edit != nil {
				edit(c)
			}
			return jws(t, c, jose.RS256, secKey(), secKID, nil)
		}
	}
	for name, c := range map[string]struct {
		build   build
		publish bool // whether the provider publishes secKey under secKID
		ok      bool
	}{
		"control: signed by a published key": {signed(nil), true, true},
		"alg none with valid claims": {func(t *testing.T, c map[string]any) string {
			p, _ := json.Marshal(c)
			return enc([]byte(`{"alg":"none","typ":"JWT","kid":"`+secKID+`"}`)) + "." + enc(p) + "."
		}, true, false},
		"alg none keeping a valid signature": {func(t *testing.T, c map[string]any) string {
			good := jws(t, c, jose.RS256, secKey(), secKID, nil)
			parts := strings.Split(good, ".")
			return enc([]byte(`{"alg":"none","typ":"JWT","kid":"`+secKID+`"}`)) + "." + parts[1] + "." + parts[2]
		}, true, false},
		"HS256 keyed with the public key (DER)": {func(t *testing.T, c map[string]any) string {
			return jws(t, c, jose.HS256, der, secKID, nil)
		}, true, false},
		"HS256 keyed with the public key (PEM)": {func(t *testing.T, c map[string]any) string {
			return jws(t, c, jose.HS256, pemKey, secKID, nil)
		}, true, false},
		"signed by an unknown key under an unknown kid": {signed(nil), false, false},
		"signed by an unknown key that it embeds (jwk header)": {func(t *testing.T, c map[string]any) string {
			return jws(t, c, jose.RS256, secKey(), "", &jose.SignerOptions{EmbedJWK: true})
		}, false, false},
		"claims altered after signing": {func(t *testing.T, c map[string]any) string {
			good := jws(t, c, jose.RS256, secKey(), secKID, nil)
			parts := strings.Split(good, ".")
			c["sub"], c["email"] = "mallory-sub", "mallory@example.com"
			p, _ := json.Marshal(c)
			return parts[0] + "." + enc(p) + "." + parts[2]
		}, true, false},
		"signature of another token": {func(t *testing.T, c map[string]any) string {
			other := map[string]any{}
			for k, v := range c {
				other[k] = v
			}
			other["sub"] = "mallory-sub"
			a := strings.Split(jws(t, c, jose.RS256, secKey(), secKID, nil), ".")
			b := strings.Split(jws(t, other, jose.RS256, secKey(), secKID, nil), ".")
			return a[0] + "." + b[1] + "." + a[2]
		}, true, false},
		"wrong audience":     {signed(func(c map[string]any) { c["aud"] = "another-client" }), true, false},
		"wrong nonce":        {signed(func(c map[string]any) { c["nonce"] = "nonce-of-another-sign-in" }), true, false},
		"no nonce":           {signed(func(c map[string]any) { delete(c, "nonce") }), true, false},
		"wrong issuer":       {signed(func(c map[string]any) { c["iss"] = "https://evil.example.com" }), true, false},
		"issuer with a path": {signed(func(c map[string]any) { c["iss"] = c["iss"].(string) + "/evil" }), true, false},
		"expired":            {signed(func(c map[string]any) { c["exp"] = epoch.Add(-time.Second).Unix() }), true, false},
	} {
		for _, oauth := range []bool{false, true} {
			flowName := "apple-as-web"
			if oauth {
				flowName = "apple-oauth2"
			}
			t.Run(name+"/"+flowName, func(t *testing.T) {
				e, st := newSecEnv(t, 0, oauth)
				if c.publish {
					// The provider's own key stays published: only the
					// tested token's signature decides.
					st.publish(map[string]*rsa.PublicKey{"key-1": secProviderKey(t, e), secKID: pub})
				}
				w := e.withIDToken(oauth, func(nonce string) string {
					return c.build(t, e.claimsFor(nonce, e.clock.Now()))
				})
				switch {
				case c.ok && oauth:
					e.codeIssued(w, deviceState)
				case c.ok:
					e.issued(w)
				default:
					e.refused(w, http.StatusForbidden, "id_token_invalid", 0)
					if n := len(e.st.codeList()); n != 0 {
						t.Errorf("%d authorization code(s) stored for a refused ID token", n)
					}
				}
			})
		}
	}
}

// secProviderKey returns the fake provider's published key (key-1), read
// from its JWKS.
func secProviderKey(t *testing.T, e *env) *rsa.PublicKey {
	t.Helper()
	resp, err := e.idp.Client().Get(e.idp.URL(fakeidp.JWKS))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Key("key-1") {
		if pk, ok := k.Key.(*rsa.PublicKey); ok {
			return pk
		}
	}
	t.Fatal("the provider publishes no key-1")
	return nil
}

// The provider rotates its signing key: it publishes a new kid and signs
// with it. The next sign-in succeeds (the key set is fetched again for the
// unknown kid, once), and a key the provider retired stops verifying once
// the key set has been fetched again.
func TestCallbackProviderKeyRotation(t *testing.T) {
	e, st := newSecEnv(t, 0, false)
	old := secProviderKey(t, e)
	e.issued(e.signIn(enrollFlow, "alice@example.com"))
	if n := st.jwks(); n != 1 {
		t.Fatalf("key set fetched %d times for the first sign-in, want 1", n)
	}
	withNewKey := func(nonce string) string {
		return jws(t, e.claimsFor(nonce, e.clock.Now()), jose.RS256, secKey(), secKID, nil)
	}

	// Before the provider publishes the new key, a token under it fails.
	e.refused(e.withIDToken(false, withNewKey), http.StatusForbidden, "id_token_invalid", 1)

	// Rotation: both keys published, the provider signs with the new one.
	st.publish(map[string]*rsa.PublicKey{"key-1": old, secKID: &secKey().PublicKey})
	before := st.jwks()
	e.issued(e.withIDToken(false, withNewKey))
	if n := st.jwks(); n != before+1 {
		t.Errorf("key set fetched %d times for the new kid, want once", n-before)
	}
	e.issued(e.withIDToken(false, withNewKey))
	if n := st.jwks(); n != before+1 {
		t.Errorf("the new key is not cached: key set fetched %d times", n-before)
	}

	// The old key retired. A token under an unknown kid makes the relying
	// party fetch the key set again; from then on the old key is refused.
	st.publish(map[string]*rsa.PublicKey{secKID: &secKey().PublicKey})
	e.refused(e.withIDToken(false, func(nonce string) string {
		return jws(t, e.claimsFor(nonce, e.clock.Now()), jose.RS256, secKey(), "key-3", nil)
	}), http.StatusForbidden, "id_token_invalid", 3)
	e.refused(e.signIn(enrollFlow, "alice@example.com"), http.StatusForbidden, "id_token_invalid", 3)
	e.issued(e.withIDToken(false, withNewKey))
}

// A provider whose token endpoint hangs: the relying party's HTTP client
// timeout ends the wait, and so does the browser's request going away. The
// sign-in ends on a 503 page with nothing stored, and the pending sign-in is
// used up; the next sign-in works once the provider answers again.
func TestCallbackProviderHangs(t *testing.T) {
	t.Run("client timeout", func(t *testing.T) {
		e, st := newSecEnv(t, time.Second, false)
		authURL, cookie := e.begin(enrollFlow, "alice@example.com")
		cb := e.follow(authURL)
		hung := st.hang("/token")
		w := e.callback(cb.RawQuery, cookie)
		select {
		case <-hung:
		default:
			t.Fatalf("the token endpoint was not called")
		}
		e.refused(w, http.StatusServiceUnavailable, "idp_unavailable", 0)
		e.refused(e.callback(cb.RawQuery, cookie), http.StatusBadRequest, "unknown_state", 0)

		st.hang("")
		e.issued(e.signIn(enrollFlow, "alice@example.com"))
	})
	t.Run("request cancelled", func(t *testing.T) {
		// No client timeout: the request's context alone ends the wait.
		e, st := newSecEnv(t, 0, false)
		authURL, cookie := e.begin(enrollFlow, "alice@example.com")
		cb := e.follow(authURL)
		hung := st.hang("/token")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-hung
			cancel()
		}()
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, callbackURL+"?"+cb.RawQuery, nil)
		r.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
		w := httptest.NewRecorder()
		e.web.Callback(w, r, callbackURL)
		e.refused(w, http.StatusServiceUnavailable, "idp_unavailable", 0)
		if e.st.tokenCount() != 0 {
			t.Errorf("a cancelled sign-in stored a token")
		}
	})
	t.Run("default timeout", func(t *testing.T) {
		rp, err := NewRP(OIDCConfig{Issuer: "https://idp.example.com", ClientID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		if got := rp.cfg.HTTPClient.Timeout; got <= 0 || got > 30*time.Second {
			t.Errorf("default provider client timeout %v: calls to the provider must be bounded", got)
		}
	})
}

// Clock skew between the gateway and the provider. The ID token comes
// straight from the token endpoint, so a provider clock that is behind is
// absorbed by the token's lifetime; a provider clock that is ahead is
// absorbed by the 5-minute leeway on nbf (iat is not checked). exp itself
// has no leeway. The relying party reads the time from the injected clock.
func TestCallbackClockSkew(t *testing.T) {
	for name, c := range map[string]struct {
		// skew is the provider's clock minus the gateway's.
		skew     time.Duration
		lifetime time.Duration // exp - iat at the provider
		nbf      bool
		ok       bool
	}{
		"in step":                                   {0, time.Hour, true, true},
		"provider 4 min ahead, nbf":                 {4 * time.Minute, time.Hour, true, true},
		"provider 5 min ahead, nbf":                 {5 * time.Minute, time.Hour, true, true},
		"provider 5 min 1 s ahead, nbf":             {5*time.Minute + time.Second, time.Hour, true, false},
		"provider 10 min ahead, nbf":                {10 * time.Minute, time.Hour, true, false},
		"provider 50 min behind":                    {-50 * time.Minute, time.Hour, true, true},
		"provider behind by the lifetime exactly":   {-5 * time.Minute, 5 * time.Minute, false, true},
		"provider behind by the lifetime and 1 s":   {-5*time.Minute - time.Second, 5 * time.Minute, false, false},
		"provider 2 h behind, 1 h token":            {-2 * time.Hour, time.Hour, false, false},
		"provider 2 min behind, 5 min token, nbf":   {-2 * time.Minute, 5 * time.Minute, true, true},
		"provider 3 min ahead, 5 min token, no nbf": {3 * time.Minute, 5 * time.Minute, false, true},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			idpNow := e.clock.Now().Add(c.skew)
			l := alice()
			l.IDClaims["iat"] = idpNow.Unix()
			l.IDClaims["auth_time"] = idpNow.Unix()
			l.IDClaims["exp"] = idpNow.Add(c.lifetime).Unix()
			if c.nbf {
				l.IDClaims["nbf"] = idpNow.Unix()
			}
			e.idp.Script(l)
			w := e.signIn(enrollFlow, "alice@example.com")
			if c.ok {
				e.issued(w)
				return
			}
			e.refused(w, http.StatusForbidden, "id_token_invalid", 0)
		})
	}
}

// Every redirect of the sign-in goes to a fixed target whatever the
// request carries: the start to the provider's authorization endpoint with
// the registered callback as redirect_uri, the web callback to
// apple-remotemanagement-user-login://authentication-results, the OAuth 2
// callback to the configured redirect URL.
func TestSignInRedirectTargets(t *testing.T) {
	hostile := []string{
		"https://evil.example.com/",
		"//evil.example.com",
		`\\evil.example.com`,
		"alice@evil.example.com/%2F..",
		"javascript:alert(1)",
		"apple-remotemanagement-user-login://authentication-results?access-token=forged",
	}
	extra := func(v string) string {
		e := url.QueryEscape(v)
		return "&redirect_uri=" + e + "&redirect=" + e + "&return_to=" + e + "&next=" + e + "&url=" + e + "&continue=" + e
	}
	wantProvider := func(t *testing.T, e *env, loc string) url.Values {
		t.Helper()
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.Scheme + "://" + u.Host + u.Path; got != e.idp.URL(fakeidp.Authorize) || u.User != nil || u.Fragment != "" {
			t.Fatalf("start redirects to %q, want the provider's authorization endpoint", loc)
		}
		q := u.Query()
		for k, v := range q {
			if len(v) != 1 {
				t.Errorf("authorization request repeats %s: %q", k, v)
			}
		}
		if q.Get("redirect_uri") != callbackURL {
			t.Errorf("redirect_uri %q, want the registered %q", q.Get("redirect_uri"), callbackURL)
		}
		return q
	}
	for _, v := range hostile {
		t.Run("web "+v, func(t *testing.T) {
			e := newEnv(t)
			link := e.link(enrollFlow)
			// The identifier and any other parameter of the start.
			r := httptest.NewRequest(http.MethodGet, site+link+"?user-identifier="+url.QueryEscape(v)+extra(v), nil)
			w := httptest.NewRecorder()
			e.web.Start(w, r, link, callbackURL)
			if w.Code != http.StatusFound {
				t.Fatalf("start: status %d, body %s", w.Code, w.Body)
			}
			authURL, _ := url.Parse(w.Header().Get("Location"))
			wantProvider(t, e, authURL.String())
			cookie := w.Result().Cookies()[0]
			e.secret(cookie.Value)

			// The callback, with the same parameters added.
			cb := e.follow(authURL)
			e.issued(e.callback(cb.RawQuery+extra(v), cookie))
		})
		t.Run("oauth2 "+v, func(t *testing.T) {
			e := newOAuthEnv(t, false)
			q := e.deviceQuery(enrollFlow, url.QueryEscape(v)).
				with("state", url.QueryEscape("s#"+v)).
				plus("return_to", url.QueryEscape(v)).plus("next", url.QueryEscape(v))
			w := e.authorize(q.String())
			if w.Code != http.StatusFound {
				t.Fatalf("authorize: status %d, body %s", w.Code, w.Body)
			}
			authURL, _ := url.Parse(w.Header().Get("Location"))
			wantProvider(t, e, authURL.String())
			cb := e.follow(authURL)
			w = e.callback(cb.RawQuery+extra(v), w.Result().Cookies()[0])
			e.codeIssued(w, url.QueryEscape("s#"+v))
			loc, _ := url.Parse(w.Header().Get("Location"))
			if loc.Scheme != "apple-remotemanagement-user-login" || loc.Host != "" || loc.Path != "/oauth2/redirection" || loc.Fragment != "" {
				t.Errorf("OAuth 2 callback redirects to %q, want the configured redirect URL", w.Header().Get("Location"))
			}
		})
	}
}

// A callback that carries another browser's state — the attacker's own
// sign-in, completed at the provider as the attacker and forced into the
// victim's browser — is refused with nothing issued, and it does not
// disturb the victim's own pending sign-in.
func TestCallbackForeignStateLeavesOwnSignIn(t *testing.T) {
	for _, oauth := range []bool{false, true} {
		name := "apple-as-web"
		if oauth {
			name = "apple-oauth2"
		}
		t.Run(name, func(t *testing.T) {
			var e *env
			start := func() (*url.URL, *http.Cookie) {
				t.Helper()
				var w *httptest.ResponseRecorder
				if oauth {
					w = e.authorize(e.deviceQuery(enrollFlow, "").String())
				} else {
					w = e.start(enrollFlow, "")
				}
				if w.Code != http.StatusFound {
					t.Fatalf("start: %d %s", w.Code, w.Body)
				}
				u, _ := url.Parse(w.Header().Get("Location"))
				return u, w.Result().Cookies()[0]
			}
			if oauth {
				e = newOAuthEnv(t, false)
			} else {
				e = newEnv(t)
			}
			// The victim starts a sign-in; the provider would sign them in.
			victimURL, victimCookie := start()
			// The attacker signs in as mallory and keeps the callback.
			e.idp.Script(fakeidp.Login{Subject: "mallory-sub", IDClaims: map[string]any{"email": "mallory@example.com", "email_verified": true}})
			attackerURL, _ := start()
			forced := e.follow(attackerURL)
			e.idp.Script(alice())

			e.refused(e.callback(forced.RawQuery, victimCookie), http.StatusBadRequest, "browser_mismatch", 0)
			if n := len(e.st.codeList()); n != 0 {
				t.Errorf("%d code(s) stored for the forced callback", n)
			}
			for _, r := range e.idp.TokenRequests() {
				if r.Get("code") == forced.Query().Get("code") {
					t.Errorf("the attacker's code was redeemed")
				}
			}

			// The victim's own sign-in completes, as the victim.
			w := e.callback(e.follow(victimURL).RawQuery, victimCookie)
			if oauth {
				e.codeIssued(w, deviceState)
				if cs := e.st.codeList(); len(cs) != 1 || cs[0].Subject != "alice-sub" {
					t.Errorf("codes %+v, want one of alice", cs)
				}
				return
			}
			if _, rec := e.issued(w); rec.Subject != "alice-sub" {
				t.Errorf("token of %q, want alice", rec.Subject)
			}
		})
	}
}

// secNoRawHeaders fails when a response header carries a control character
// (header splitting) or the raw hostile value.
func secNoRawHeaders(t *testing.T, h http.Header, raw string) {
	t.Helper()
	for k, vs := range h {
		for _, v := range vs {
			if strings.ContainsAny(k+v, "\r\n\x00") {
				t.Errorf("header %s: %q carries a control character", k, v)
			}
			if len(raw) >= 4 && strings.Contains(v, raw) {
				t.Errorf("header %s: %q reflects the raw value %q", k, v, raw)
			}
		}
	}
}

// Hostile typed identifiers (CR/LF, NUL, quotes, angle brackets, very long
// values) at the sign-in start — the apple-as-web user-identifier and the
// apple-oauth2 login_hint — never split or reach a header raw. The start
// redirects to the provider with the identifier escaped in login_hint or
// dropped, sets only the login cookie, and stores exactly what it sent; the
// OAuth 2 authorization endpoint refuses a malformed query outright, with no
// redirect and no cookie.
func TestStartHostileUserIdentifier(t *testing.T) {
	for name, c := range map[string]struct {
		onWire    string // raw query value, as sent
		hint      string // login_hint the provider gets ("": none)
		malformed bool   // the query does not parse
	}{
		"CR LF":            {"alice@example.com%0D%0ASet-Cookie:%20x=y", "", true},
		"raw CR LF":        {"alice@example.com\r\nSet-Cookie: x=y", "", true},
		"LF":               {"alice%0A@example.com", "", true},
		"NUL":              {"alice%00@example.com", "", true},
		"DEL":              {"alice%7F@example.com", "", true},
		"bad escape":       {"alice%0@example.com", "", true},
		"quotes":           {`"alice"@example.com`, `"alice"@example.com`, false},
		"escaped quotes":   {"%22alice%22%2C%20url%3D%22x@example.com", `"alice", url="x@example.com`, false},
		"angle brackets":   {"%3Cscript%3E@example.com", "<script>@example.com", false},
		"header-like":      {"alice@example.com%3B%20Location:%20https://evil.example.com", "alice@example.com; Location: https://evil.example.com", false},
		"very long":        {strings.Repeat("a", 4000) + "@example.com", "", false},
		"321 bytes":        {strings.Repeat("a", 309) + "@example.com", "", false},
		"invalid UTF-8":    {"alice%FF@example.com", "", false},
		"unicode line sep": {"alice%E2%80%A8@example.com", "alice\u2028@example.com", false},
	} {
		for _, oauth := range []bool{false, true} {
			flowName := "apple-as-web"
			if oauth {
				flowName = "apple-oauth2"
			}
			t.Run(name+"/"+flowName, func(t *testing.T) {
				var e *env
				w := httptest.NewRecorder()
				if oauth {
					e = newOAuthEnv(t, false)
					q := e.deviceQuery(enrollFlow, "").without("login_hint").String()
					r := httptest.NewRequest(http.MethodGet, authorizeEndpoint, nil)
					r.URL.RawQuery = q + "&login_hint=" + c.onWire
					e.web.Authorize(w, r, callbackURL)
				} else {
					e = newEnv(t)
					link := e.link(enrollFlow)
					r := httptest.NewRequest(http.MethodGet, site+link, nil)
					r.URL.RawQuery = "user-identifier=" + c.onWire
					e.web.Start(w, r, link, callbackURL)
				}
				checkSecurityHeaders(t, "start", w.Header())
				raw, _ := url.PathUnescape(c.onWire)
				secNoRawHeaders(t, w.Header(), raw)
				if oauth && c.malformed {
					wantPage(t, w, http.StatusBadRequest, "bad_request")
					if sc := w.Header().Values("Set-Cookie"); len(sc) != 0 || e.st.loginCount() != 0 {
						t.Errorf("a refused request set cookies %q or stored a login state", sc)
					}
					return
				}
				if w.Code != http.StatusFound {
					t.Fatalf("start: status %d, body %s", w.Code, w.Body)
				}
				if sc := w.Header().Values("Set-Cookie"); len(sc) != 1 || !strings.HasPrefix(sc[0], CookieName+"=") {
					t.Errorf("Set-Cookie %q, want the login cookie only", sc)
				}
				for _, ck := range w.Result().Cookies() {
					e.secret(ck.Value)
				}
				authURL, err := url.Parse(w.Header().Get("Location"))
				if err != nil {
					t.Fatal(err)
				}
				if got := authURL.Scheme + "://" + authURL.Host + authURL.Path; got != e.idp.URL(fakeidp.Authorize) {
					t.Errorf("redirect to %s", got)
				}
				q := authURL.Query()
				if q.Get("login_hint") != c.hint || q.Has("login_hint") != (c.hint != "") {
					t.Errorf("login_hint %q (present %v), want %q", q.Get("login_hint"), q.Has("login_hint"), c.hint)
				}
				st, _ := e.loginStateOf(q.Get("state"))
				if st.UserIdentifier != c.hint {
					t.Errorf("stored identifier %q, want %q (what the provider got)", st.UserIdentifier, c.hint)
				}
			})
		}
	}
}

// The access token appears in exactly one place: the Location of the
// callback's 308 to the device's callback scheme. It is in no other URL,
// header or body of the sign-in; the provider's code is in no answer of the
// gateway. Every answer to a URL that carries the provider's code (the
// callback, success or failure) has Referrer-Policy: no-referrer and loads
// nothing that would send a Referer.
func TestTokenOnlyInTheCallbackLocation(t *testing.T) {
	e := newEnv(t)
	type answer struct {
		what string
		w    *httptest.ResponseRecorder
	}
	var answers []answer
	w := e.start(enrollFlow, "alice@example.com")
	answers = append(answers, answer{"start", w})
	authURL, _ := url.Parse(w.Header().Get("Location"))
	cb := e.follow(authURL)
	code := cb.Query().Get("code")
	w = e.callback(cb.RawQuery, w.Result().Cookies()...)
	raw, _ := e.issued(w)
	answers = append(answers, answer{"callback", w})
	// A replay of the callback URL: an error page, at a URL with the code.
	answers = append(answers, answer{"replayed callback", e.callback(cb.RawQuery)})

	urls := []string{authURL.String(), cb.String()}
	for _, u := range urls {
		if strings.Contains(u, raw) {
			t.Errorf("URL %q carries the access token", u)
		}
	}
	for _, a := range answers {
		for k, vs := range a.w.Header() {
			for _, v := range vs {
				if strings.Contains(v, raw) && !(a.what == "callback" && k == "Location") {
					t.Errorf("%s: header %s carries the access token", a.what, k)
				}
				if strings.Contains(v, code) {
					t.Errorf("%s: header %s carries the provider's code", a.what, k)
				}
			}
		}
		body := a.w.Body.String()
		if strings.Contains(body, raw) || strings.Contains(body, code) {
			t.Errorf("%s: body carries the access token or the provider's code", a.what)
		}
		if a.what != "start" {
			if got := a.w.Header().Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("%s: Referrer-Policy %q at a URL with the provider's code", a.what, got)
			}
			for _, s := range []string{"href=", "src=", "http:", "https:", "url("} {
				if strings.Contains(strings.ToLower(body), s) {
					t.Errorf("%s: the page references %q: it could send the URL as Referer", a.what, s)
				}
			}
		}
	}
	// Exactly once in the Location: as the only access-token parameter.
	loc := answers[1].w.Header().Get("Location")
	if strings.Count(loc, raw) != 1 || !strings.HasPrefix(loc, "apple-remotemanagement-user-login://authentication-results?") {
		t.Errorf("Location %q", loc)
	}
}
