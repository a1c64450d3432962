package gateway_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/mdmauth/mdmauth/internal/esso"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/signin"
)

const essoPath = "/mdmauth/esso"

// essoDocument builds the EnrollmentSSODocument of the tests from the esso
// package's example SSO profile.
func essoDocument(tb testing.TB, testMode bool) []byte {
	tb.Helper()
	prof, err := os.ReadFile(filepath.Join("..", "esso", "testdata", "redirect.mobileconfig"))
	if err != nil {
		tb.Fatal(err)
	}
	c := esso.Config{ITunesStoreID: 1234567890, AssociatedDomains: []string{"authsrv:login.example.com"}, ConfigurationProfile: prof}
	if testMode {
		c = esso.Config{TestMode: true, AppIDs: []string{"ABCDE12345.com.example.sso"}, ConfigurationProfile: prof}
	}
	doc, err := esso.Build(c)
	if err != nil {
		tb.Fatal(err)
	}
	return doc
}

// withESSO offers Enrollment SSO with the standard header.
func withESSO(tb testing.TB) func(*gateway.Config) {
	doc := essoDocument(tb, false)
	return func(c *gateway.Config) { c.ESSO = &gateway.ESSO{Header: esso.Header, Document: doc} }
}

func TestESSOHeaderOnEnrollmentChallenge(t *testing.T) {
	e := newEnv(t, withESSO(t))
	id := newIdentity(t, "device")
	tests := []struct {
		name  string
		query string
		body  []byte
		want  bool
	}{
		{"iPhone", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), true},
		{"iPad", "model-family=iPad", id.sign(t, enrollPlist("iPad16,3")), true},
		{"Vision Pro", "model-family=RealityDevice", id.sign(t, enrollPlist("RealityDevice14,1")), true},
		{"iPhone without model family", "", fixture(t, "enroll/iphone-signed.der"), true},
		{"nothing known of the device", "", nil, true},
		{"model family Mac", "model-family=Mac", fixture(t, "enroll/iphone-signed.der"), false},
		{"model family Mac, empty body", "model-family=Mac", nil, false},
		{"Mac body without model family", "", id.sign(t, enrollPlist("MacBookPro18,3")), false},
		{"virtual Mac body without model family", "", id.sign(t, enrollPlist("VirtualMac2,1")), false},
		{"iMac body without model family", "", id.sign(t, enrollPlist("iMac21,1")), false},
		{"Mac body with model family iPhone", "model-family=iPhone", id.sign(t, enrollPlist("Mac14,2")), false},
		{"bare Mac plist", "", enrollPlist("Macmini9,1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.mustServe(enrollRequest("byod", tt.query, tt.body, ""), failNext(t))
			e.challengeFlow(w, origin)
			got := w.Header().Values(esso.Header)
			if !tt.want {
				if len(got) != 0 {
					t.Errorf("%s %q on a Mac's challenge: macOS has no Enrollment SSO", esso.Header, got)
				}
				return
			}
			if len(got) != 1 || got[0] != origin+essoPath {
				t.Errorf("%s %q, want exactly %s", esso.Header, got, origin+essoPath)
			}
			if v := w.Header().Values(esso.DeveloperHeader); len(v) != 0 {
				t.Errorf("%s %q outside test mode", esso.DeveloperHeader, v)
			}
		})
	}
}

func TestESSOHeaderNowhereElse(t *testing.T) {
	e := newEnv(t, withESSO(t))
	assertNoESSO := func(t *testing.T, w *httptest.ResponseRecorder) {
		t.Helper()
		for _, h := range []string{esso.Header, esso.DeveloperHeader} {
			if v := w.Header().Values(h); len(v) != 0 {
				t.Errorf("%s %q on a %d answer", h, v, w.Code)
			}
		}
	}
	t.Run("protected path 401", func(t *testing.T) {
		w := e.mustServe(mdmRequest(fixture(t, "checkin/ue-authenticate.plist"), ""), failNext(t))
		e.challengeFlow(w, origin)
		assertNoESSO(t, w)
	})
	t.Run("enrollment 401 for a refused bearer", func(t *testing.T) {
		w := e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), "not-a-token"), failNext(t))
		e.challengeFlow(w, origin)
		assertNoESSO(t, w)
	})
	t.Run("profile 200", func(t *testing.T) {
		raw, _ := e.issue(grant("byod"))
		w := e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d, want 200; body %q", w.Code, w.Body)
		}
		assertNoESSO(t, w)
	})
	t.Run("discovery", func(t *testing.T) {
		w := e.mustServe(discoveryRequest(http.MethodGet, "user-identifier=alice@example.com&model-family=iPhone"), failNext(t))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d, want 200", w.Code)
		}
		assertNoESSO(t, w)
	})
}

func TestESSOHeaderURL(t *testing.T) {
	public, err := url.Parse("https://enroll.example.net:8443")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func(*gateway.Config)
		target string
		want   string
	}{
		{"custom prefix", func(c *gateway.Config) { c.Prefix = "/auth" },
			origin + "/auth/enroll/byod", origin + "/auth/esso"},
		{"public URL", func(c *gateway.Config) { c.PublicURL = public },
			"http://internal:8080/mdmauth/enroll/byod", "https://enroll.example.net:8443/mdmauth/esso"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withESSO(t), tt.edit)
			w := e.mustServe(httptest.NewRequest(http.MethodPost, tt.target, bytes.NewReader(fixture(t, "enroll/iphone-signed.der"))), failNext(t))
			if w.Code != http.StatusUnauthorized || w.Header().Get(esso.Header) != tt.want {
				t.Fatalf("got %d %s %q, want 401 with %s", w.Code, esso.Header, w.Header().Get(esso.Header), tt.want)
			}
		})
	}
}

func TestESSODeveloperHeader(t *testing.T) {
	doc := essoDocument(t, true)
	e := newEnv(t, func(c *gateway.Config) { c.ESSO = &gateway.ESSO{Header: esso.DeveloperHeader, Document: doc} })
	w := e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), ""), failNext(t))
	got := e.challengeFlow(w, origin)
	if want := (signin.Flow{Kind: signin.KindEnroll, Mode: "byod", ModelFamily: "iPhone"}); got != want {
		t.Errorf("flow %+v, want %+v", got, want)
	}
	if v := w.Header().Values(esso.DeveloperHeader); len(v) != 1 || v[0] != origin+essoPath {
		t.Errorf("%s %q, want %s", esso.DeveloperHeader, v, origin+essoPath)
	}
	if v := w.Header().Values(esso.Header); len(v) != 0 {
		t.Errorf("%s %q in test mode", esso.Header, v)
	}
	// The document behind the header is the test-mode one.
	w = e.mustServe(httptest.NewRequest(http.MethodGet, origin+essoPath, nil), failNext(t))
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), doc) {
		t.Fatalf("GET %s: %d %s, want 200 %s", essoPath, w.Code, w.Body, doc)
	}
}

func TestESSODocumentEndpoint(t *testing.T) {
	doc := essoDocument(t, false)
	e := newEnv(t, withESSO(t))
	// The device follows the header, with no Authorization.
	w := e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), ""), failNext(t))
	link := w.Header().Get(esso.Header)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method, func(t *testing.T) {
			r := httptest.NewRequest(method, link, nil)
			r.Header.Set("User-Agent", "DeviceManagementClient/1.0")
			w := e.mustServe(r, failNext(t))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %q", w.Code, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if len(w.Header().Values("WWW-Authenticate")) != 0 {
				t.Error("the document carries a challenge")
			}
			if method == http.MethodGet && !bytes.Equal(w.Body.Bytes(), doc) {
				t.Errorf("body\n got %s\nwant %s", w.Body, doc)
			}
		})
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			w := e.mustServe(httptest.NewRequest(method, link, bytes.NewReader(doc)), failNext(t))
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("status %d Allow %q, want 405 GET, HEAD", w.Code, w.Header().Get("Allow"))
			}
			if bytes.Contains(w.Body.Bytes(), doc) {
				t.Error("the document was served")
			}
		})
	}
	t.Run("below the endpoint", func(t *testing.T) {
		w := e.mustServe(httptest.NewRequest(http.MethodGet, link+"/x", nil), failNext(t))
		if w.Code != http.StatusNotFound {
			t.Errorf("status %d, want 404", w.Code)
		}
	})
}

func TestESSOOff(t *testing.T) {
	e := newEnv(t)
	w := e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), ""), failNext(t))
	e.challengeFlow(w, origin)
	for _, h := range []string{esso.Header, esso.DeveloperHeader} {
		if v := w.Header().Values(h); len(v) != 0 {
			t.Errorf("%s %q without Enrollment SSO", h, v)
		}
	}
	w = e.mustServe(httptest.NewRequest(http.MethodGet, origin+essoPath, nil), failNext(t))
	if w.Code != http.StatusNotFound {
		t.Errorf("GET %s without Enrollment SSO: status %d, want 404", essoPath, w.Code)
	}
}
