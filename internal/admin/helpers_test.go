package admin_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
	"github.com/mdmauth/mdmauth/internal/token"
)

// epoch starts every test clock, far from the wall clock.
var epoch = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

const (
	issuer = "https://idp.example.com"
	client = "mdmauth"
)

// rotationKey is the OAuth 2 rotation key of the tests.
var rotationKey = []byte("fedcba9876543210fedcba9876543210")

// env is the admin API on a fresh Badger store, served over HTTP.
type env struct {
	t      *testing.T
	ctx    context.Context
	clock  *storetest.Clock
	store  *badger.Store
	tokens *token.Manager
	oauth  *token.OAuth
	srv    *httptest.Server
	logs   *observer.ObservedLogs
	// served is the store the API is given (store unless swapStore).
	served store.Store
	sites  []admin.Site

	mu sync.Mutex
	// secrets are strings no answer may contain: tokens, refresh tokens,
	// whole token hashes, identity provider tokens.
	secrets []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := storetest.NewClock(epoch)
	s, err := badger.Open(badger.Options{Dir: t.TempDir(), Now: clock.Now, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	m := &token.Manager{Store: s, Lifetime: token.Lifetime{TTL: 24 * time.Hour, Floor: time.Hour}, Now: clock.Now}
	core, logs := observer.New(zapcore.DebugLevel)
	e := &env{t: t, ctx: context.Background(), clock: clock, store: s, tokens: m, logs: logs,
		oauth: &token.OAuth{M: m, Key: rotationKey}}
	h := &admin.Handler{
		Source: func(context.Context) (*admin.Deployment, func(), error) {
			e.mu.Lock()
			st := e.served
			e.mu.Unlock()
			if st == nil {
				st = e.store
			}
			return &admin.Deployment{Store: st, Sites: e.sites}, func() {}, nil
		},
		Log: zap.New(core),
		Now: clock.Now,
	}
	mux := http.NewServeMux()
	mux.Handle("/mdm_auth/", h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// swapStore makes the API serve s instead of the env's store.
func (e *env) swapStore(s store.Store) {
	e.mu.Lock()
	e.served = s
	e.mu.Unlock()
}

func (e *env) secret(s ...string) {
	e.mu.Lock()
	e.secrets = append(e.secrets, s...)
	e.mu.Unlock()
}

// hashSecret records a token hash (hex and base64url-free raw forms).
func (e *env) hashSecret(h store.Hash) {
	e.secret(hex.EncodeToString(h[:]))
}

// do sends a request and returns the status, the headers and the body,
// after checking that the body holds no secret and that errors are JSON.
func (e *env) do(method, path string, body string) (int, http.Header, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	e.checkSecrets(method+" "+path, b)
	if res.StatusCode >= 400 {
		var eb struct {
			Error string `json:"error"`
		}
		if res.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			e.t.Errorf("%s %s: %d with a body that is not a JSON error: %q", method, path, res.StatusCode, b)
		}
	}
	return res.StatusCode, res.Header, b
}

func (e *env) checkSecrets(what string, b []byte) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.secrets {
		if s != "" && bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s))) {
			e.t.Errorf("%s: the answer holds a secret (%d bytes)", what, len(s))
		}
	}
}

// call sends a request that must answer want, and decodes the body into
// out (when not nil).
func (e *env) call(method, path, body string, want int, out any) []byte {
	e.t.Helper()
	code, _, b := e.do(method, path, body)
	if code != want {
		e.t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return b
}

// followPages GETs path and then, while the answer names a next_cursor,
// the page it names; page decodes one answer L into its ids and next
// cursor. It returns the ids of every page and the number of pages.
func followPages[L any](e *env, path string, page func(*L) (ids []string, next string)) ([]string, int) {
	e.t.Helper()
	var all []string
	cursor, pages := "", 0
	for {
		p := path
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		var list L
		e.call("GET", p, "", http.StatusOK, &list)
		pages++
		ids, next := page(&list)
		all = append(all, ids...)
		if next == "" {
			return all, pages
		}
		if pages > 100 {
			e.t.Fatal("the cursor never ends")
		}
		cursor = next
	}
}

// grant is a sign-in of user (sub "sub-<user>").
func grant(user, mode string) token.Grant {
	return token.Grant{Issuer: issuer, Subject: "sub-" + user, SessionID: "sid-" + user,
		UserIdentifier: user + "@example.com", ManagedAppleID: user + "@example.com", Mode: mode, ModelFamily: "iPhone"}
}

// issue mints a web sign-in token.
func (e *env) issue(g token.Grant) (string, *store.Token) {
	e.t.Helper()
	raw, t, err := e.tokens.Issue(e.ctx, g)
	if err != nil {
		e.t.Fatal(err)
	}
	e.secret(raw)
	e.hashSecret(t.Hash)
	return raw, t
}

// signInOAuth runs an OAuth 2 sign-in (code, exchange) and returns the
// token pair.
func (e *env) signInOAuth(g token.Grant, enrollmentID string) *token.TokenPair {
	e.t.Helper()
	code, err := e.oauth.NewCode(e.ctx, token.CodeGrant{Grant: g, ClientID: client,
		RedirectURI: "apple-remotemanagement-user-login:/oauth2/redirection", EnrollmentID: enrollmentID, SignedInAt: e.clock.Now(),
		IdPRefresh: []byte("idp-refresh-secret-" + g.Subject), IdPKeyID: "k1"})
	if err != nil {
		e.t.Fatal(err)
	}
	e.secret(code)
	p, err := e.oauth.Exchange(e.ctx, code, client, "apple-remotemanagement-user-login:/oauth2/redirection", "")
	if err != nil {
		e.t.Fatal(err)
	}
	e.secret(p.AccessToken, p.RefreshToken, "idp-refresh-secret-"+g.Subject)
	e.hashSecret(p.Access.Hash)
	e.hashSecret(p.Family.RefreshHash)
	return p
}

// mdm sends a protected MDM request with bearer for enrollment id and
// commits it; it returns the decision.
func (e *env) mdm(bearer, id string) *token.Decision {
	e.t.Helper()
	d, err := e.tokens.Authorize(e.ctx, token.Request{Bearer: bearer, MessageType: "Authenticate", EnrollmentID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	if d.Allow {
		if err := d.Commit(e.ctx); err != nil {
			e.t.Fatal(err)
		}
	}
	return d
}

// enroll signs user in on the web and binds the token to id.
func (e *env) enroll(user, mode, id string) string {
	e.t.Helper()
	raw, _ := e.issue(grant(user, mode))
	if d := e.mdm(raw, id); !d.Allow {
		e.t.Fatalf("binding %s: %s", id, d.Reason)
	}
	return raw
}

// put stores an enrollment directly.
func (e *env) put(en *store.Enrollment) {
	e.t.Helper()
	if en.CreatedAt.IsZero() {
		en.CreatedAt, en.UpdatedAt = e.clock.Now(), e.clock.Now()
	}
	if _, err := e.store.UpdateEnrollment(e.ctx, en.ID, func(*store.Enrollment) (*store.Enrollment, error) { return en, nil }); err != nil {
		e.t.Fatal(err)
	}
}

// enrollment reads an enrollment from the store.
func (e *env) enrollment(id string) *store.Enrollment {
	e.t.Helper()
	en, err := e.store.Enrollment(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return en
}

// token reads a token record.
func (e *env) token(h store.Hash) *store.Token {
	e.t.Helper()
	t, err := e.store.Token(e.ctx, h)
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// family reads a family record.
func (e *env) family(id string) *store.Family {
	e.t.Helper()
	f, err := e.store.Family(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// fakeRenderer renders "profile of <id> at <name>" or returns err.
type fakeRenderer struct {
	name string
	err  error
}

func (f fakeRenderer) RenderProfile(_ context.Context, id string) ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	if id == "missing" {
		return nil, fmt.Errorf("looking up: %w", store.ErrNotFound)
	}
	return []byte("profile of " + id + " at " + f.name), nil
}

var errConflict = fmt.Errorf("%w: the enrollment is blocked", admin.ErrProfileConflict)

// hashOfRaw is the storage key of a raw token.
func hashOfRaw(raw string) store.Hash { return token.HashOf(raw) }
