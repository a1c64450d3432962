package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestEnrollChallenge(t *testing.T) {
	e := newEnv(t)
	signed := fixture(t, "enroll/iphone-signed.der")
	form := fixture(t, "enroll/form-body.txt")
	tests := []struct {
		name        string
		mode        string
		query       string
		contentType string
		body        []byte
		want        signin.Flow
	}{
		{"signed body, iPhone", "byod", "model-family=iPhone", "application/pkcs7-signature", signed,
			signin.Flow{Kind: signin.KindEnroll, Mode: "byod", ModelFamily: "iPhone"}},
		{"form content type", "byod", "model-family=iPad", "application/x-www-form-urlencoded", form,
			signin.Flow{Kind: signin.KindEnroll, Mode: "byod", ModelFamily: "iPad"}},
		{"bare plist, Mac", "adde", "model-family=Mac", "application/xml", fixture(t, "enroll/bare.plist"),
			signin.Flow{Kind: signin.KindEnroll, Mode: "adde", ModelFamily: "Mac"}},
		{"no model family", "adde", "", "application/pkcs7-signature", signed,
			signin.Flow{Kind: signin.KindEnroll, Mode: "adde"}},
		{"empty body", "byod", "", "", nil,
			signin.Flow{Kind: signin.KindEnroll, Mode: "byod"}},
		{"overlong model family dropped", "byod", "model-family=" + string(bytes.Repeat([]byte("x"), 33)), "application/pkcs7-signature", signed,
			signin.Flow{Kind: signin.KindEnroll, Mode: "byod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr := &countingReader{r: bytes.NewReader(tt.body)}
			r := httptest.NewRequest(http.MethodPost, origin+"/mdmauth/enroll/"+tt.mode+"?"+tt.query, cr)
			r.ContentLength = int64(len(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := e.mustServe(r, failNext(t))
			got := e.challengeFlow(w, origin)
			if got != tt.want {
				t.Errorf("flow %+v, want %+v", got, tt.want)
			}
			// The raw body was read, never form-parsed.
			if cr.n != len(tt.body) {
				t.Errorf("read %d body bytes, want all %d", cr.n, len(tt.body))
			}
			if r.Form != nil || r.PostForm != nil {
				t.Errorf("the body was form-parsed: Form %v, PostForm %v", r.Form, r.PostForm)
			}
		})
	}
}

func TestEnrollChallengePublicURL(t *testing.T) {
	public, err := url.Parse("https://enroll.example.net")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *gateway.Config) { c.PublicURL = public })
	r := httptest.NewRequest(http.MethodPost, "http://internal:8080/mdmauth/enroll/byod?model-family=iPhone", bytes.NewReader(fixture(t, "enroll/iphone-signed.der")))
	w := e.mustServe(r, failNext(t))
	got := e.challengeFlow(w, "https://enroll.example.net")
	if want := (signin.Flow{Kind: signin.KindEnroll, Mode: "byod", ModelFamily: "iPhone"}); got != want {
		t.Errorf("flow %+v, want %+v", got, want)
	}
}

// TestEnrollChallengeLinkRoutes follows the challenge's sign-in URL back
// into the gateway: the link is accepted (no 404) and the sign-in reaches
// the (unreachable) identity provider.
func TestEnrollChallengeLinkRoutes(t *testing.T) {
	e := newEnv(t)
	w := e.mustServe(enrollRequest("byod", "model-family=iPhone", nil, ""), failNext(t))
	e.challengeFlow(w, origin)
	_, params, err := apple.ParseChallenge(w.Header().Get("WWW-Authenticate"))
	if err != nil {
		t.Fatal(err)
	}
	// The device replaces the url's query with the identifier.
	link := params[0].Value + "?user-identifier=alice@example.com"
	w = e.mustServe(httptest.NewRequest(http.MethodGet, link, nil), failNext(t))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET sign-in link: status %d, want 503 (provider unreachable); body %q", w.Code, w.Body)
	}
	// A forged link is refused before the provider is contacted.
	w = e.mustServe(httptest.NewRequest(http.MethodGet, origin+signInPath+"forged.value", nil), failNext(t))
	if w.Code != http.StatusNotFound {
		t.Fatalf("GET forged sign-in link: status %d, want 404", w.Code)
	}
}

func TestEnrollBodyLimit(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"64 KiB", gateway.DefaultMaxEnrollBody, false, http.StatusUnauthorized},
		{"64 KiB chunked", gateway.DefaultMaxEnrollBody, true, http.StatusUnauthorized},
		{"64 KiB + 1", gateway.DefaultMaxEnrollBody + 1, false, http.StatusRequestEntityTooLarge},
		{"64 KiB + 1 chunked", gateway.DefaultMaxEnrollBody + 1, true, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := bytes.Repeat([]byte{0x30}, tt.size)
			r := enrollRequest("byod", "", body, "")
			if tt.chunked {
				r = httptest.NewRequest(http.MethodPost, origin+"/mdmauth/enroll/byod", io.MultiReader(bytes.NewReader(body)))
				r.TransferEncoding = []string{"chunked"}
			}
			w := e.mustServe(r, failNext(t))
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want == http.StatusRequestEntityTooLarge && len(w.Header().Values("WWW-Authenticate")) != 0 {
				t.Error("413 carries a challenge")
			}
		})
	}
}

func TestEnrollRouting(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, method, path string
		want               int
		allow              string
	}{
		{"GET", http.MethodGet, "/mdmauth/enroll/byod", http.StatusMethodNotAllowed, "POST"},
		{"PUT", http.MethodPut, "/mdmauth/enroll/adde", http.StatusMethodNotAllowed, "POST"},
		{"unknown mode", http.MethodPost, "/mdmauth/enroll/mdm-byod", http.StatusNotFound, ""},
		{"upper-case mode", http.MethodPost, "/mdmauth/enroll/BYOD", http.StatusNotFound, ""},
		{"no mode", http.MethodPost, "/mdmauth/enroll/", http.StatusNotFound, ""},
		{"extra segment", http.MethodPost, "/mdmauth/enroll/byod/x", http.StatusNotFound, ""},
		{"unknown mode, GET", http.MethodGet, "/mdmauth/enroll/x", http.StatusNotFound, ""},
		{"prefix itself", http.MethodGet, "/mdmauth", http.StatusNotFound, ""},
		{"unknown endpoint", http.MethodGet, "/mdmauth/nope", http.StatusNotFound, ""},
		{"sign-in by POST", http.MethodPost, "/mdmauth/sign-in/x", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"callback by POST", http.MethodPost, "/mdmauth/oidc/callback", http.StatusMethodNotAllowed, "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.mustServe(httptest.NewRequest(tt.method, origin+tt.path, nil), failNext(t))
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if got := w.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestCallbackSkipsAccessLog(t *testing.T) {
	e := newEnv(t)
	var skipped []string
	e.gw.SkipAccessLog = func(r *http.Request) { skipped = append(skipped, r.Method+" "+r.URL.Path) }
	// No state: refused before the store or the provider is used.
	w := e.mustServe(httptest.NewRequest(http.MethodGet, origin+"/mdmauth/oidc/callback?code=secret", nil), failNext(t))
	if w.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", w.Code)
	}
	e.mustServe(enrollRequest("byod", "", nil, ""), failNext(t))
	if len(skipped) != 1 || skipped[0] != "GET /mdmauth/oidc/callback" {
		t.Fatalf("SkipAccessLog called for %q, want only the callback", skipped)
	}
}

// profilePayload decodes a served profile and returns its com.apple.mdm
// payload.
func profilePayload(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var prof map[string]any
	if err := plist.NewXMLDecoder(io.LimitReader(bytes.NewReader(body), 1<<20)).Decode(&prof); err != nil {
		t.Fatalf("profile is not an XML plist: %v", err)
	}
	if prof["PayloadType"] != "Configuration" {
		t.Errorf("PayloadType %v, want Configuration", prof["PayloadType"])
	}
	content, _ := prof["PayloadContent"].([]any)
	var mdm map[string]any
	for _, p := range content {
		if d, _ := p.(map[string]any); d["PayloadType"] == "com.apple.mdm" {
			if mdm != nil {
				t.Fatal("two com.apple.mdm payloads")
			}
			mdm = d
		}
	}
	if mdm == nil {
		t.Fatal("no com.apple.mdm payload")
	}
	return mdm
}

func TestEnrollProfile(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, mode, contentType string
		body                    []byte
		wantMode                string
		wantAccessRights        bool
	}{
		{"byod, signed body", "byod", "application/pkcs7-signature", fixture(t, "enroll/iphone-signed.der"), "BYOD", false},
		{"byod, form content type", "byod", "application/x-www-form-urlencoded", fixture(t, "enroll/form-body.txt"), "BYOD", false},
		{"adde", "adde", "application/pkcs7-signature", fixture(t, "enroll/iphone-signed.der"), "ADDE", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, h := e.issue(grant(tt.mode))
			r := enrollRequest(tt.mode, "model-family=iPhone", tt.body, raw)
			r.Header.Set("Content-Type", tt.contentType)
			w := e.mustServe(r, failNext(t))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %q", w.Code, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != "application/x-apple-aspen-config" {
				t.Errorf("Content-Type %q, want application/x-apple-aspen-config", got)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if len(w.Header().Values("WWW-Authenticate")) != 0 {
				t.Error("profile answer carries a challenge")
			}
			if r.Form != nil || r.PostForm != nil {
				t.Error("the body was form-parsed")
			}
			mdm := profilePayload(t, w.Body.Bytes())
			if mdm["EnrollmentMode"] != tt.wantMode {
				t.Errorf("EnrollmentMode %v, want %s", mdm["EnrollmentMode"], tt.wantMode)
			}
			if mdm["AssignedManagedAppleID"] != "alice@example.com" {
				t.Errorf("AssignedManagedAppleID %v, want alice@example.com", mdm["AssignedManagedAppleID"])
			}
			if _, ok := mdm["AccessRights"]; ok != tt.wantAccessRights {
				t.Errorf("AccessRights present %v, want %v", ok, tt.wantAccessRights)
			}
			if mdm["ServerURL"] != "https://mdm.example.com/mdm/ad" {
				t.Errorf("ServerURL %v", mdm["ServerURL"])
			}
			// Serving the profile binds nothing and revokes nothing.
			if tok := e.storedToken(h); tok.EnrollmentID != "" || !tok.RevokedAt.IsZero() {
				t.Errorf("token after profile: bound to %q, revoked at %v", tok.EnrollmentID, tok.RevokedAt)
			}
		})
	}
}

func TestEnrollProfileServedAgain(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("byod"))
	for i := 0; i < 2; i++ {
		w := e.mustServe(enrollRequest("byod", "", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, w.Code)
		}
	}
}

func TestEnrollRefusedToken(t *testing.T) {
	e := newEnv(t)
	expired, _ := e.issue(grant("byod"))
	e.clock.Advance(tokenTTL) // expiry is exclusive
	revoked, rh := e.issue(grant("byod"))
	if err := e.tokens.Revoke(e.ctx, rh); err != nil {
		t.Fatal(err)
	}
	unknown, _, err := token.Mint(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header string
	}{
		{"unknown", "Bearer " + unknown},
		{"expired", "Bearer " + expired},
		{"revoked", "Bearer " + revoked},
		{"malformed", "Bearer not-a-token"},
		{"not bearer", "Basic YWxpY2U6cGFzc3dvcmQ="},
		{"empty bearer", "Bearer "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), "")
			r.Header.Set("Authorization", tt.header)
			w := e.mustServe(r, failNext(t))
			got := e.challengeFlow(w, origin)
			if want := (signin.Flow{Kind: signin.KindEnroll, Mode: "byod", ModelFamily: "iPhone"}); got != want {
				t.Errorf("flow %+v, want %+v", got, want)
			}
		})
	}
}

func TestEnrollModeMismatch(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ token, path string }{{"byod", "adde"}, {"adde", "byod"}} {
		t.Run(tc.token+" token on "+tc.path, func(t *testing.T) {
			raw, _ := e.issue(grant(tc.token))
			w := e.mustServe(enrollRequest(tc.path, "", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
			assertRefused(t, w, "com.apple.mdmauth.mode-mismatch")
		})
	}
}

// assertRefused checks a 403 JSON {code, message} enrollment refusal.
func assertRefused(t *testing.T, w *httptest.ResponseRecorder, code string) {
	t.Helper()
	if w.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403; body %q", w.Code, w.Body)
	}
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q, want application/json", got)
	}
	if len(w.Header().Values("WWW-Authenticate")) != 0 {
		t.Error("refusal carries a challenge")
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if body["code"] != code || body["message"] == "" || len(body) != 2 {
		t.Errorf("body %v, want code %q and a message only", body, code)
	}
}

// Once its token is bound, a device has its profile: the enrollment URL
// never serves it again to that token, whatever the enrollment's state,
// so that a copied token cannot fetch the profile's enrollment secrets for
// another device.
func TestEnrollBoundToken(t *testing.T) {
	for _, state := range []store.State{store.StateActive, store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved} {
		t.Run(string(state), func(t *testing.T) {
			e := newEnv(t)
			raw, _ := e.issue(grant("byod"))
			body := fixture(t, "enroll/iphone-signed.der")
			if w := e.mustServe(enrollRequest("byod", "", body, raw), failNext(t)); w.Code != http.StatusOK {
				t.Fatalf("before binding: status %d, want 200", w.Code)
			}
			e.bind(raw, fixture(t, "checkin/ue-authenticate.plist"))
			if state != store.StateActive {
				if _, err := e.tokens.SetState(e.ctx, ueID, state, time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			w := e.mustServe(enrollRequest("byod", "", body, raw), failNext(t))
			if state == store.StateRemoved {
				// Removing revokes the enrollment's tokens: a challenge.
				e.challengeFlow(w, origin)
				return
			}
			assertRefused(t, w, "com.apple.mdmauth.token-in-use")
		})
	}
}

// A token that names an enrollment which no longer exists is refused too.
func TestEnrollBoundToVanishedEnrollment(t *testing.T) {
	e := newEnv(t)
	raw, h := e.issue(grant("byod"))
	if _, err := e.store.UpdateToken(e.ctx, h, func(t *store.Token) error { t.EnrollmentID = "gone"; return nil }); err != nil {
		t.Fatal(err)
	}
	w := e.mustServe(enrollRequest("byod", "", nil, raw), failNext(t))
	assertRefused(t, w, "com.apple.mdmauth.token-in-use")
}

func TestEnrollStoreUnavailable(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("byod"))
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	w := e.mustServe(enrollRequest("byod", "", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503; body %q", w.Code, w.Body)
	}
	if got := w.Header().Get("Retry-After"); got != "30" {
		t.Errorf("Retry-After %q, want 30", got)
	}
	if len(w.Header().Values("WWW-Authenticate")) != 0 {
		t.Error("a store failure must not answer a challenge (401 ends the enrollment)")
	}
	// Without a bearer the store is not needed: still the challenge.
	w = e.mustServe(enrollRequest("byod", "", nil, ""), failNext(t))
	e.challengeFlow(w, origin)
}
