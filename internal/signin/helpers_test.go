package signin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
	"github.com/mdmauth/mdmauth/internal/token"
)

// epoch starts every test clock, far from the wall clock so that a decision
// made on time.Now instead of the injected clock shows.
var epoch = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

const (
	// site is where the gateway serves the sign-in.
	site        = "https://mdm.example.com/mdmauth/signin/"
	callbackURL = site + "callback"
	tokenTTL    = 24 * time.Hour
	// retryAfter is the relying party's discovery retry delay in tests.
	retryAfter = 30 * time.Second
)

// Flows the tests start.
var (
	enrollFlow = Flow{Kind: KindEnroll, Mode: "byod", ModelFamily: "iPhone"}
	reauthFlow = Flow{Kind: KindReauth, Mode: "byod", EnrollmentID: "ENR-1"}
)

// alice is the default scripted user.
func alice() fakeidp.Login {
	return fakeidp.Login{
		Subject:  "alice-sub",
		IDClaims: map[string]any{"email": "alice@example.com", "email_verified": true, "sid": "sid-alice"},
	}
}

// recStore wraps the real store and records every write, so a test can
// tell exactly what a sign-in stored.
type recStore struct {
	store.Store

	mu     sync.Mutex
	tokens []store.Hash
	logins map[string]store.LoginState
	// other lists writes the sign-in must never make.
	other []string
	// failCreate, when set before a request, makes CreateToken fail;
	// failNext makes only the next that many calls fail with it.
	failCreate error
	failNext   int
	// codes are the authorization codes created (apple-oauth2).
	codes []store.Code
	// atTokenEndpoint counts token requests in progress: their writes
	// (revocations, enrollment states) are theirs to make, and are listed
	// in tokenWrites instead of other.
	atTokenEndpoint int
	tokenWrites     []string
	// beforeUpdateFamily, when set, runs once before the next
	// UpdateFamily, to interleave requests.
	beforeUpdateFamily func()
}

func (s *recStore) UpdateFamily(ctx context.Context, id string, fn func(*store.Family) error) (*store.Family, error) {
	s.mu.Lock()
	hook := s.beforeUpdateFamily
	s.beforeUpdateFamily = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s.Store.UpdateFamily(ctx, id, fn)
}

func (s *recStore) CreateCode(ctx context.Context, c *store.Code) error {
	err := s.Store.CreateCode(ctx, c)
	if err == nil {
		s.mu.Lock()
		s.codes = append(s.codes, *c)
		s.mu.Unlock()
	}
	return err
}

// codeList returns the authorization codes created so far.
func (s *recStore) codeList() []store.Code {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Code(nil), s.codes...)
}

// tokenEndpoint runs fn as a token request.
func (s *recStore) tokenEndpoint(fn func()) {
	s.mu.Lock()
	s.atTokenEndpoint++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.atTokenEndpoint--
		s.mu.Unlock()
	}()
	fn()
}

func (s *recStore) CreateToken(ctx context.Context, t *store.Token) error {
	s.mu.Lock()
	fail := s.failCreate
	if fail != nil && s.failNext > 0 {
		if s.failNext--; s.failNext == 0 {
			s.failCreate = nil
		}
	}
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	err := s.Store.CreateToken(ctx, t)
	if err == nil {
		s.mu.Lock()
		s.tokens = append(s.tokens, t.Hash)
		s.mu.Unlock()
	}
	return err
}

func (s *recStore) PutLoginState(ctx context.Context, key string, ls store.LoginState) error {
	err := s.Store.PutLoginState(ctx, key, ls)
	if err == nil {
		s.mu.Lock()
		s.logins[key] = ls
		s.mu.Unlock()
	}
	return err
}

func (s *recStore) noteOther(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.atTokenEndpoint > 0 {
		s.tokenWrites = append(s.tokenWrites, op)
		return
	}
	s.other = append(s.other, op)
}

func (s *recStore) UpdateToken(ctx context.Context, h store.Hash, fn func(*store.Token) error) (*store.Token, error) {
	s.noteOther("UpdateToken")
	return s.Store.UpdateToken(ctx, h, fn)
}

func (s *recStore) UpdateEnrollment(ctx context.Context, id string, fn func(*store.Enrollment) (*store.Enrollment, error)) (*store.Enrollment, error) {
	s.noteOther("UpdateEnrollment")
	return s.Store.UpdateEnrollment(ctx, id, fn)
}

func (s *recStore) Bind(ctx context.Context, h store.Hash, id string, fn func(*store.Token, *store.Enrollment) (*store.Enrollment, error)) (*store.Token, *store.Enrollment, error) {
	s.noteOther("Bind")
	return s.Store.Bind(ctx, h, id, fn)
}

// tokenCount is how many tokens the sign-in stored so far.
func (s *recStore) tokenCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

func (s *recStore) loginCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.logins)
}

// env is a Web sign-in against a fake provider, on a fresh Badger store,
// with one controllable clock for all of them.
type env struct {
	t     *testing.T
	ctx   context.Context
	clock *storetest.Clock
	idp   *fakeidp.Provider
	db    *badger.Store // unwrapped, for seeding and inspection
	st    *recStore
	rp    *RP
	web   *Web
	logs  *observer.ObservedLogs

	mu sync.Mutex
	// secrets seen by the browser side (cookies, minted tokens) that no
	// log line may contain.
	secrets []string
	// allowViolations is set by tests that provoke protocol errors at the
	// provider on purpose.
	allowViolations bool
}

// newEnv builds the environment; cfg adjusts the relying party's
// configuration before NewRP.
func newEnv(t *testing.T, cfg ...func(*OIDCConfig)) *env {
	t.Helper()
	clock := storetest.NewClock(epoch)
	idp := fakeidp.New(clock.Now)
	t.Cleanup(idp.Close)
	idp.Script(alice())

	db, err := badger.Open(badger.Options{Dir: t.TempDir(), Now: clock.Now, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	st := &recStore{Store: db, logins: map[string]store.LoginState{}}

	oc := OIDCConfig{
		Issuer: idp.Issuer, ClientID: idp.ClientID, ClientSecret: idp.ClientSecret,
		HTTPClient: idp.Client(), RetryAfter: retryAfter, Now: clock.Now,
	}
	for _, f := range cfg {
		f(&oc)
	}
	rp, err := NewRP(oc)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	e := &env{
		t: t, ctx: context.Background(), clock: clock, idp: idp, db: db, st: st, rp: rp, logs: logs,
		web: &Web{
			RP:     rp,
			Tokens: &token.Manager{Store: st, Lifetime: token.Lifetime{TTL: tokenTTL, Floor: time.Hour}, Now: clock.Now},
			Store:  st,
			Signer: Signer{Key: bytes.Repeat([]byte("k"), 32), MaxAge: 7 * 24 * time.Hour},
			Claims: Claims{RequireEmailVerified: true},
			Now:    clock.Now,
			Log:    zap.New(core),
		},
	}
	// Registered last, so it runs first: every test ends with the log and
	// protocol checks.
	t.Cleanup(e.finalChecks)
	return e
}

func (e *env) finalChecks() {
	e.t.Helper()
	e.mu.Lock()
	secrets := append(e.idp.Secrets(), e.secrets...)
	e.mu.Unlock()
	for _, le := range e.logs.All() {
		line := le.Message + " " + fmt.Sprint(le.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				e.t.Errorf("log line %q carries a secret (code, verifier, token or client secret)", le.Message)
			}
		}
	}
	if v := e.idp.Violations(); len(v) > 0 && !e.allowViolations {
		e.t.Errorf("protocol violations at the provider: %q", v)
	}
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	if len(e.st.other) > 0 {
		e.t.Errorf("the sign-in wrote %v; it may only create tokens and login states", e.st.other)
	}
}

func (e *env) secret(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s)
}

// link returns the signed path value of f, issued now unless set.
func (e *env) link(f Flow) string {
	e.t.Helper()
	if f.IssuedAt.IsZero() {
		f.IssuedAt = e.clock.Now()
	}
	v, err := e.web.Signer.Encode(f)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// startLink opens a sign-in url the way the device's web view does.
func (e *env) startLink(v, typed string) *httptest.ResponseRecorder {
	e.t.Helper()
	target := site + v
	if typed != "" {
		// As the device sends it: '@' and '+' unescaped.
		target += "?user-identifier=" + apple.Escape(typed, "@+")
	}
	w := httptest.NewRecorder()
	e.web.Start(w, httptest.NewRequest(http.MethodGet, target, nil), v, callbackURL)
	checkSecurityHeaders(e.t, "start", w.Header())
	for _, c := range w.Result().Cookies() {
		e.secret(c.Value)
	}
	return w
}

func (e *env) start(f Flow, typed string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.startLink(e.link(f), typed)
}

// begin starts a sign-in that must reach the provider and returns the
// authorization URL and the browser's cookie.
func (e *env) begin(f Flow, typed string) (*url.URL, *http.Cookie) {
	e.t.Helper()
	w := e.start(f, typed)
	if w.Code != http.StatusFound {
		e.t.Fatalf("start: status %d, want 302; body: %s", w.Code, w.Body)
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		e.t.Fatalf("start set %d cookies, want 1", len(cookies))
	}
	return loc, cookies[0]
}

// follow lets the provider sign the scripted user in and returns the
// callback URL it redirects to.
func (e *env) follow(authURL *url.URL) *url.URL {
	e.t.Helper()
	cb, err := e.idp.Follow(authURL.String())
	if err != nil {
		e.t.Fatal(err)
	}
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != callbackURL {
		e.t.Fatalf("provider redirected to %s, want %s", got, callbackURL)
	}
	return cb
}

// callback delivers the provider's redirect with the given cookies.
func (e *env) callback(rawQuery string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(http.MethodGet, callbackURL+"?"+rawQuery, nil)
	for _, c := range cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	w := httptest.NewRecorder()
	e.web.Callback(w, r, callbackURL)
	checkSecurityHeaders(e.t, "callback", w.Header())
	if loc := w.Header().Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil {
			e.secret(u.Query().Get("access-token"))
			e.secret(u.Query().Get("code"))
		}
	}
	return w
}

// signIn runs a whole sign-in: start, provider, callback.
func (e *env) signIn(f Flow, typed string) *httptest.ResponseRecorder {
	e.t.Helper()
	authURL, cookie := e.begin(f, typed)
	cb := e.follow(authURL)
	return e.callback(cb.RawQuery, cookie)
}

// issued asserts the 308 to the device's callback scheme and returns the
// access token and its stored record.
func (e *env) issued(w *httptest.ResponseRecorder) (string, *store.Token) {
	e.t.Helper()
	if w.Code != http.StatusPermanentRedirect {
		e.t.Fatalf("callback: status %d, want 308; body: %s", w.Code, w.Body)
	}
	loc := w.Header().Get("Location")
	u, err := url.Parse(loc)
	if err != nil {
		e.t.Fatal(err)
	}
	if u.Scheme != "apple-remotemanagement-user-login" || u.Host != "authentication-results" || u.Path != "" {
		e.t.Fatalf("Location %s: want apple-remotemanagement-user-login://authentication-results", loc)
	}
	vals := u.Query()["access-token"]
	if len(vals) != 1 || !token.WellFormed(vals[0]) {
		e.t.Fatalf("Location %s: want exactly one well-formed access-token", loc)
	}
	raw := vals[0]
	if loc != apple.AuthenticationResultsURL(raw) {
		e.t.Errorf("Location %s, want %s", loc, apple.AuthenticationResultsURL(raw))
	}
	if w.Body.Len() != 0 {
		e.t.Errorf("308 has a body: %q", w.Body)
	}
	rec, err := e.db.Token(e.ctx, token.HashOf(raw))
	if err != nil {
		e.t.Fatalf("the token in Location is not stored: %v", err)
	}
	return raw, rec
}

// refused asserts an HTML error page with status and reason, no redirect
// and no token stored since before.
func (e *env) refused(w *httptest.ResponseRecorder, status int, reason string, tokensBefore int) {
	e.t.Helper()
	wantPage(e.t, w, status, reason)
	if n := e.st.tokenCount(); n != tokensBefore {
		e.t.Errorf("%d token(s) stored by a refused sign-in", n-tokensBefore)
	}
}

// wantPage asserts an HTML error page.
func wantPage(t *testing.T, w *httptest.ResponseRecorder, status int, reason string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body: %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if loc := w.Header().Get("Location"); loc != "" {
		t.Errorf("error page redirects to %s", loc)
	}
	body := w.Body.String()
	if !strings.HasPrefix(body, "<!DOCTYPE html>") || !strings.Contains(body, fmt.Sprintf("Error %d", status)) {
		t.Errorf("not an error page: %s", body)
	}
	if !strings.Contains(body, reason) {
		t.Errorf("page does not name reason %q: %s", reason, body)
	}
}

// checkSecurityHeaders asserts the headers every sign-in response carries.
func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Cache-Control":          "no-store",
		"Referrer-Policy":        "no-referrer",
		"X-Content-Type-Options": "nosniff",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	directives := map[string][]string{}
	for _, d := range strings.Split(csp, ";") {
		f := strings.Fields(d)
		if len(f) > 0 {
			directives[f[0]] = f[1:]
		}
	}
	if got := directives["default-src"]; len(got) != 1 || got[0] != "'none'" {
		t.Errorf("%s: CSP %q: want default-src 'none'", what, csp)
	}
	if got := directives["frame-ancestors"]; len(got) != 1 || got[0] != "'none'" {
		t.Errorf("%s: CSP %q: want frame-ancestors 'none'", what, csp)
	}
	fa := strings.Join(directives["form-action"], " ")
	if !strings.Contains(fa, "apple-remotemanagement-user-login:") {
		t.Errorf("%s: CSP %q: form-action must allow the device's callback scheme", what, csp)
	}
	if _, ok := directives["navigate-to"]; ok {
		t.Errorf("%s: CSP %q restricts navigation", what, csp)
	}
}

// loginStateOf decodes the login state stored under key.
func (e *env) loginStateOf(key string) (loginState, store.LoginState) {
	e.t.Helper()
	e.st.mu.Lock()
	ls, ok := e.st.logins[key]
	e.st.mu.Unlock()
	if !ok {
		e.t.Fatalf("no login state stored under the state sent to the provider")
	}
	var st loginState
	if err := json.Unmarshal(ls.Data, &st); err != nil {
		e.t.Fatal(err)
	}
	return st, ls
}

// seed writes an enrollment straight into the store.
func (e *env) seed(en store.Enrollment) {
	e.t.Helper()
	if en.CreatedAt.IsZero() {
		en.CreatedAt, en.UpdatedAt = e.clock.Now(), e.clock.Now()
	}
	_, err := e.db.UpdateEnrollment(e.ctx, en.ID, func(*store.Enrollment) (*store.Enrollment, error) { return &en, nil })
	if err != nil {
		e.t.Fatal(err)
	}
}

func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// errReader fails every read.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("entropy unavailable") }
