package gateway_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
)

// notPlist is a body the guard refuses with 400: whether a request got
// that answer tells whether it was guarded.
var notPlist = []byte("LANGUAGE=en-US&PRODUCT=iPhone17%2C2")

func TestProtectMatchesBySegment(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		path    string
		guarded bool
	}{
		{"/mdm/ad", true},
		{"/mdm/ad/", true},
		{"/mdm/ad/x", true},
		{"/mdm/ad/x/y", true},
		{"/mdm/adx", false},
		{"/mdm/a", false},
		{"/mdm", false},
		{"/mdm/", false},
		{"/", false},
		{"/other/mdm/ad", false},
		{"/mdmauthx", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			n := &recNext{status: http.StatusOK}
			r := httptest.NewRequest(http.MethodPut, origin+tt.path+"?q=1", bytes.NewReader(notPlist))
			r.Header.Set("Authorization", "Bearer abc")
			w := e.mustServe(r, n.serve)
			if tt.guarded {
				if w.Code != http.StatusBadRequest || len(n.calls) != 0 {
					t.Fatalf("status %d, %d calls to next: want 400 and next not called", w.Code, len(n.calls))
				}
				return
			}
			if len(n.calls) != 1 {
				t.Fatalf("status %d, %d calls to next: want the request passed on", w.Code, len(n.calls))
			}
			c := n.calls[0]
			if c.Path != tt.path || !bytes.Equal(c.Body, notPlist) || c.Header.Get("Authorization") != "Bearer abc" {
				t.Errorf("next received %s %q Authorization %q, want the request untouched", c.Path, c.Body, c.Header.Get("Authorization"))
			}
		})
	}
}

func TestProtectTrailingSlashConfigured(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.Protect = []string{"/mdm/ad/", "/other"} })
	for _, p := range []string{"/mdm/ad", "/mdm/ad/x", "/other/y"} {
		w := e.mustServe(httptest.NewRequest(http.MethodPut, origin+p, bytes.NewReader(notPlist)), failNext(t))
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400 (guarded)", p, w.Code)
		}
	}
}

func TestProtectOriginalPath(t *testing.T) {
	tests := []struct {
		name, path, original string
		guarded              bool
	}{
		{"rewritten away from the protected path", "/mdm", "/mdm/ad", true},
		{"rewritten away from below the protected path", "/nanomdm/checkin", "/mdm/ad/checkin", true},
		{"rewritten onto the protected path", "/mdm/ad", "/legacy", true},
		{"no rewrite", "/mdm", "/mdm", false},
		{"hook without an answer", "/mdm", "", false},
		{"rewrite between unprotected paths", "/mdm", "/mdm/adx", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.gw.OriginalPath = func(*http.Request) string { return tt.original }
			n := &recNext{status: http.StatusOK}
			w := e.mustServe(httptest.NewRequest(http.MethodPut, origin+tt.path, bytes.NewReader(notPlist)), n.serve)
			if guarded := w.Code == http.StatusBadRequest && len(n.calls) == 0; guarded != tt.guarded {
				t.Fatalf("status %d, %d calls to next: guarded %v, want %v", w.Code, len(n.calls), guarded, tt.guarded)
			}
		})
	}
}

// TestProtectNormalizedPathVariants sends the protected path in the forms
// Caddy's path matcher treats as equal to it (it lower-cases, merges
// slashes and resolves dot segments), so that `rewrite path /mdm/ad /mdm`
// fires. None of them may reach the MDM without the bearer check.
func TestProtectNormalizedPathVariants(t *testing.T) {
	body := fixture(t, "checkin/ue-tokenupdate.plist")
	variants := []string{"/MDM/AD", "/mdm/Ad", "/mdm//ad", "//mdm/ad", "/mdm/./ad", "/mdm/x/../ad", "/mdm/ad/."}
	// Through the gateway's own prefix: sent as is, the gateway answers it
	// itself (404); rewritten, only the original path shows it.
	rewrittenOnly := []string{"/mdmauth/../mdm/ad"}
	for _, v := range append(variants, rewrittenOnly...) {
		t.Run("rewritten "+v, func(t *testing.T) {
			e := newEnv(t)
			e.gw.OriginalPath = func(*http.Request) string { return v }
			// The rewrite has already run: the MDM's own path remains.
			w := e.mustServe(httptest.NewRequest(http.MethodPut, origin+"/mdm", bytes.NewReader(body)), failNext(t))
			if w.Code != http.StatusUnauthorized {
				t.Errorf("original path %q: status %d, want 401 challenge", v, w.Code)
			}
		})
	}
	for _, v := range variants {
		t.Run("sent "+v, func(t *testing.T) {
			e := newEnv(t)
			r := httptest.NewRequest(http.MethodPut, origin+"/", bytes.NewReader(body))
			r.URL.Path = v
			w := e.mustServe(r, failNext(t))
			if w.Code != http.StatusUnauthorized {
				t.Errorf("path %q: status %d, want 401 challenge", v, w.Code)
			}
		})
	}
}

func TestOwnEndpointsNeverProtected(t *testing.T) {
	e := newEnv(t)
	// Every request claims to have been rewritten from the protected path.
	e.gw.OriginalPath = func(*http.Request) string { return protect }
	w := e.mustServe(discoveryRequest(http.MethodGet, "user-identifier=alice@example.com"), failNext(t))
	if w.Code != http.StatusOK {
		t.Errorf("discovery: status %d, want 200", w.Code)
	}
	w = e.mustServe(enrollRequest("byod", "", fixture(t, "checkin/ue-tokenupdate.plist"), ""), failNext(t))
	if got := e.challengeFlow(w, origin); got.Kind != signin.KindEnroll {
		t.Errorf("enrollment POST challenged as %q, want %q", got.Kind, signin.KindEnroll)
	}
	w = e.mustServe(httptest.NewRequest(http.MethodPut, origin+"/mdmauth/ad", bytes.NewReader(notPlist)), failNext(t))
	if w.Code != http.StatusNotFound {
		t.Errorf("unknown own endpoint: status %d, want 404", w.Code)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*gateway.Config)
		ok   bool
	}{
		{"protect the prefix", func(c *gateway.Config) { c.Protect = []string{"/mdmauth"} }, false},
		{"protect below the prefix", func(c *gateway.Config) { c.Protect = []string{"/mdmauth/enroll"} }, false},
		{"protect the prefix with a slash", func(c *gateway.Config) { c.Protect = []string{"/mdmauth/"} }, false},
		{"protect above a custom prefix", func(c *gateway.Config) { c.Prefix = "/a/b"; c.Protect = []string{"/a"} }, false},
		{"protect the well-known path", func(c *gateway.Config) { c.Protect = []string{apple.WellKnownPath} }, false},
		{"protect above the well-known path", func(c *gateway.Config) { c.Protect = []string{"/.well-known"} }, false},
		{"protect the root", func(c *gateway.Config) { c.Protect = []string{"/"} }, false},
		{"protect a relative path", func(c *gateway.Config) { c.Protect = []string{"mdm/ad"} }, false},
		{"protect empty", func(c *gateway.Config) { c.Protect = []string{""} }, false},
		{"one bad among good", func(c *gateway.Config) { c.Protect = []string{"/mdm/ad", "/mdmauth/x"} }, false},
		{"no domain", func(c *gateway.Config) { c.Domains = nil }, false},
		{"no template", func(c *gateway.Config) { c.Template = nil }, false},
		{"relative prefix", func(c *gateway.Config) { c.Prefix = "mdmauth" }, false},
		{"prefix with trailing slash", func(c *gateway.Config) { c.Prefix = "/mdmauth/" }, false},
		{"protect a sibling of the prefix", func(c *gateway.Config) { c.Protect = []string{"/mdmauthx"} }, true},
		{"protect a sibling of well-known", func(c *gateway.Config) { c.Protect = []string{"/.well-known-x"} }, true},
		{"nothing protected", func(c *gateway.Config) { c.Protect = nil }, true},
		{"the test configuration", func(*gateway.Config) {}, true},
	}
	tpl := loadTemplate(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := gateway.Config{Domains: []string{"example.com"}, Template: tpl, Protect: []string{protect}}
			tt.edit(&cfg)
			gw, err := gateway.New(cfg, gateway.Deps{})
			if tt.ok && (err != nil || gw == nil) {
				t.Fatalf("New: %v, want a gateway", err)
			}
			if !tt.ok && (err == nil || gw != nil) {
				t.Fatalf("New accepted %+v", cfg)
			}
		})
	}
}

func TestGuardChallenge(t *testing.T) {
	adde := grant("adde")
	tests := []struct {
		name  string
		setup func(e *env) (bearer string)
		body  string
		want  signin.Flow
	}{
		{
			name: "no bearer, new enrollment",
			body: "checkin/ue-authenticate.plist",
			want: signin.Flow{Kind: signin.KindReauth, Mode: "byod", EnrollmentID: ueID},
		},
		{
			name: "no bearer, command report",
			body: "checkin/ue-idle.plist",
			want: signin.Flow{Kind: signin.KindReauth, Mode: "byod", EnrollmentID: ueID},
		},
		{
			name:  "unknown token",
			setup: func(e *env) string { return strings.Repeat("A", 43) },
			body:  "checkin/ue-tokenupdate.plist",
			want:  signin.Flow{Kind: signin.KindReauth, Mode: "byod", EnrollmentID: ueID},
		},
		{
			name: "expired token of the enrollment",
			setup: func(e *env) string {
				raw, _ := e.issue(adde)
				e.bind(raw, fixture(e.tb, "checkin/adde-iphone-tokenupdate.plist"))
				e.clock.Advance(tokenTTL)
				return raw
			},
			body: "checkin/adde-iphone-tokenupdate.plist",
			want: signin.Flow{Kind: signin.KindReauth, Mode: "adde", ModelFamily: "iPhone", EnrollmentID: addeIPhoneUDID},
		},
		{
			name: "enrollment set to reauth, no bearer",
			setup: func(e *env) string {
				raw, _ := e.issue(adde)
				e.bind(raw, fixture(e.tb, "checkin/adde-iphone-tokenupdate.plist"))
				if _, err := e.tokens.SetState(e.ctx, addeIPhoneUDID, store.StateReauth, time.Time{}); err != nil {
					e.tb.Fatal(err)
				}
				return ""
			},
			body: "checkin/adde-iphone-tokenupdate.plist",
			want: signin.Flow{Kind: signin.KindReauth, Mode: "adde", EnrollmentID: addeIPhoneUDID},
		},
		{
			name: "enrollment checked out: a new enrollment of the device",
			setup: func(e *env) string {
				raw, _ := e.issue(adde)
				e.bind(raw, fixture(e.tb, "checkin/adde-iphone-tokenupdate.plist"))
				if _, err := e.tokens.SetState(e.ctx, addeIPhoneUDID, store.StateRemoved, time.Time{}); err != nil {
					e.tb.Fatal(err)
				}
				return raw
			},
			body: "checkin/adde-iphone-tokenupdate.plist",
			want: signin.Flow{Kind: signin.KindReauth, Mode: "adde", ModelFamily: "iPhone"},
		},
	}
	// Each case with each sign-in method: the challenge differs, the flow
	// it starts does not.
	methods := []struct {
		name string
		opts []func(*gateway.Config)
		flow func(e *env, w *httptest.ResponseRecorder) signin.Flow
	}{
		{"apple-as-web", nil, func(e *env, w *httptest.ResponseRecorder) signin.Flow { return e.challengeFlow(w, origin) }},
		{"apple-oauth2", []func(*gateway.Config){withOAuth2}, func(e *env, w *httptest.ResponseRecorder) signin.Flow {
			return e.oauth2Flow(w, origin+"/mdmauth")
		}},
	}
	for _, m := range methods {
		for _, tt := range tests {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t, m.opts...)
				bearer := ""
				if tt.setup != nil {
					bearer = tt.setup(e)
				}
				w := e.mustServe(mdmRequest(fixture(t, tt.body), bearer), failNext(t))
				if got := m.flow(e, w); got != tt.want {
					t.Errorf("flow %+v, want %+v", got, tt.want)
				}
			})
		}
	}
}

func TestGuardMacDeviceChannel(t *testing.T) {
	e := newEnv(t)
	n := &recNext{status: http.StatusOK}
	// A Mac's device channel never carries the bearer.
	w := e.mustServe(mdmRequest(fixture(t, "checkin/adde-mac-authenticate.plist"), ""), n.serve)
	if w.Code != http.StatusOK || len(n.calls) != 1 {
		t.Fatalf("Mac Authenticate without bearer: status %d, %d calls to next; want it passed on", w.Code, len(n.calls))
	}
	if en := e.enrollment(macUDID); en == nil || en.Platform != store.PlatformMac {
		t.Fatalf("enrollment after the Mac's Authenticate: %+v, want platform mac", en)
	}
	// The same body with the Model of an iPhone is challenged.
	iphone := bytes.ReplaceAll(fixture(t, "checkin/adde-mac-authenticate.plist"), []byte("Mac14,2"), []byte("iPhone17,2"))
	iphone = bytes.ReplaceAll(iphone, []byte(macUDID), []byte(addeIPhoneUDID))
	w = e.mustServe(mdmRequest(iphone, ""), failNext(t))
	e.challengeFlow(w, origin)
}

func TestGuardBodyLimit(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("byod"))
	big := make([]byte, gateway.DefaultMaxMDMBody+1)
	copy(big, fixture(t, "checkin/ue-tokenupdate.plist"))
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			r := mdmRequest(big, raw)
			if chunked {
				r.Body = io.NopCloser(bytes.NewReader(big))
				r.ContentLength = -1
				r.TransferEncoding = []string{"chunked"}
			}
			w := e.mustServe(r, failNext(t))
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", w.Code)
			}
		})
	}
}

// padded returns the UE TokenUpdate grown to exactly size bytes with a
// padding string value.
func padded(t *testing.T, size int) []byte {
	t.Helper()
	base := fixture(t, "checkin/ue-tokenupdate.plist")
	const pre, post = "<dict>\n\t<key>Pad</key>\n\t<string>", "</string>"
	n := size - len(base) - len(pre) - len(post) + len("<dict>")
	if n < 0 {
		t.Fatalf("size %d too small", size)
	}
	b := bytes.Replace(base, []byte("<dict>"), []byte(pre+strings.Repeat("x", n)+post), 1)
	if len(b) != size {
		t.Fatalf("padded to %d bytes, want %d", len(b), size)
	}
	return b
}

func TestGuardBodyLimitBoundary(t *testing.T) {
	const max = 4096
	e := newEnv(t, func(c *gateway.Config) { c.MaxMDMBody = max })
	raw, _ := e.issue(grant("byod"))
	n := &recNext{status: http.StatusOK}
	w := e.mustServe(mdmRequest(padded(t, max), raw), n.serve)
	if w.Code != http.StatusOK || len(n.calls) != 1 {
		t.Fatalf("body of exactly MaxMDMBody: status %d, %d calls; want it passed on", w.Code, len(n.calls))
	}
	w = e.mustServe(mdmRequest(padded(t, max+1), raw), failNext(t))
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("body of MaxMDMBody+1: status %d, want 413", w.Code)
	}
}

// TestGuardContentLengthMismatch: a body that does not match its
// Content-Length is refused before anything reaches the MDM (net/http
// enforces it on real connections; the guard does not rely on that).
func TestGuardContentLengthMismatch(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("byod"))
	body := fixture(t, "checkin/ue-tokenupdate.plist")
	for _, tc := range []struct {
		name   string
		length int64
	}{
		{"shorter than declared", int64(len(body)) + 10},
		{"longer than declared", int64(len(body)) - 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mdmRequest(body, raw)
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = tc.length
			w := e.mustServe(r, failNext(t))
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", w.Code)
			}
		})
	}
}

func TestGuardMalformedBody(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("byod"))
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"form", notPlist},
		{"json", []byte(`{"EnrollmentID":"` + ueID + `"}`)},
		{"binary plist", []byte("bplist00\xd1\x01\x02")},
		{"array root", []byte(`<?xml version="1.0"?><plist version="1.0"><array><string>x</string></array></plist>`)},
		{"truncated", fixture(t, "checkin/ue-tokenupdate.plist")[:200]},
	}
	for _, tt := range tests {
		for _, bearer := range []string{"", raw} {
			t.Run(tt.name+"/bearer="+strconv.FormatBool(bearer != ""), func(t *testing.T) {
				w := e.mustServe(mdmRequest(tt.body, bearer), failNext(t))
				if w.Code != http.StatusBadRequest {
					t.Fatalf("status %d, want 400", w.Code)
				}
				if len(w.Header().Values("WWW-Authenticate")) != 0 {
					t.Error("400 carries a challenge")
				}
			})
		}
	}
	if tok := e.storedToken(hashOf(raw)); tok.EnrollmentID != "" {
		t.Errorf("token bound to %q by malformed requests", tok.EnrollmentID)
	}
}

func TestGuardNoEnrollmentID(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("byod"))
	for _, bearer := range []string{"", raw} {
		w := e.mustServe(mdmRequest(fixture(t, "checkin/no-enrollment-id.plist"), bearer), failNext(t))
		if w.Code != http.StatusBadRequest {
			t.Errorf("bearer %v: status %d, want 400", bearer != "", w.Code)
		}
		if len(w.Header().Values("WWW-Authenticate")) != 0 {
			t.Error("400 carries a challenge")
		}
	}
}

func TestGuardForwardsRequest(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			e := newEnv(t)
			raw, _ := e.issue(grant("byod"))
			body := fixture(t, "checkin/ue-authenticate.plist")
			r := mdmRequest(body, raw)
			r.Header.Set("X-Request-Id", "req-1")
			r.Header.Add("X-Multi", "a")
			r.Header.Add("X-Multi", "b")
			if chunked {
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = -1
				r.TransferEncoding = []string{"chunked"}
			}
			want := r.Header.Clone()
			want.Del("Authorization")
			want.Set("Content-Length", strconv.Itoa(len(body)))

			n := &recNext{status: http.StatusOK, body: "mdm answer"}
			w := e.mustServe(r, n.serve)
			if w.Code != http.StatusOK || w.Body.String() != "mdm answer" {
				t.Fatalf("client got %d %q, want the MDM's 200 answer", w.Code, w.Body)
			}
			if len(n.calls) != 1 {
				t.Fatalf("%d calls to next, want 1", len(n.calls))
			}
			c := n.calls[0]
			if c.Method != http.MethodPut || c.Path != protect {
				t.Errorf("next received %s %s, want PUT %s", c.Method, c.Path, protect)
			}
			if !bytes.Equal(c.Body, body) {
				t.Errorf("next received a body of %d bytes that differs from the %d sent", len(c.Body), len(body))
			}
			if c.ContentLength != int64(len(body)) || c.TransferEncoding != nil {
				t.Errorf("next received ContentLength %d, TransferEncoding %v; want %d, none", c.ContentLength, c.TransferEncoding, len(body))
			}
			if _, ok := c.Header["Authorization"]; ok {
				t.Error("the bearer was passed to the MDM")
			}
			if !equalHeaders(c.Header, want) {
				t.Errorf("next headers\n got %v\nwant %v", c.Header, want)
			}
		})
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || len(va) != len(vb) {
			return false
		}
		for i := range va {
			if va[i] != vb[i] {
				return false
			}
		}
	}
	return true
}

func TestGuardBindsOnlyAfter2xx(t *testing.T) {
	errUpstream := errors.New("upstream unreachable")
	tests := []struct {
		name   string
		status int
		body   string
		err    error
		bound  bool
	}{
		{"200", http.StatusOK, "", nil, true},
		{"204", http.StatusNoContent, "", nil, true},
		{"implicit 200 by Write", 0, "ok", nil, true},
		{"400", http.StatusBadRequest, "bad signature", nil, false},
		{"401", http.StatusUnauthorized, "", nil, false},
		{"500", http.StatusInternalServerError, "", nil, false},
		{"502 from the proxy", http.StatusBadGateway, "", nil, false},
		{"error before writing", 0, "", errUpstream, false},
		{"error after 200", http.StatusOK, "", errUpstream, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			raw, h := e.issue(grant("byod"))
			n := &recNext{status: tt.status, body: tt.body, err: tt.err}
			_, err := e.serve(mdmRequest(fixture(t, "checkin/ue-authenticate.plist"), raw), n.serve)
			if !errors.Is(err, tt.err) {
				t.Errorf("ServeHTTP returned %v, want %v", err, tt.err)
			}
			if len(n.calls) != 1 {
				t.Fatalf("%d calls to next, want 1", len(n.calls))
			}
			tok := e.storedToken(h)
			en := e.enrollment(ueID)
			if !tt.bound {
				if tok.EnrollmentID != "" || en != nil {
					t.Fatalf("token bound to %q, enrollment %+v: want nothing recorded", tok.EnrollmentID, en)
				}
				return
			}
			if tok.EnrollmentID != ueID {
				t.Errorf("token bound to %q, want %q", tok.EnrollmentID, ueID)
			}
			if en == nil || en.State != store.StateActive || en.TokenHash != h || en.Mode != "byod" || en.Platform != store.PlatformOther {
				t.Errorf("enrollment %+v, want active, bound to the token, byod, platform other", en)
			}
		})
	}
}

func TestGuardCheckOutWithExpiredToken(t *testing.T) {
	e := newEnv(t)
	raw, h := e.issue(grant("byod"))
	e.bind(raw, fixture(t, "checkin/ue-authenticate.plist"))
	e.clock.Advance(tokenTTL + time.Hour)

	// Anything but CheckOut is challenged once the token expired...
	w := e.mustServe(mdmRequest(fixture(t, "checkin/ue-tokenupdate.plist"), raw), failNext(t))
	e.challengeFlow(w, origin)

	// ...CheckOut passes, and removes the enrollment once the MDM took it.
	n := &recNext{status: http.StatusOK}
	w = e.mustServe(mdmRequest(fixture(t, "checkin/ue-checkout.plist"), raw), n.serve)
	if w.Code != http.StatusOK || len(n.calls) != 1 {
		t.Fatalf("CheckOut: status %d, %d calls to next; want it passed on", w.Code, len(n.calls))
	}
	if _, ok := n.calls[0].Header["Authorization"]; ok {
		t.Error("the bearer was passed to the MDM")
	}
	if en := e.enrollment(ueID); en == nil || en.State != store.StateRemoved {
		t.Errorf("enrollment after CheckOut: %+v, want removed", en)
	}
	if tok := e.storedToken(h); tok.RevokedAt.IsZero() {
		t.Error("token not revoked by CheckOut")
	}
}

func TestGuardStoreUnavailable(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("byod"))
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, bearer := range []string{"", raw} {
		w := e.mustServe(mdmRequest(fixture(t, "checkin/ue-tokenupdate.plist"), bearer), failNext(t))
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("bearer %v: status %d, want 503", bearer != "", w.Code)
		}
		if got := w.Header().Get("Retry-After"); got != "30" {
			t.Errorf("Retry-After %q, want 30", got)
		}
		if len(w.Header().Values("WWW-Authenticate")) != 0 {
			t.Error("a store failure answered a challenge")
		}
	}
}

func TestUnprotectedPassThrough(t *testing.T) {
	e := newEnv(t)
	checkin := fixture(t, "checkin/ue-tokenupdate.plist")
	tests := []struct {
		name, method, path string
		body               []byte
	}{
		{"profile-based MDM path", http.MethodPut, "/mdm", checkin},
		{"sibling of the protected path", http.MethodPut, "/mdm/adx", checkin},
		{"SCEP", http.MethodGet, "/scep", nil},
		{"anything", http.MethodPost, "/api/v1/x", notPlist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, origin+tt.path, bytes.NewReader(tt.body))
			r.Header.Set("Authorization", "Bearer some-other-credential")
			r.Header.Set("Mdm-Signature", "sig")
			want := r.Header.Clone()
			var got *http.Request
			n := &recNext{status: http.StatusTeapot, body: "upstream"}
			next := func(w http.ResponseWriter, r *http.Request) error { got = r; return n.serve(w, r) }
			w, err := e.serve(r, next)
			if err != nil {
				t.Fatal(err)
			}
			if got != r {
				t.Fatal("next did not receive the request itself")
			}
			if w.Code != http.StatusTeapot || w.Body.String() != "upstream" {
				t.Errorf("client got %d %q, want the upstream answer", w.Code, w.Body)
			}
			c := n.calls[0]
			if !equalHeaders(c.Header, want) || !bytes.Equal(c.Body, tt.body) || c.ContentLength != int64(len(tt.body)) {
				t.Errorf("next received headers %v, %d body bytes, ContentLength %d: want the request untouched", c.Header, len(c.Body), c.ContentLength)
			}
		})
	}
	// A 401 from upstream on an unprotected path is not replaced.
	n := &recNext{status: http.StatusUnauthorized}
	w := e.mustServe(httptest.NewRequest(http.MethodPut, origin+"/mdm", bytes.NewReader(checkin)), n.serve)
	if w.Code != http.StatusUnauthorized || len(w.Header().Values("WWW-Authenticate")) != 0 {
		t.Errorf("unprotected 401: got %d with challenge %q", w.Code, w.Header().Values("WWW-Authenticate"))
	}
}

func TestLogsNeverHoldTokens(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("byod"))
	e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), ""), failNext(t))
	e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
	e.mustServe(enrollRequest("adde", "", nil, raw), failNext(t))
	e.bind(raw, fixture(t, "checkin/ue-authenticate.plist"))
	if _, err := e.tokens.SetState(e.ctx, ueID, store.StateReauth, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.mustServe(mdmRequest(fixture(t, "checkin/ue-tokenupdate.plist"), raw), failNext(t))
	entries := e.logs.All()
	if len(entries) < 5 {
		t.Fatalf("%d log entries, want one per request at least", len(entries))
	}
	for _, en := range entries {
		line := en.Message
		for k, v := range en.ContextMap() {
			line += " " + k + "=" + anyString(v)
		}
		if strings.Contains(line, raw) {
			t.Errorf("log entry holds the access token: %q", en.Message)
		}
	}
}
