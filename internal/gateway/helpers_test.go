package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/profile"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
	"github.com/mdmauth/mdmauth/internal/token"
)

// epoch starts every test clock, far from the wall clock so that a
// decision made on time.Now instead of the injected clock shows.
var epoch = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

const (
	host       = "mdm.example.com"
	origin     = "https://" + host
	protect    = "/mdm/ad"
	signInPath = "/mdmauth/sign-in/"
	issuer     = "https://idp.example.com"
	tokenTTL   = 24 * time.Hour

	// ueID is the EnrollmentID of the testdata/checkin/ue-*.plist messages.
	ueID = "5D7B2A19-3C4E-4F60-8A1B-9C0D2E3F4A5B"
	// addeIPhoneUDID is the UDID of adde-iphone-tokenupdate.plist.
	addeIPhoneUDID = "00008140-000C195E1A04801C"
	// macUDID is the UDID of adde-mac-authenticate.plist.
	macUDID = "00008112-001A2B3C4D5E601E"
)

// signKey is the fixed HMAC key of the test Signer.
var signKey = []byte("0123456789abcdef0123456789abcdef")

// rotationKey is the fixed refresh-token rotation key of the OAuth 2 tests.
var rotationKey = []byte("fedcba9876543210fedcba9876543210")

// env is a Gateway on a fresh Badger store with a controllable clock.
type env struct {
	tb     testing.TB
	ctx    context.Context
	clock  *storetest.Clock
	store  *badger.Store
	tokens *token.Manager
	signer signin.Signer
	gw     *gateway.Gateway
	logs   *observer.ObservedLogs
	// oauth issues the apple-oauth2 codes and tokens; nil unless the
	// configuration has OAuth2.
	oauth *token.OAuth
}

// newEnv builds the gateway of the package's tests: domains example.com,
// Mac → adde, protect /mdm/ad, the example template. edit may change the
// configuration before gateway.New; when it sets OAuth2, the sign-in serves
// apple-oauth2 with the same client id and redirect URL.
func newEnv(tb testing.TB, edit ...func(*gateway.Config)) *env {
	tb.Helper()
	return newEnvAt(tb, tb.TempDir(), edit...)
}

// newEnvAt is newEnv with the store in dir.
func newEnvAt(tb testing.TB, dir string, edit ...func(*gateway.Config)) *env {
	tb.Helper()
	return newEnvFull(tb, dir, signin.Signer{Key: signKey, MaxAge: 30 * 24 * time.Hour}, edit...)
}

// newEnvWithSigner is newEnv with another flow signer.
func newEnvWithSigner(tb testing.TB, signer signin.Signer, edit ...func(*gateway.Config)) *env {
	tb.Helper()
	return newEnvFull(tb, tb.TempDir(), signer, edit...)
}

// testStore opens a Badger store in dir on a test clock starting at
// epoch, closed when the test ends, and a token manager on it.
func testStore(tb testing.TB, dir string) (*storetest.Clock, *badger.Store, *token.Manager) {
	tb.Helper()
	clock := storetest.NewClock(epoch)
	s, err := badger.Open(badger.Options{Dir: dir, Now: clock.Now, GCInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return clock, s, &token.Manager{Store: s, Lifetime: token.Lifetime{TTL: tokenTTL, Floor: time.Hour}, Now: clock.Now}
}

func newEnvFull(tb testing.TB, dir string, signer signin.Signer, edit ...func(*gateway.Config)) *env {
	tb.Helper()
	clock, s, tokens := testStore(tb, dir)
	rp, err := signin.NewRP(signin.OIDCConfig{
		// Nothing listens on port 1: the provider is unreachable.
		Issuer:     "http://127.0.0.1:1/unreachable",
		ClientID:   "mdmauth",
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
		Now:        clock.Now,
	})
	if err != nil {
		tb.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	web := &signin.Web{RP: rp, Tokens: tokens, Store: s, Signer: signer, Now: clock.Now, Log: log}
	cfg := gateway.Config{
		Domains:     []string{"example.com"},
		FamilyModes: map[string]apple.Mode{"Mac": apple.ModeADDE},
		Template:    loadTemplate(tb),
		Protect:     []string{protect},
	}
	for _, f := range edit {
		f(&cfg)
	}
	var oauth *token.OAuth
	if cfg.OAuth2 != nil {
		oauth = &token.OAuth{M: tokens, Key: rotationKey}
		web.OAuth2 = &signin.OAuth2{ClientID: cfg.OAuth2.ClientID, RedirectURL: cfg.OAuth2.RedirectURL, Tokens: oauth}
	}
	gw, err := gateway.New(cfg, gateway.Deps{Web: web, Tokens: tokens, Store: s, Signer: signer, Log: log, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return &env{tb: tb, ctx: context.Background(), clock: clock, store: s, tokens: tokens, signer: signer, gw: gw, logs: logs, oauth: oauth}
}

// loadTemplate parses the example enrollment profile of the repository.
func loadTemplate(tb testing.TB) *profile.Template {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "enroll.mobileconfig"))
	if err != nil {
		tb.Fatal(err)
	}
	tpl, err := profile.ParseTemplate(data)
	if err != nil {
		tb.Fatal(err)
	}
	return tpl
}

// fixture returns a file under testdata.
func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// grant is the sign-in of alice for an enrollment of mode.
func grant(mode string) token.Grant {
	return token.Grant{
		Issuer:         issuer,
		Subject:        "sub-alice",
		SessionID:      "sid-alice",
		UserIdentifier: "alice@example.com",
		ManagedAppleID: "alice@example.com",
		Mode:           mode,
		ModelFamily:    "iPhone",
	}
}

// issue mints a token for g.
func (e *env) issue(g token.Grant) (string, store.Hash) {
	e.tb.Helper()
	raw, rec, err := e.tokens.Issue(e.ctx, g)
	if err != nil {
		e.tb.Fatal(err)
	}
	return raw, rec.Hash
}

// storedToken returns the record of a token.
func (e *env) storedToken(h store.Hash) *store.Token {
	e.tb.Helper()
	t, err := e.store.Token(e.ctx, h)
	if err != nil {
		e.tb.Fatal(err)
	}
	return t
}

// enrollment returns the enrollment id, or nil when there is none.
func (e *env) enrollment(id string) *store.Enrollment {
	e.tb.Helper()
	en, err := e.store.Enrollment(e.ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		e.tb.Fatal(err)
	}
	return en
}

// serve runs one request through the gateway.
func (e *env) serve(r *http.Request, next gateway.Next) (*httptest.ResponseRecorder, error) {
	w := httptest.NewRecorder()
	err := e.gw.ServeHTTP(w, r, next)
	return w, err
}

// mustServe runs one request through the gateway and fails on an error.
func (e *env) mustServe(r *http.Request, next gateway.Next) *httptest.ResponseRecorder {
	e.tb.Helper()
	w, err := e.serve(r, next)
	if err != nil {
		e.tb.Fatalf("ServeHTTP: %v", err)
	}
	return w
}

// mdmRequest is a check-in PUT to the protected path, with bearer if set.
func mdmRequest(body []byte, bearer string) *http.Request {
	r := httptest.NewRequest(http.MethodPut, origin+protect, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-apple-aspen-mdm-checkin")
	r.Header.Set("User-Agent", "MDM/1.0")
	r.Header.Set("Mdm-Signature", "MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCAMIIB")
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	return r
}

// enrollRequest is the enrollment POST of mode, with bearer if set.
func enrollRequest(mode, query string, body []byte, bearer string) *http.Request {
	target := origin + "/mdmauth/enroll/" + mode
	if query != "" {
		target += "?" + query
	}
	r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/pkcs7-signature")
	r.Header.Set("User-Agent", "DeviceManagementClient/1.0")
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	return r
}

// bind passes an MDM request with bearer that the MDM accepts, binding the
// token to the enrollment the body names.
func (e *env) bind(bearer string, body []byte) {
	e.tb.Helper()
	n := &recNext{status: http.StatusOK}
	w := e.mustServe(mdmRequest(body, bearer), n.serve)
	if w.Code != http.StatusOK || len(n.calls) != 1 {
		e.tb.Fatalf("binding request: status %d, %d calls to next; body %q", w.Code, len(n.calls), w.Body)
	}
}

// call is what the next handler received.
type call struct {
	Method           string
	Path             string
	Header           http.Header
	Body             []byte
	ContentLength    int64
	TransferEncoding []string
}

// recNext is a next handler that records its requests and answers status
// (nothing written when 0), then body, then returns err.
type recNext struct {
	status int
	body   string
	err    error
	calls  []call
}

func (n *recNext) serve(w http.ResponseWriter, r *http.Request) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	n.calls = append(n.calls, call{
		Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: b,
		ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding,
	})
	if n.status != 0 {
		w.WriteHeader(n.status)
	}
	if n.body != "" {
		_, _ = io.WriteString(w, n.body)
	}
	return n.err
}

// failNext is a next handler that must not run.
func failNext(tb testing.TB) gateway.Next {
	return func(w http.ResponseWriter, r *http.Request) error {
		tb.Helper()
		tb.Errorf("next called for %s %s", r.Method, r.URL.Path)
		return nil
	}
}

// challengeFlow checks that w is a 401 with exactly one apple-as-web
// challenge whose url is an https sign-in URL of the gateway at wantOrigin,
// and returns the flow it carries.
func (e *env) challengeFlow(w *httptest.ResponseRecorder, wantOrigin string) signin.Flow {
	e.tb.Helper()
	res := w.Result()
	if res.StatusCode != http.StatusUnauthorized {
		e.tb.Fatalf("status %d, want 401; body %q", res.StatusCode, w.Body)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		e.tb.Errorf("Cache-Control %q, want no-store", got)
	}
	values := res.Header.Values("WWW-Authenticate")
	if len(values) != 1 {
		e.tb.Fatalf("%d WWW-Authenticate headers, want exactly 1: %q", len(values), values)
	}
	method, params, err := apple.ParseChallenge(values[0])
	if err != nil {
		e.tb.Fatalf("challenge %q: %v", values[0], err)
	}
	if method != "apple-as-web" || len(params) != 1 || params[0].Name != "url" {
		e.tb.Fatalf("challenge %q: want method apple-as-web with one url parameter", values[0])
	}
	u, err := url.Parse(params[0].Value)
	if err != nil {
		e.tb.Fatalf("challenge url %q: %v", params[0].Value, err)
	}
	if u.Scheme+"://"+u.Host != wantOrigin || u.RawQuery != "" || u.Fragment != "" {
		e.tb.Errorf("challenge url %q: want %s%s<flow> without query", u, wantOrigin, signInPath)
	}
	v, ok := strings.CutPrefix(u.Path, signInPath)
	if !ok || v == "" || strings.Contains(v, "/") {
		e.tb.Fatalf("challenge url path %q is not a sign-in URL", u.Path)
	}
	f, err := e.signer.Decode(v, e.clock.Now())
	if err != nil {
		e.tb.Fatalf("challenge url flow: %v", err)
	}
	if !f.IssuedAt.Equal(e.clock.Now().Truncate(time.Second)) {
		e.tb.Errorf("flow issued at %s, want %s", f.IssuedAt, e.clock.Now())
	}
	f.IssuedAt = time.Time{}
	return f
}

// hashOf is the storage key of a token.
func hashOf(raw string) store.Hash { return token.HashOf(raw) }

// anyString formats a logged value.
func anyString(v any) string { return fmt.Sprint(v) }
