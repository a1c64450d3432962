package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/esso"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// endpointsEnv is a gateway serving every endpoint it has: the web sign-in
// against a working provider (newIdP), apple-oauth2, back-channel logout,
// Enrollment SSO, the protected path and an MDM path of the other
// enrollments (/mdm); and the admin API on the same store. Alice holds
// bound, a token bound to ueID, in IdP session sid-alice.
type endpointsEnv struct {
	*env
	idp   *idp
	admin http.Handler
	bound string
	// logoutToken is the raw logout token the verifier accepts: it ends
	// session sid-alice.
	logoutToken string
}

// acceptingVerifier accepts the logout tokens it holds.
type acceptingVerifier map[string]*signin.LogoutToken

func (v acceptingVerifier) VerifyLogoutToken(_ context.Context, raw string) (*signin.LogoutToken, error) {
	if lt, ok := v[raw]; ok {
		cp := *lt
		return &cp, nil
	}
	return nil, &signin.LogoutError{Reason: signin.LogoutSignature, Detail: "not signed by the provider"}
}

func newEndpointsEnv(tb testing.TB) *endpointsEnv {
	tb.Helper()
	clock, s, tokens := testStore(tb, tb.TempDir())
	p := newIdP(tb, clock.Now)
	signer := signin.Signer{Key: signKey, MaxAge: 30 * 24 * time.Hour}
	rp, err := signin.NewRP(signin.OIDCConfig{Issuer: p.srv.URL, ClientID: "mdmauth", Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	oauth := &token.OAuth{M: tokens, Key: rotationKey}
	web := &signin.Web{RP: rp, Tokens: tokens, Store: s, Signer: signer, Now: clock.Now, Log: log,
		OAuth2: &signin.OAuth2{ClientID: oauth2Challenge.ClientID, RedirectURL: oauth2Challenge.RedirectURL, Tokens: oauth}}
	const logoutToken = "eyJsid.logout.token"
	now := clock.Now()
	verifier := acceptingVerifier{logoutToken: {Issuer: issuer, Subject: "sub-alice", SessionID: "sid-alice", JTI: "jti-1",
		IssuedAt: now, Expiry: now.Add(2 * time.Minute), ReplayUntil: now.Add(3 * time.Minute)}}
	o := oauth2Challenge
	gw, err := gateway.New(gateway.Config{
		Domains:             []string{"example.com"},
		FamilyModes:         map[string]apple.Mode{"Mac": apple.ModeADDE},
		Template:            loadTemplate(tb),
		Protect:             []string{protect},
		RefuseAccountDriven: []string{"/mdm"},
		OAuth2:              &o,
		BackchannelLogout:   &gateway.BackchannelLogout{Verifier: verifier},
		ESSO:                &gateway.ESSO{Header: esso.Header, Document: essoDocument(tb, false)},
	}, gateway.Deps{Web: web, Tokens: tokens, Store: s, Signer: signer, Log: log, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{tb: tb, ctx: context.Background(), clock: clock, store: s, tokens: tokens, signer: signer, gw: gw, logs: logs, oauth: oauth}
	fe := &endpointsEnv{env: e, idp: p, logoutToken: logoutToken}
	fe.admin = &admin.Handler{
		Source: func(context.Context) (*admin.Deployment, func(), error) {
			return &admin.Deployment{Store: s, Sites: []admin.Site{{Names: []string{host}, Profiles: gw}}}, func() {}, nil
		},
		Now: clock.Now,
	}
	fe.bound, _ = e.issue(grant("byod"))
	e.bind(fe.bound, fixture(tb, "checkin/ue-tokenupdate.plist"))
	return fe
}

// snapshot is what the store holds that a request can change: every
// enrollment, token (revoked and expired ones included) and OAuth 2 family,
// in full, and the number of pending sign-ins (and remembered logout
// tokens).
func (e *endpointsEnv) snapshot() string {
	e.tb.Helper()
	var b strings.Builder
	add := func(v any) bool {
		j, err := json.Marshal(v)
		if err != nil {
			e.tb.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
		return true
	}
	err := errors.Join(
		e.store.ScanEnrollments(e.ctx, "", func(en *store.Enrollment) bool { return add(en) }),
		e.store.ScanTokens(e.ctx, nil, func(t *store.Token) bool { return add(t) }),
		e.store.ScanFamilies(e.ctx, "", func(f *store.Family) bool { return add(f) }),
	)
	n, cerr := e.store.CountLoginStates(e.ctx)
	if err = errors.Join(err, cerr); err != nil {
		e.tb.Fatal(err)
	}
	fmt.Fprintf(&b, "pending sign-ins: %d\n", n)
	return b.String()
}

// serveAny serves r by the admin API for paths under /mdm_auth/, else by
// the gateway (next must not run).
func (e *endpointsEnv) serveAny(tb testing.TB, r *http.Request) *httptest.ResponseRecorder {
	tb.Helper()
	if strings.HasPrefix(r.URL.Path, admin.DefaultPrefix) {
		w := httptest.NewRecorder()
		e.admin.ServeHTTP(w, r)
		return w
	}
	return e.mustServe(r, failNext(tb))
}

// flowValue is a signed enrollment flow, as a challenge hands it out.
func (e *endpointsEnv) flowValue() string {
	e.tb.Helper()
	v, err := e.signer.Encode(signin.Flow{Kind: signin.KindEnroll, Mode: string(apple.ModeBYOD), ModelFamily: "iPhone", IssuedAt: e.clock.Now()})
	if err != nil {
		e.tb.Fatal(err)
	}
	return v
}

// webStartURL is a web sign-in URL with the identifier the device appends.
func (e *endpointsEnv) webStartURL() string {
	return origin + signInPath + e.flowValue() + "?user-identifier=" + url.QueryEscape("alice@example.com")
}

// authorizeURL is the device's apple-oauth2 authorization request.
func (e *endpointsEnv) authorizeURL() string {
	return origin + authzPath + "?flow=" + e.flowValue() + "&response_type=code&client_id=" + oauth2Challenge.ClientID +
		"&redirect_uri=" + signin.DefaultRedirectURL + "&scope=mdm&state=6A2F1C64-0B3D-4E53-9C1A-8E7F2D4B5A60&login_hint=alice@example.com"
}

// callbackFor takes the 302 of a sign-in start to the provider and returns
// the provider's redirect back (the state, code c1 and the browser's
// cookie), query appended; the provider will put the start's nonce in the
// ID token.
func (e *endpointsEnv) callbackFor(start *httptest.ResponseRecorder, query string) *http.Request {
	e.tb.Helper()
	if start.Code != http.StatusFound {
		e.tb.Fatalf("sign-in start: status %d, want 302; body %q", start.Code, start.Body)
	}
	loc, err := url.Parse(start.Header().Get("Location"))
	if err != nil {
		e.tb.Fatal(err)
	}
	q := loc.Query()
	e.idp.mu.Lock()
	e.idp.nonce = q.Get("nonce")
	e.idp.mu.Unlock()
	r := httptest.NewRequest(http.MethodGet, origin+"/mdmauth/oidc/callback?state="+url.QueryEscape(q.Get("state"))+"&code=c1"+query, nil)
	for _, c := range start.Result().Cookies() {
		r.AddCookie(c)
	}
	return r
}

// newCode issues an apple-oauth2 authorization code for alice.
func (e *endpointsEnv) newCode() string {
	e.tb.Helper()
	code, err := e.oauth.NewCode(e.ctx, token.CodeGrant{Grant: grant("byod"), ClientID: oauth2Challenge.ClientID,
		RedirectURI: signin.DefaultRedirectURL, SignedInAt: e.clock.Now()})
	if err != nil {
		e.tb.Fatal(err)
	}
	return code
}

// lazyBody is a body of n bytes made as it is read: head, pad repeated, then
// tail. Read whole it is a well-formed request of its endpoint, so an
// endpoint that read past its bound would act on it. off counts the bytes
// handed out.
type lazyBody struct {
	head, tail string
	pad        byte
	n, off     int64
}

func (p *lazyBody) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	tailAt := p.n - int64(len(p.tail))
	k := 0
	for ; k < len(b) && p.off < p.n; k++ {
		switch {
		case p.off < int64(len(p.head)):
			b[k] = p.head[p.off]
		case p.off >= tailAt:
			b[k] = p.tail[p.off-tailAt]
		default:
			b[k] = p.pad
		}
		p.off++
	}
	return k, nil
}

// Over-limit bodies are this many times their endpoint's bound.
const overLimitFactor = 4

// TestBodyAndHeaderLimits sends every endpoint of the gateway and the admin
// API a body of four times its bound, with its length declared and
// streamed without one, each body a request the endpoint would act on if
// it read it all. An endpoint that reads a body refuses it with 413 (400 on
// back-channel logout, whose error status the specification fixes) after
// reading at most one byte past its bound, and the store is unchanged; an
// endpoint that takes no body never reads a byte of it.
//
// Header sizes: the request line and header fields as a whole are bounded
// by the server in front (Caddy's max_header_size, set in
// Caddyfile.example; Go's server answers 431 before any handler runs), so
// the gateway does not answer 431 itself: a header it refused would
// already sit in memory. What it bounds is what it parses: the sign-in
// queries (414 past 8 KiB, before any state is taken or stored), the
// discovery query (2 KiB, answered 403 com.apple.well-known.failed, the
// refusal a device shows), and the Authorization header (4 KiB; longer is
// no bearer, answered with the challenge a device knows, and never looked
// up). The last rows check those bounds, with requests the gateway would
// otherwise act on.
func TestBodyAndHeaderLimits(t *testing.T) {
	e := newEndpointsEnv(t)
	plist := fixture(t, "checkin/adde-iphone-tokenupdate.plist")
	dict := bytes.Index(plist, []byte("<dict>")) + len("<dict>")
	// plistBody is a TokenUpdate with a padding string: read whole, it
	// binds its bearer to addeIPhoneUDID.
	plistBody := func(n int64) *lazyBody {
		return &lazyBody{head: string(plist[:dict]) + "<key>Pad</key><string>", pad: 'x', tail: "</string>" + string(plist[dict:]), n: n}
	}
	formBody := func(form string, n int64) *lazyBody { return &lazyBody{head: form + "&pad=", pad: 'p', n: n} }
	jsonBody := func(doc string, n int64) *lazyBody { return &lazyBody{head: doc, pad: ' ', n: n} }
	unbound, _ := e.issue(grant("adde"))
	unboundUE, _ := e.issue(grant("byod"))
	tokenID := e.storedToken(hashOf(e.bound)).ID()

	type bodyCase struct {
		name   string
		method string
		target string
		header http.Header
		// limit is the endpoint's body bound; 0 for an endpoint that takes
		// no body.
		limit int64
		body  func(n int64) *lazyBody
		// status is the answer to an over-limit body.
		status int
		// stores is set for the endpoints that take no body and store
		// something when served (a pending sign-in).
		stores bool
	}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	jsonType := http.Header{"Content-Type": {"application/json"}}
	bodyCases := []bodyCase{
		{"enrollment POST with a valid bearer", http.MethodPost, origin + "/mdmauth/enroll/byod?model-family=iPhone",
			http.Header{"Authorization": {"Bearer " + unboundUE}, "Content-Type": {"application/pkcs7-signature"}},
			gateway.DefaultMaxEnrollBody, func(n int64) *lazyBody { return &lazyBody{pad: '0', n: n} }, http.StatusRequestEntityTooLarge, false},
		{"protected MDM request with an unbound token", http.MethodPut, origin + protect,
			http.Header{"Authorization": {"Bearer " + unbound}, "Content-Type": {"application/x-apple-aspen-mdm-checkin"}},
			gateway.DefaultMaxMDMBody, plistBody, http.StatusRequestEntityTooLarge, false},
		{"MDM path of the other enrollments", http.MethodPut, origin + "/mdm",
			http.Header{"Content-Type": {"application/x-apple-aspen-mdm-checkin"}},
			gateway.DefaultMaxMDMBody, plistBody, http.StatusRequestEntityTooLarge, false},
		{"OAuth 2 token endpoint with a valid code", http.MethodPost, origin + tokenPath, form, 16 << 10,
			func(n int64) *lazyBody {
				return formBody("grant_type=authorization_code&code="+e.newCode()+"&redirect_uri="+signin.DefaultRedirectURL+"&client_id=mdmauth", n)
			}, http.StatusRequestEntityTooLarge, false},
		{"back-channel logout with a valid logout token", http.MethodPost, origin + logoutPath, form, 2 * signin.MaxLogoutTokenSize,
			func(n int64) *lazyBody { return formBody("logout_token="+e.logoutToken, n) }, http.StatusBadRequest, false},
		{"admin: block an enrollment", http.MethodPost, "http://localhost:2019/mdm_auth/enrollments/" + ueID + "/block", jsonType,
			admin.MaxBody, func(n int64) *lazyBody { return jsonBody(`{}`, n) }, http.StatusRequestEntityTooLarge, false},
		{"admin: offboard a user", http.MethodPost, "http://localhost:2019/mdm_auth/users/offboard", jsonType,
			admin.MaxBody, func(n int64) *lazyBody { return jsonBody(`{"iss":"`+issuer+`","sub":"sub-alice","within":"72h"}`, n) },
			http.StatusRequestEntityTooLarge, false},
		{"admin: revoke a token", http.MethodPost, "http://localhost:2019/mdm_auth/tokens/" + tokenID + "/revoke", jsonType,
			admin.MaxBody, func(n int64) *lazyBody { return jsonBody(`{}`, n) }, http.StatusRequestEntityTooLarge, false},
		{"admin: render a profile", http.MethodPost, "http://localhost:2019/mdm_auth/enrollments/" + ueID + "/profile", jsonType,
			admin.MaxBody, func(n int64) *lazyBody { return jsonBody(`{}`, n) }, http.StatusRequestEntityTooLarge, false},

		{"discovery", http.MethodGet, origin + apple.WellKnownPath + "?user-identifier=alice@example.com&model-family=iPhone", nil,
			0, nil, http.StatusOK, false},
		{"web sign-in start", http.MethodGet, e.webStartURL(), nil, 0, nil, http.StatusFound, true},
		{"OAuth 2 authorization", http.MethodGet, e.authorizeURL(), nil, 0, nil, http.StatusFound, true},
		{"OIDC callback", http.MethodGet, origin + "/mdmauth/oidc/callback?state=unknown&code=c1", nil, 0, nil, http.StatusBadRequest, false},
		{"Enrollment SSO document", http.MethodGet, origin + essoPath, nil, 0, nil, http.StatusOK, false},
	}
	for _, c := range bodyCases {
		for _, streamed := range []bool{false, true} {
			name := c.name + ", length declared"
			if streamed {
				name = c.name + ", streamed"
			}
			t.Run(name, func(t *testing.T) {
				size := overLimitFactor * c.limit
				if c.limit == 0 {
					size = overLimitFactor * gateway.DefaultMaxMDMBody
				}
				var b *lazyBody
				if c.body != nil {
					b = c.body(size)
				} else {
					b = &lazyBody{pad: 'x', n: size}
				}
				r := httptest.NewRequest(c.method, c.target, nil)
				for k, v := range c.header {
					r.Header[k] = v
				}
				r.Body = io.NopCloser(b)
				r.ContentLength = size
				if streamed {
					r.ContentLength = -1
					r.TransferEncoding = []string{"chunked"}
				}
				before := e.snapshot()
				w := e.serveAny(t, r)
				if w.Code != c.status {
					t.Fatalf("status %d, want %d; body %.200q", w.Code, c.status, w.Body)
				}
				switch {
				case c.limit == 0 && b.off != 0:
					t.Errorf("an endpoint that takes no body read %d bytes of one", b.off)
				case b.off > c.limit+1:
					t.Errorf("%d bytes read, bound %d", b.off, c.limit)
				}
				if !c.stores && before != e.snapshot() {
					t.Error("the store changed")
				}
			})
		}
	}

	pad := "&pad=" + strings.Repeat("p", 8192)
	headerCases := []struct {
		name   string
		req    func(t *testing.T) *http.Request
		status int
		// check looks at the answer and the log entries of the request.
		check func(t *testing.T, w *httptest.ResponseRecorder, logs []observer.LoggedEntry)
	}{
		{"web sign-in start, query past 8 KiB", func(t *testing.T) *http.Request {
			return httptest.NewRequest(http.MethodGet, e.webStartURL()+pad, nil)
		}, http.StatusRequestURITooLong, nil},
		{"OAuth 2 authorization, query past 8 KiB", func(t *testing.T) *http.Request {
			return httptest.NewRequest(http.MethodGet, e.authorizeURL()+pad, nil)
		}, http.StatusRequestURITooLong, nil},
		{"OIDC callback of a pending sign-in, query past 8 KiB", func(t *testing.T) *http.Request {
			return e.callbackFor(e.mustServe(httptest.NewRequest(http.MethodGet, e.webStartURL(), nil), failNext(t)), pad)
		}, http.StatusRequestURITooLong, nil},
		{"discovery, query past 2 KiB", func(t *testing.T) *http.Request {
			return discoveryRequest(http.MethodGet, "user-identifier=alice@example.com&model-family=iPhone"+pad[:2048])
		}, http.StatusForbidden, func(t *testing.T, w *httptest.ResponseRecorder, _ []observer.LoggedEntry) {
			if !strings.Contains(w.Body.String(), "com.apple.well-known.failed") {
				t.Errorf("body %q, want com.apple.well-known.failed", w.Body)
			}
		}},
		{"enrollment POST, Authorization past 4 KiB", func(t *testing.T) *http.Request {
			return enrollRequest("byod", "model-family=iPhone", nil, strings.Repeat("A", 4096))
		}, http.StatusUnauthorized, func(t *testing.T, w *httptest.ResponseRecorder, logs []observer.LoggedEntry) {
			// Taken for no bearer: challenged, never looked up.
			if ev := auditEvents(logs); len(ev) != 1 || ev[0] != audit.EnrollmentChallenged {
				t.Errorf("audit events %q, want one %s (the bearer never looked up)", ev, audit.EnrollmentChallenged)
			}
		}},
		{"protected MDM request, Authorization past 4 KiB", func(t *testing.T) *http.Request {
			return mdmRequest(plist, strings.Repeat("A", 4096))
		}, http.StatusUnauthorized, func(t *testing.T, w *httptest.ResponseRecorder, logs []observer.LoggedEntry) {
			// Taken for no bearer, never looked up.
			if len(logs) != 1 || logs[0].ContextMap()["event"] != audit.MDMChallenged || logs[0].ContextMap()["reason"] != string(token.ReasonNoBearer) {
				t.Errorf("audit entries %v, want one %s for %s", logs, audit.MDMChallenged, token.ReasonNoBearer)
			}
		}},
	}
	for _, c := range headerCases {
		t.Run(c.name, func(t *testing.T) {
			r := c.req(t)
			before, mark := e.snapshot(), e.logs.Len()
			w := e.serveAny(t, r)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d; body %.200q", w.Code, c.status, w.Body)
			}
			if c.check != nil {
				c.check(t, w, e.logs.All()[mark:])
			}
			if before != e.snapshot() {
				t.Error("the store changed")
			}
		})
	}

	// The rows above would act if their bounds were missing: the same
	// requests within the bounds do.
	t.Run("controls", func(t *testing.T) {
		before := e.snapshot()
		if before != e.snapshot() {
			t.Fatal("two snapshots of an unchanged store differ")
		}
		w := e.mustServe(e.callbackFor(e.mustServe(httptest.NewRequest(http.MethodGet, e.webStartURL(), nil), failNext(t)), "&pad=p"), failNext(t))
		if w.Code != http.StatusPermanentRedirect {
			t.Fatalf("callback within the bound: status %d, want 308; body %q", w.Code, w.Body)
		}
		if before == e.snapshot() {
			t.Fatal("a completed sign-in left the store unchanged: snapshots cannot show a change")
		}
		n := &recNext{status: http.StatusOK}
		body := plistBody(4096)
		r := mdmRequest(nil, unbound)
		r.Body, r.ContentLength = io.NopCloser(body), body.n
		if w := e.mustServe(r, n.serve); w.Code != http.StatusOK || len(n.calls) != 1 {
			t.Fatalf("padded MDM request within the bound: status %d, %d calls", w.Code, len(n.calls))
		}
		if tok := e.storedToken(hashOf(unbound)); tok.EnrollmentID != addeIPhoneUDID {
			t.Errorf("padded MDM request within the bound bound the token to %q, want %q", tok.EnrollmentID, addeIPhoneUDID)
		}
		lb := formBody("logout_token="+e.logoutToken, 64)
		r = httptest.NewRequest(http.MethodPost, origin+logoutPath, io.NopCloser(lb))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.ContentLength = lb.n
		if w := e.mustServe(r, failNext(t)); w.Code != http.StatusOK {
			t.Fatalf("padded logout within the bound: status %d; body %q", w.Code, w.Body)
		}
		if e.enrollment(ueID).State != store.StateReauth {
			t.Errorf("padded logout within the bound left enrollment %s %s", ueID, e.enrollment(ueID).State)
		}
	})
}

// auditEvents lists the audit events of entries.
func auditEvents(entries []observer.LoggedEntry) []string {
	var ev []string
	for _, en := range entries {
		if v, ok := en.ContextMap()["event"].(string); ok {
			ev = append(ev, v)
		}
	}
	return ev
}
