package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
)

const logoutPath = "/mdmauth/oidc/backchannel-logout"

// stubVerifier answers for the logout tokens it knows; any other token is
// a bad signature.
type stubVerifier struct {
	mu     sync.Mutex
	tokens map[string]*signin.LogoutToken
	err    error // returned for every token when set
	calls  int
}

func (v *stubVerifier) VerifyLogoutToken(_ context.Context, raw string) (*signin.LogoutToken, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	if v.err != nil {
		return nil, v.err
	}
	if lt, ok := v.tokens[raw]; ok {
		cp := *lt
		return &cp, nil
	}
	return nil, &signin.LogoutError{Reason: signin.LogoutSignature, Detail: "not signed by the provider"}
}

// logoutEnv is a gateway serving back-channel logout with a stub
// verifier, and alice enrolled twice: ueID in IdP session sid-alice,
// addeIPhoneUDID in session sid-other.
type logoutEnv struct {
	*env
	v                 *stubVerifier
	ueRaw, addeRaw    string
	ueHash, addeHash  store.Hash
	ueBody, addeBody  []byte
	sidToken, subOnly string // raw logout tokens the verifier accepts
}

func newLogoutEnv(t *testing.T, allSessions bool) *logoutEnv {
	t.Helper()
	v := &stubVerifier{tokens: map[string]*signin.LogoutToken{}}
	e := newEnv(t, func(c *gateway.Config) {
		c.BackchannelLogout = &gateway.BackchannelLogout{Verifier: v, AllSessions: allSessions}
	})
	le := &logoutEnv{env: e, v: v, ueBody: fixture(t, "checkin/ue-tokenupdate.plist"), addeBody: fixture(t, "checkin/adde-iphone-tokenupdate.plist")}
	le.ueRaw, le.ueHash = e.issue(grant("byod"))
	e.bind(le.ueRaw, le.ueBody)
	g := grant("adde")
	g.SessionID = "sid-other"
	le.addeRaw, le.addeHash = e.issue(g)
	e.bind(le.addeRaw, le.addeBody)

	now := e.clock.Now()
	mk := func(raw, sub, sid, jti string) string {
		v.tokens[raw] = &signin.LogoutToken{Issuer: issuer, Subject: sub, SessionID: sid, JTI: jti,
			IssuedAt: now, Expiry: now.Add(2 * time.Minute), ReplayUntil: now.Add(3 * time.Minute)}
		return raw
	}
	le.sidToken = mk("eyJsid.logout.token", "sub-alice", "sid-alice", "jti-1")
	le.subOnly = mk("eyJsub.logout.token", "sub-alice", "", "jti-2")
	return le
}

// logoutRequest is the provider's POST with body and content type.
func logoutRequest(body, contentType string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, origin+logoutPath, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.Header.Set("User-Agent", "idp-backchannel/1.0")
	return r
}

// postLogout posts raw as logout_token.
func (e *logoutEnv) postLogout(raw string) *httptest.ResponseRecorder {
	e.tb.Helper()
	return e.mustServe(logoutRequest(url.Values{"logout_token": {raw}}.Encode(), "application/x-www-form-urlencoded"), failNext(e.tb))
}

// wantLogoutError checks a refusal: status, no-store, and an OAuth error
// object with code and nothing of secret.
func wantLogoutError(t *testing.T, w *httptest.ResponseRecorder, status int, code string, secrets ...string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %q", w.Code, status, w.Body)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	if body["error"] != code {
		t.Errorf("error %q, want %q", body["error"], code)
	}
	for _, s := range secrets {
		if strings.Contains(w.Body.String(), s) {
			t.Errorf("the error body carries %q", s)
		}
	}
}

// lastLog returns the context of the last entry of event.
func (e *logoutEnv) lastLog(event string) map[string]any {
	e.tb.Helper()
	entries := e.logs.FilterField(zap.String("event", event)).All()
	if len(entries) == 0 {
		e.tb.Fatalf("no %s entry", event)
	}
	return entries[len(entries)-1].ContextMap()
}

// noSecretsLogged fails if any log entry carries one of secrets.
func (e *logoutEnv) noSecretsLogged(secrets ...string) {
	e.tb.Helper()
	for _, le := range e.logs.All() {
		line := le.Message + " " + anyString(le.ContextMap())
		for _, s := range secrets {
			if strings.Contains(line, s) {
				e.tb.Errorf("log entry %q carries a token", le.Message)
			}
		}
	}
}

func TestBackchannelLogoutEndsTheSession(t *testing.T) {
	e := newLogoutEnv(t, false)
	w := e.postLogout(e.sidToken)
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Fatalf("logout: status %d body %q, want 200 and no body", w.Code, w.Body)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	if e.storedToken(e.ueHash).RevokedAt.IsZero() {
		t.Error("the token of the ended session is still valid")
	}
	if !e.storedToken(e.addeHash).RevokedAt.IsZero() {
		t.Error("the token of alice's other session was revoked")
	}
	if got := e.enrollment(ueID).State; got != store.StateReauth {
		t.Errorf("the enrollment of the ended session is %s, want reauth", got)
	}
	if got := e.enrollment(addeIPhoneUDID).State; got != store.StateActive {
		t.Errorf("the enrollment of the other session is %s, want active", got)
	}
	m := e.lastLog("logout.backchannel")
	if m["iss"] != issuer || m["sub"] != "sub-alice" || m["sid_present"] != true || m["all_sessions"] != false ||
		m["tokens"] != int64(1) || m["families"] != int64(0) || m["enrollments"] != int64(1) {
		t.Errorf("logout.backchannel entry %v", m)
	}
	if ids, _ := m["enrollment_ids"].([]any); len(ids) != 1 || ids[0] != ueID {
		t.Errorf("enrollment_ids %v, want [%s]", m["enrollment_ids"], ueID)
	}

	// The device of the ended session is challenged on its next request;
	// the other device goes on.
	e.challengeFlow(e.mustServe(mdmRequest(e.ueBody, e.ueRaw), failNext(t)), origin)
	n := &recNext{status: http.StatusOK}
	if w := e.mustServe(mdmRequest(e.addeBody, e.addeRaw), n.serve); w.Code != http.StatusOK || len(n.calls) != 1 {
		t.Errorf("the other session's device: status %d, %d calls to the MDM", w.Code, len(n.calls))
	}

	// The same logout token again is a replay.
	before := e.v.calls
	wantLogoutError(t, e.postLogout(e.sidToken), http.StatusBadRequest, "invalid_request", e.sidToken)
	if e.v.calls != before+1 {
		t.Error("the replayed token was not verified before the replay check")
	}
	if m := e.lastLog("logout.refused"); m["reason"] != "replay" || m["status"] != int64(400) {
		t.Errorf("replay entry %v", m)
	}
	e.noSecretsLogged(e.sidToken, e.ueRaw, e.addeRaw)
}

func TestBackchannelLogoutAllSessionsOptIn(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		e := newLogoutEnv(t, false)
		wantLogoutError(t, e.postLogout(e.subOnly), http.StatusBadRequest, "invalid_request")
		if m := e.lastLog("logout.refused"); m["reason"] != "all_sessions_disabled" || m["sub"] != "sub-alice" || m["sid_present"] != false {
			t.Errorf("refusal entry %v", m)
		}
		if !e.storedToken(e.ueHash).RevokedAt.IsZero() || !e.storedToken(e.addeHash).RevokedAt.IsZero() {
			t.Error("a refused sub-only logout revoked tokens")
		}
		// A refusal records nothing, not even the jti.
		if _, err := e.store.TakeLoginState(e.ctx, e.v.tokens[e.subOnly].ReplayKey()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused logout recorded its jti: %v", err)
		}
	})
	t.Run("on", func(t *testing.T) {
		e := newLogoutEnv(t, true)
		if w := e.postLogout(e.subOnly); w.Code != http.StatusOK {
			t.Fatalf("sub-only logout with all_sessions: status %d body %q", w.Code, w.Body)
		}
		for _, id := range []string{ueID, addeIPhoneUDID} {
			if got := e.enrollment(id).State; got != store.StateReauth {
				t.Errorf("%s is %s, want reauth", id, got)
			}
		}
		if m := e.lastLog("logout.backchannel"); m["all_sessions"] != true || m["tokens"] != int64(2) || m["enrollments"] != int64(2) {
			t.Errorf("logout.backchannel entry %v", m)
		}
		// With a sid, all_sessions changes nothing: only that session ends.
		e2 := newLogoutEnv(t, true)
		if w := e2.postLogout(e2.sidToken); w.Code != http.StatusOK {
			t.Fatalf("sid logout: %d", w.Code)
		}
		if got := e2.enrollment(addeIPhoneUDID).State; got != store.StateActive {
			t.Errorf("a sid logout with all_sessions on moved the other session's enrollment to %s", got)
		}
	})
}

func TestBackchannelLogoutRefusals(t *testing.T) {
	form := func(v url.Values) string { return v.Encode() }
	const ct = "application/x-www-form-urlencoded"
	tests := []struct {
		name   string
		req    func(e *logoutEnv) *http.Request
		verr   error
		status int
		code   string
		reason string
	}{
		{"GET", func(e *logoutEnv) *http.Request {
			return httptest.NewRequest(http.MethodGet, origin+logoutPath+"?logout_token="+url.QueryEscape(e.sidToken), nil)
		}, nil, http.StatusMethodNotAllowed, "invalid_request", ""},
		{"PUT", func(e *logoutEnv) *http.Request {
			r := logoutRequest(form(url.Values{"logout_token": {e.sidToken}}), ct)
			r.Method = http.MethodPut
			return r
		}, nil, http.StatusMethodNotAllowed, "invalid_request", ""},
		{"JSON body", func(e *logoutEnv) *http.Request {
			return logoutRequest(`{"logout_token":"`+e.sidToken+`"}`, "application/json")
		}, nil, http.StatusBadRequest, "invalid_request", "content_type"},
		{"no content type", func(e *logoutEnv) *http.Request {
			return logoutRequest(form(url.Values{"logout_token": {e.sidToken}}), "")
		}, nil, http.StatusBadRequest, "invalid_request", "content_type"},
		{"content type with charset", func(e *logoutEnv) *http.Request {
			return logoutRequest(form(url.Values{"logout_token": {"unknown.token.x"}}), ct+"; charset=UTF-8")
		}, nil, http.StatusBadRequest, "invalid_request", string(signin.LogoutSignature)},
		{"no logout_token", func(e *logoutEnv) *http.Request {
			return logoutRequest(form(url.Values{"token": {e.sidToken}}), ct)
		}, nil, http.StatusBadRequest, "invalid_request", "no_logout_token"},
		{"empty logout_token", func(e *logoutEnv) *http.Request {
			return logoutRequest("logout_token=", ct)
		}, nil, http.StatusBadRequest, "invalid_request", "no_logout_token"},
		{"logout_token in the query only", func(e *logoutEnv) *http.Request {
			r := httptest.NewRequest(http.MethodPost, origin+logoutPath+"?logout_token="+url.QueryEscape(e.sidToken), strings.NewReader(""))
			r.Header.Set("Content-Type", ct)
			return r
		}, nil, http.StatusBadRequest, "invalid_request", "no_logout_token"},
		{"repeated logout_token", func(e *logoutEnv) *http.Request {
			return logoutRequest(form(url.Values{"logout_token": {e.sidToken, e.subOnly}}), ct)
		}, nil, http.StatusBadRequest, "invalid_request", "repeated_logout_token"},
		{"malformed form", func(e *logoutEnv) *http.Request {
			return logoutRequest("logout_token=%zz", ct)
		}, nil, http.StatusBadRequest, "invalid_request", "malformed_body"},
		{"body too large (declared)", func(e *logoutEnv) *http.Request {
			return logoutRequest("logout_token="+strings.Repeat("a", 2*signin.MaxLogoutTokenSize), ct)
		}, nil, http.StatusBadRequest, "invalid_request", "body_too_large"},
		{"body too large (streamed)", func(e *logoutEnv) *http.Request {
			r := logoutRequest("logout_token="+strings.Repeat("a", 2*signin.MaxLogoutTokenSize), ct)
			r.ContentLength = -1
			return r
		}, nil, http.StatusBadRequest, "invalid_request", "body_too_large"},
		{"bad signature", func(e *logoutEnv) *http.Request {
			return logoutRequest(form(url.Values{"logout_token": {"forged.logout.token"}}), ct)
		}, nil, http.StatusBadRequest, "invalid_request", string(signin.LogoutSignature)},
		{"nonce present", func(e *logoutEnv) *http.Request {
			return logoutRequest(form(url.Values{"logout_token": {e.sidToken}}), ct)
		}, &signin.LogoutError{Reason: signin.LogoutNonce}, http.StatusBadRequest, "invalid_request", string(signin.LogoutNonce)},
		{"provider unreachable", func(e *logoutEnv) *http.Request {
			return logoutRequest(form(url.Values{"logout_token": {e.sidToken}}), ct)
		}, signin.ErrUnavailable, http.StatusBadRequest, "temporarily_unavailable", "idp_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLogoutEnv(t, false)
			e.v.err = tt.verr
			w := e.mustServe(tt.req(e), failNext(t))
			wantLogoutError(t, w, tt.status, tt.code, e.sidToken, "not signed")
			if tt.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow %q, want POST", w.Header().Get("Allow"))
			}
			if tt.reason != "" {
				if m := e.lastLog("logout.refused"); m["reason"] != tt.reason {
					t.Errorf("refusal reason %v, want %s", m["reason"], tt.reason)
				}
			}
			if !e.storedToken(e.ueHash).RevokedAt.IsZero() || e.enrollment(ueID).State != store.StateActive {
				t.Error("a refused logout ended the session")
			}
			e.noSecretsLogged(e.sidToken, e.subOnly)
		})
	}
}

func TestBackchannelLogoutNotServedUnlessConfigured(t *testing.T) {
	for name, edit := range map[string]func(*gateway.Config){
		"not configured":   func(*gateway.Config) {},
		"without verifier": func(c *gateway.Config) { c.BackchannelLogout = &gateway.BackchannelLogout{AllSessions: true} },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, edit)
			w := e.mustServe(logoutRequest("logout_token=x.y.z", "application/x-www-form-urlencoded"), failNext(t))
			if w.Code != http.StatusNotFound {
				t.Errorf("status %d, want 404", w.Code)
			}
		})
	}
}

// failingStore fails the user listings while fail is set.
type failingStore struct {
	store.Store
	mu   sync.Mutex
	fail bool
}

var errStoreDown = errors.New("store down")

func (s *failingStore) TokensForUser(ctx context.Context, iss, sub string) ([]*store.Token, error) {
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail {
		return nil, errStoreDown
	}
	return s.Store.TokensForUser(ctx, iss, sub)
}

// TestBackchannelLogoutRetryAfterFailure: when ending the session fails,
// the provider's retry of the same token is honoured (its jti is not
// used up), and the failure is not a success.
func TestBackchannelLogoutRetryAfterFailure(t *testing.T) {
	e := newLogoutEnv(t, false)
	fs := &failingStore{Store: e.store, fail: true}
	e.tokens.Store = fs
	wantLogoutError(t, e.postLogout(e.sidToken), http.StatusBadRequest, "temporarily_unavailable", "store down")
	if m := e.lastLog("logout.refused"); m["reason"] != "store_unavailable" {
		t.Errorf("failure entry %v", m)
	}
	if e.enrollment(ueID).State != store.StateActive {
		t.Fatal("the failed logout changed the enrollment")
	}
	fs.mu.Lock()
	fs.fail = false
	fs.mu.Unlock()
	if w := e.postLogout(e.sidToken); w.Code != http.StatusOK {
		t.Fatalf("retry: status %d body %q, want 200", w.Code, w.Body)
	}
	if e.enrollment(ueID).State != store.StateReauth {
		t.Error("the retried logout did not end the session")
	}
	// And now it is used up.
	wantLogoutError(t, e.postLogout(e.sidToken), http.StatusBadRequest, "invalid_request")
}
