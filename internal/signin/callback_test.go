package signin

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

func TestCallbackIssuesToken(t *testing.T) {
	e := newEnv(t)
	authURL, cookie := e.begin(Flow{Kind: KindEnroll, Mode: "adde", ModelFamily: "Mac"}, "Alice@Example.com")
	state := authURL.Query().Get("state")
	cb := e.follow(authURL)
	w := e.callback(cb.RawQuery, cookie)
	raw, rec := e.issued(w)

	now := e.clock.Now()
	want := store.Token{
		Hash: token.HashOf(raw), Issuer: e.idp.Issuer, Subject: "alice-sub", SessionID: "sid-alice",
		UserIdentifier: "Alice@Example.com", ManagedAppleID: "alice@example.com",
		Mode: "adde", ModelFamily: "Mac",
	}
	got := *rec
	if !got.IssuedAt.Equal(now) || !got.ExpiresAt.Equal(now.Add(tokenTTL)) || !got.RevokedAt.IsZero() {
		t.Errorf("token times: issued %v expires %v revoked %v", got.IssuedAt, got.ExpiresAt, got.RevokedAt)
	}
	got.IssuedAt, got.ExpiresAt = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("token record\n got %+v\nwant %+v", got, want)
	}
	if _, err := e.web.Tokens.Lookup(e.ctx, raw); err != nil {
		t.Errorf("the new token is not usable: %v", err)
	}
	if n := e.st.tokenCount(); n != 1 {
		t.Errorf("%d tokens stored, want 1", n)
	}

	// The login state is gone, the cookie cleared.
	if _, err := e.db.TakeLoginState(e.ctx, state); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("login state still there after the callback: %v", err)
	}
	var cleared bool
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName && c.Value == "" && c.MaxAge < 0 && c.Secure && c.HttpOnly && c.Path == "/" {
			cleared = true
		}
	}
	if !cleared {
		t.Errorf("callback does not clear the login cookie: %q", w.Header().Values("Set-Cookie"))
	}

	if az := e.idp.Authorizations(); len(az) != 1 || az[0].Get("state") != state {
		t.Errorf("authorization requests %v", az)
	}
	// The code was redeemed once, with the verifier and the same redirect URI.
	reqs := e.idp.TokenRequests()
	if len(reqs) != 1 {
		t.Fatalf("%d token requests, want 1", len(reqs))
	}
	if reqs[0].Get("code") != cb.Query().Get("code") || reqs[0].Get("redirect_uri") != callbackURL || reqs[0].Get("code_verifier") == "" {
		t.Errorf("token request %v", reqs[0])
	}
	if n := e.idp.Hits(fakeidp.UserInfo); n != 0 {
		t.Errorf("UserInfo called %d times although the ID token has the email", n)
	}

	// The issuance is logged by token id.
	logged := e.logs.FilterMessage("token issued").All()
	if len(logged) != 1 || logged[0].ContextMap()["token_id"] != rec.ID() {
		t.Errorf("token issued log: %v", logged)
	}
}

func TestCallbackStateUsedOnce(t *testing.T) {
	e := newEnv(t)
	authURL, cookie := e.begin(enrollFlow, "alice@example.com")
	cb := e.follow(authURL)
	e.issued(e.callback(cb.RawQuery, cookie))
	hits := e.idp.Hits(fakeidp.Token)

	e.refused(e.callback(cb.RawQuery, cookie), http.StatusBadRequest, "unknown_state", 1)
	if n := e.idp.Hits(fakeidp.Token); n != hits {
		t.Errorf("a replayed callback redeemed the code again")
	}
}

func TestCallbackConcurrentReplay(t *testing.T) {
	e := newEnv(t)
	authURL, cookie := e.begin(enrollFlow, "alice@example.com")
	cb := e.follow(authURL)

	const n = 8
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes[i] = e.callback(cb.RawQuery, cookie).Code })
	}
	wg.Wait()
	var ok, refused int
	for _, c := range codes {
		switch c {
		case http.StatusPermanentRedirect:
			ok++
		case http.StatusBadRequest:
			refused++
		}
	}
	if ok != 1 || refused != n-1 {
		t.Errorf("statuses %v: want one 308 and %d 400", codes, n-1)
	}
	if c := e.st.tokenCount(); c != 1 {
		t.Errorf("%d tokens stored, want 1", c)
	}
}

func TestCallbackBadState(t *testing.T) {
	e := newEnv(t)
	_, cookie := e.begin(enrollFlow, "")
	for name, c := range map[string]struct {
		query  string
		status int
		reason string
	}{
		"no state":       {"code=abc", http.StatusBadRequest, "missing_state"},
		"empty state":    {"code=abc&state=", http.StatusBadRequest, "missing_state"},
		"unknown state":  {"code=abc&state=" + strings.Repeat("Q", 43), http.StatusBadRequest, "unknown_state"},
		"state too long": {"code=abc&state=" + strings.Repeat("Q", 257), http.StatusBadRequest, "missing_state"},
		"query too long": {"code=" + strings.Repeat("c", 8200) + "&state=x", http.StatusRequestURITooLong, "bad_request"},
	} {
		t.Run(name, func(t *testing.T) {
			e.refused(e.callback(c.query, cookie), c.status, c.reason, 0)
		})
	}
	if n := e.idp.Hits(fakeidp.Token); n != 0 {
		t.Errorf("callbacks without a pending sign-in redeemed codes")
	}
}

func TestCallbackCorruptLoginState(t *testing.T) {
	e := newEnv(t)
	if err := e.db.PutLoginState(e.ctx, "corrupt", store.LoginState{Data: []byte("{not json"), ExpiresAt: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	e.refused(e.callback("code=abc&state=corrupt", &http.Cookie{Name: CookieName, Value: "x"}), http.StatusBadRequest, "unknown_state", 0)
}

func TestCallbackExpiredState(t *testing.T) {
	e := newEnv(t)
	e.web.LoginTTL = 3 * time.Minute
	authURL, cookie := e.begin(enrollFlow, "")
	cb := e.follow(authURL)
	e.clock.Advance(3 * time.Minute)
	e.refused(e.callback(cb.RawQuery, cookie), http.StatusBadRequest, "unknown_state", 0)
	if n := e.idp.Hits(fakeidp.Token); n != 0 {
		t.Errorf("an expired sign-in redeemed its code")
	}
}

// The login state is bound to the browser that started the sign-in; a
// mismatch uses the state up.
func TestCallbackBrowserBinding(t *testing.T) {
	for name, cookies := range map[string]func(own, other *http.Cookie) []*http.Cookie{
		"no cookie":    func(_, _ *http.Cookie) []*http.Cookie { return nil },
		"empty cookie": func(_, _ *http.Cookie) []*http.Cookie { return []*http.Cookie{{Name: CookieName, Value: ""}} },
		"wrong value": func(_, _ *http.Cookie) []*http.Cookie {
			return []*http.Cookie{{Name: CookieName, Value: strings.Repeat("A", 43)}}
		},
		"another sign-in's": func(_, other *http.Cookie) []*http.Cookie { return []*http.Cookie{other} },
		"right value, renamed": func(own, _ *http.Cookie) []*http.Cookie {
			return []*http.Cookie{{Name: "mdmauth-login", Value: own.Value}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			authURL, own := e.begin(enrollFlow, "")
			_, other := e.begin(enrollFlow, "")
			cb := e.follow(authURL)
			e.refused(e.callback(cb.RawQuery, cookies(own, other)...), http.StatusBadRequest, "browser_mismatch", 0)
			if n := e.idp.Hits(fakeidp.Token); n != 0 {
				t.Errorf("a callback from another browser redeemed the code")
			}
			// The state is used up: the right browser cannot use it either.
			e.refused(e.callback(cb.RawQuery, own), http.StatusBadRequest, "unknown_state", 0)
		})
	}
}

func TestCallbackProviderError(t *testing.T) {
	e := newEnv(t)
	l := alice()
	l.Error = "access_denied"
	e.idp.Script(l)
	authURL, cookie := e.begin(enrollFlow, "")
	cb := e.follow(authURL)
	if cb.Query().Get("error") != "access_denied" || cb.Query().Has("code") {
		t.Fatalf("provider redirect %s", cb)
	}
	w := e.callback(cb.RawQuery, cookie)
	e.refused(w, http.StatusForbidden, "idp_error", 0)
	if !strings.Contains(w.Body.String(), "access_denied") {
		t.Errorf("page does not show the provider's error code")
	}
	if n := e.idp.Hits(fakeidp.Token); n != 0 {
		t.Errorf("an error response led to a token request")
	}
}

// The provider's error text reaches the page only escaped and shortened.
func TestCallbackProviderErrorEscaped(t *testing.T) {
	e := newEnv(t)
	authURL, cookie := e.begin(enrollFlow, "")
	q := url.Values{"state": {authURL.Query().Get("state")}, "error": {`<script>alert(1)</script>` + strings.Repeat("x", 200) + "\x00\u2028"}}
	w := e.callback(q.Encode(), cookie)
	e.refused(w, http.StatusForbidden, "idp_error", 0)
	body := w.Body.String()
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("provider error not escaped: %s", body)
	}
	if strings.Contains(body, strings.Repeat("x", 65)) || strings.ContainsRune(body, 0) || strings.ContainsRune(body, '\u2028') {
		t.Errorf("provider error not shortened to printable ASCII: %s", body)
	}
}

func TestCallbackMissingCode(t *testing.T) {
	e := newEnv(t)
	authURL, cookie := e.begin(enrollFlow, "")
	q := url.Values{"state": {authURL.Query().Get("state")}}
	e.refused(e.callback(q.Encode(), cookie), http.StatusBadRequest, "missing_code", 0)
}

func TestCallbackTokenEndpointFaults(t *testing.T) {
	for name, c := range map[string]struct {
		script  func(*fakeidp.Login)
		closeIt bool
		status  int
		reason  string
	}{
		"invalid_grant":      {func(l *fakeidp.Login) { l.TokenStatus, l.TokenError = 400, "invalid_grant" }, false, http.StatusBadRequest, "code_rejected"},
		"invalid_client":     {func(l *fakeidp.Login) { l.TokenStatus, l.TokenError = 401, "invalid_client" }, false, http.StatusBadRequest, "code_rejected"},
		"server error":       {func(l *fakeidp.Login) { l.TokenStatus, l.TokenError = 500, "server_error" }, false, http.StatusServiceUnavailable, "idp_unavailable"},
		"bad gateway":        {func(l *fakeidp.Login) { l.TokenStatus = 502 }, false, http.StatusServiceUnavailable, "idp_unavailable"},
		"connection refused": {func(*fakeidp.Login) {}, true, http.StatusServiceUnavailable, "idp_unavailable"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			l := alice()
			c.script(&l)
			e.idp.Script(l)
			authURL, cookie := e.begin(enrollFlow, "alice@example.com")
			cb := e.follow(authURL)
			if c.closeIt {
				e.idp.Close()
			}
			e.refused(e.callback(cb.RawQuery, cookie), c.status, c.reason, 0)
		})
	}
}

// A code the provider does not know (forged or already redeemed) is refused
// by the provider and so by the callback.
func TestCallbackUnknownCode(t *testing.T) {
	e := newEnv(t)
	e.allowViolations = true
	authURL, cookie := e.begin(enrollFlow, "")
	q := url.Values{"state": {authURL.Query().Get("state")}, "code": {"code-forged"}}
	e.refused(e.callback(q.Encode(), cookie), http.StatusBadRequest, "code_rejected", 0)
	if v := e.idp.Violations(); len(v) == 0 {
		t.Errorf("the provider saw no bad code")
	}
}

func unsignedJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(claims)) + "."
}

// Every ID token fault ends on an error page with nothing stored.
func TestCallbackIDTokenFaults(t *testing.T) {
	past := epoch.Add(-time.Second).Unix()
	for name, script := range map[string]func(*fakeidp.Login){
		"wrong nonce":              func(l *fakeidp.Login) { l.IDClaims["nonce"] = "another-sign-ins-nonce" },
		"no nonce":                 func(l *fakeidp.Login) { l.IDClaims["nonce"] = nil },
		"wrong audience":           func(l *fakeidp.Login) { l.IDClaims["aud"] = "another-client" },
		"audience list without us": func(l *fakeidp.Login) { l.IDClaims["aud"] = []string{"a", "b"} },
		"no audience":              func(l *fakeidp.Login) { l.IDClaims["aud"] = nil },
		"wrong issuer":             func(l *fakeidp.Login) { l.IDClaims["iss"] = "https://evil.example.com" },
		"expired":                  func(l *fakeidp.Login) { l.IDClaims["exp"] = past },
		"no expiry":                func(l *fakeidp.Login) { l.IDClaims["exp"] = nil },
		"no subject":               func(l *fakeidp.Login) { l.IDClaims["sub"] = nil },
		"forged signature":         func(l *fakeidp.Login) { l.SigningKey = fakeidp.OtherKey() },
		"unsigned": func(l *fakeidp.Login) {
			l.RawIDToken = unsignedJWT(`{"iss":"x","sub":"alice-sub","aud":"mdmauth-test","exp":4102444800}`)
		},
		"garbage":     func(l *fakeidp.Login) { l.RawIDToken = "not.a.jwt" },
		"no id_token": func(l *fakeidp.Login) { l.NoIDToken = true },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			l := alice()
			script(&l)
			e.idp.Script(l)
			e.refused(e.signIn(enrollFlow, "alice@example.com"), http.StatusForbidden, "id_token_invalid", 0)
		})
	}
}

// The provider's keys being unreachable is an outage (503), not a bad
// ID token.
func TestCallbackKeysUnavailable(t *testing.T) {
	e := newEnv(t)
	e.idp.SetDown(fakeidp.JWKS, http.StatusServiceUnavailable)
	e.refused(e.signIn(enrollFlow, "alice@example.com"), http.StatusServiceUnavailable, "idp_unavailable", 0)

	// Once the keys are back the sign-in works.
	e.idp.SetDown(fakeidp.JWKS, 0)
	e.issued(e.signIn(enrollFlow, "alice@example.com"))
}

func TestCallbackStoreFailure(t *testing.T) {
	e := newEnv(t)
	authURL, cookie := e.begin(enrollFlow, "alice@example.com")
	cb := e.follow(authURL)
	e.st.failCreate = errors.New("disk full")
	e.refused(e.callback(cb.RawQuery, cookie), http.StatusServiceUnavailable, "store_unavailable", 0)
}
