package signin

import (
	"crypto/sha256"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
	"github.com/mdmauth/mdmauth/internal/store"
)

func TestStartRedirectsToProvider(t *testing.T) {
	e := newEnv(t)
	w := e.start(enrollFlow, "alice@example.com")
	if w.Code != http.StatusFound {
		t.Fatalf("status %d, want 302; body %s", w.Code, w.Body)
	}
	authURL, cookie := e.begin(enrollFlow, "alice@example.com")
	if got := authURL.Scheme + "://" + authURL.Host + authURL.Path; got != e.idp.URL(fakeidp.Authorize) {
		t.Fatalf("redirect to %s, want the provider's authorization endpoint", got)
	}
	q := authURL.Query()
	for k, want := range map[string]string{
		"response_type":         "code",
		"client_id":             e.idp.ClientID,
		"redirect_uri":          callbackURL,
		"code_challenge_method": "S256",
		"login_hint":            "alice@example.com",
	} {
		if got := q[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if scopes := strings.Fields(q.Get("scope")); !slices.Contains(scopes, "openid") || !slices.Contains(scopes, "email") || !slices.Contains(scopes, "profile") {
		t.Errorf("scope %q, want openid email profile", q.Get("scope"))
	}
	for _, k := range []string{"prompt", "max_age", "client_secret", "code_verifier"} {
		if q.Has(k) {
			t.Errorf("an enrollment sign-in sends %s=%q", k, q.Get(k))
		}
	}
	state, nonce := q.Get("state"), q.Get("nonce")
	if len(state) < 43 || len(nonce) < 43 || state == nonce {
		t.Errorf("state %q and nonce %q: want two distinct 256-bit values", state, nonce)
	}

	// The cookie binds the sign-in to this browser.
	if cookie.Name != CookieName || !strings.HasPrefix(cookie.Name, "__Host-") {
		t.Errorf("cookie name %q, want a __Host- cookie", cookie.Name)
	}
	if !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Domain != "" {
		t.Errorf("cookie %+v: want Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", cookie)
	}
	if cookie.MaxAge != int((10*time.Minute)/time.Second) {
		t.Errorf("cookie Max-Age %d, want the login TTL", cookie.MaxAge)
	}
	if len(cookie.Value) < 43 {
		t.Errorf("cookie value %d chars, want 256 bits", len(cookie.Value))
	}

	// The pending sign-in is stored under the state, bound to the cookie.
	st, ls := e.loginStateOf(state)
	now := e.clock.Now()
	if !ls.ExpiresAt.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("login state expires %v, want %v", ls.ExpiresAt, now.Add(10*time.Minute))
	}
	if st.Flow.Kind != KindEnroll || st.Flow.Mode != "byod" || st.Flow.ModelFamily != "iPhone" {
		t.Errorf("stored flow %+v", st.Flow)
	}
	if st.Nonce != nonce {
		t.Errorf("stored nonce differs from the one sent")
	}
	if s256(st.Verifier) != q.Get("code_challenge") {
		t.Errorf("code_challenge is not the S256 of the stored verifier")
	}
	if len(st.Verifier) < 43 {
		t.Errorf("verifier %d chars, want at least 43", len(st.Verifier))
	}
	if h := sha256.Sum256([]byte(cookie.Value)); string(st.Binding) != string(h[:]) {
		t.Errorf("stored binding is not the hash of the cookie")
	}
	if strings.Contains(string(ls.Data), cookie.Value) {
		t.Errorf("the cookie value itself is stored")
	}
	if st.UserIdentifier != "alice@example.com" || !st.Created.Equal(now) {
		t.Errorf("stored identifier %q created %v", st.UserIdentifier, st.Created)
	}
	if e.st.tokenCount() != 0 || e.st.loginCount() != 2 {
		t.Errorf("two starts stored %d tokens and %d login states", e.st.tokenCount(), e.st.loginCount())
	}
	if e.idp.Hits(fakeidp.Authorize) != 0 || e.idp.Hits(fakeidp.Token) != 0 {
		t.Errorf("Start itself called the provider's authorization or token endpoint")
	}
}

func TestStartFreshValuesEachTime(t *testing.T) {
	e := newEnv(t)
	seen := map[string]bool{}
	for range 3 {
		u, c := e.begin(enrollFlow, "")
		q := u.Query()
		for _, v := range []string{q.Get("state"), q.Get("nonce"), q.Get("code_challenge"), c.Value} {
			if seen[v] {
				t.Fatalf("value %q repeated across sign-ins", v)
			}
			seen[v] = true
		}
	}
}

func TestStartUserIdentifier(t *testing.T) {
	for name, c := range map[string]struct {
		typed, wantHint string
	}{
		"none":      {"", ""},
		"typed":     {"Bob.Smith+mdm@Example.COM", "Bob.Smith+mdm@Example.COM"},
		"too long":  {strings.Repeat("a", 310) + "@example.com", ""},
		"limit 320": {strings.Repeat("a", 308) + "@example.com", strings.Repeat("a", 308) + "@example.com"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			u, _ := e.begin(enrollFlow, c.typed)
			q := u.Query()
			if q.Get("login_hint") != c.wantHint || (c.wantHint == "") == q.Has("login_hint") {
				t.Errorf("login_hint %q (present %v), want %q", q.Get("login_hint"), q.Has("login_hint"), c.wantHint)
			}
			st, _ := e.loginStateOf(q.Get("state"))
			if st.UserIdentifier != c.wantHint {
				t.Errorf("stored identifier %q, want %q", st.UserIdentifier, c.wantHint)
			}
		})
	}
}

func TestStartFreshLoginForReauth(t *testing.T) {
	for name, c := range map[string]struct {
		flow                Flow
		maxAge              time.Duration
		wantPrompt, wantAge string
	}{
		"enroll":                    {enrollFlow, 0, "", ""},
		"enroll with max_age set":   {enrollFlow, 5 * time.Minute, "", ""},
		"reauth":                    {reauthFlow, 0, "login", ""},
		"reauth with max_age":       {reauthFlow, 5 * time.Minute, "", "300"},
		"reauth without enrollment": {Flow{Kind: KindReauth, Mode: "adde"}, 0, "login", ""},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.web.ReauthMaxAge = c.maxAge
			u, _ := e.begin(c.flow, "alice@example.com")
			q := u.Query()
			if q.Get("prompt") != c.wantPrompt || q.Has("prompt") != (c.wantPrompt != "") {
				t.Errorf("prompt %q, want %q", q.Get("prompt"), c.wantPrompt)
			}
			if q.Get("max_age") != c.wantAge || q.Has("max_age") != (c.wantAge != "") {
				t.Errorf("max_age %q, want %q", q.Get("max_age"), c.wantAge)
			}
			if q.Get("login_hint") != "alice@example.com" {
				t.Errorf("login_hint %q", q.Get("login_hint"))
			}
		})
	}
}

// A link that does not verify stops before any I/O: no provider call, no
// state, no cookie.
func TestStartBadLink(t *testing.T) {
	e := newEnv(t)
	other := Signer{Key: []byte(strings.Repeat("o", 32))}
	forged, err := other.Encode(Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: epoch})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"garbage":   "not-a-flow",
		"forged":    forged,
		"expired":   e.link(Flow{Kind: KindEnroll, Mode: "byod", IssuedAt: epoch.Add(-8 * 24 * time.Hour)}),
		"truncated": e.link(enrollFlow)[:20],
	} {
		t.Run(name, func(t *testing.T) {
			w := e.startLink(v, "alice@example.com")
			wantPage(t, w, http.StatusNotFound, "bad_link")
			if len(w.Result().Cookies()) != 0 {
				t.Errorf("a refused start sets a cookie")
			}
		})
	}
	if n := e.idp.Hits(fakeidp.Discovery); n != 0 {
		t.Errorf("bad links caused %d discovery requests", n)
	}
	if e.st.loginCount() != 0 || e.st.tokenCount() != 0 {
		t.Errorf("bad links stored something")
	}
}

func TestStartRandomnessFailure(t *testing.T) {
	e := newEnv(t)
	e.web.Rand = errReader{}
	w := e.start(enrollFlow, "")
	wantPage(t, w, http.StatusInternalServerError, "internal")
	if e.st.loginCount() != 0 || len(w.Result().Cookies()) != 0 {
		t.Errorf("a start without randomness stored a login state or set a cookie")
	}
}

// Discovery is lazy: NewRP makes no request; a failed discovery answers 503,
// stores nothing, is remembered for RetryAfter and retried after it; once
// it succeeded it is cached.
func TestStartDiscoveryDownThenUp(t *testing.T) {
	e := newEnv(t)
	if n := e.idp.Hits(fakeidp.Discovery); n != 0 {
		t.Fatalf("NewRP made %d discovery requests", n)
	}
	e.idp.SetDown(fakeidp.Discovery, http.StatusServiceUnavailable)

	down := func(wantHits int) {
		t.Helper()
		w := e.start(enrollFlow, "alice@example.com")
		wantPage(t, w, http.StatusServiceUnavailable, "idp_unavailable")
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("a failed start sets a cookie")
		}
		if e.st.loginCount() != 0 {
			t.Errorf("a failed start stored a login state")
		}
		if n := e.idp.Hits(fakeidp.Discovery); n != wantHits {
			t.Errorf("discovery requests: %d, want %d", n, wantHits)
		}
	}
	down(1)
	down(1) // the failure is remembered
	e.clock.Advance(retryAfter)
	down(2) // and retried after RetryAfter

	e.idp.SetDown(fakeidp.Discovery, 0)
	down(2) // still remembered until RetryAfter passes
	e.clock.Advance(retryAfter)

	e.issued(e.signIn(enrollFlow, "alice@example.com"))
	e.issued(e.signIn(enrollFlow, "alice@example.com"))
	if n := e.idp.Hits(fakeidp.Discovery); n != 3 {
		t.Errorf("discovery requests: %d, want 3 (cached once it worked)", n)
	}
}

func TestStartProviderUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *OIDCConfig) { c.Issuer = closed })
	w := e.start(enrollFlow, "")
	wantPage(t, w, http.StatusServiceUnavailable, "idp_unavailable")
	if e.st.loginCount() != 0 || len(w.Result().Cookies()) != 0 {
		t.Errorf("a failed start stored a login state or set a cookie")
	}
}

func TestNewRP(t *testing.T) {
	for name, c := range map[string]OIDCConfig{
		"no issuer":    {ClientID: "c"},
		"no client_id": {Issuer: "https://idp.example.com"},
	} {
		if _, err := NewRP(c); err == nil {
			t.Errorf("%s: NewRP succeeded", name)
		}
	}
	// No I/O: a provider that does not exist is not an error yet.
	if _, err := NewRP(OIDCConfig{Issuer: "http://127.0.0.1:1", ClientID: "c"}); err != nil {
		t.Errorf("NewRP with an unreachable issuer: %v", err)
	}
}

func TestStartEnrollmentState(t *testing.T) {
	for state, want := range map[store.State]struct {
		status int
		reason string
	}{
		store.StateActive:      {http.StatusFound, ""},
		store.StateReauth:      {http.StatusFound, ""},
		store.StateBlocked:     {http.StatusForbidden, "enrollment_blocked"},
		store.StateOffboarding: {http.StatusForbidden, "enrollment_ending"},
		store.StateRemoved:     {http.StatusForbidden, "enrollment_ending"},
	} {
		t.Run(string(state), func(t *testing.T) {
			e := newEnv(t)
			e.seed(store.Enrollment{ID: reauthFlow.EnrollmentID, Issuer: e.idp.Issuer, Subject: "alice-sub", Mode: "byod", State: state})
			w := e.start(reauthFlow, "alice@example.com")
			if want.status == http.StatusFound {
				if w.Code != http.StatusFound {
					t.Fatalf("status %d, want 302; body %s", w.Code, w.Body)
				}
				return
			}
			wantPage(t, w, want.status, want.reason)
			if e.st.loginCount() != 0 || len(w.Result().Cookies()) != 0 {
				t.Errorf("a refused start stored a login state or set a cookie")
			}
			if n := e.idp.Hits(fakeidp.Discovery); n != 0 {
				t.Errorf("a refused start contacted the provider")
			}
		})
	}
}
