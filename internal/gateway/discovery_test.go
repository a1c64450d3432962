package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/mdmauth/mdmauth/internal/gateway"
)

const wellKnown = "/.well-known/com.apple.remotemanagement"

func discoveryRequest(method, rawQuery string) *http.Request {
	return httptest.NewRequest(method, origin+wellKnown+"?"+rawQuery, nil)
}

func TestDiscoveryAnswers(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		method   string
		query    string
		wantBody string
		wantUser string // user_identifier logged
	}{
		{
			name:     "iPhone byod",
			method:   http.MethodGet,
			query:    "user-identifier=alice@example.com&model-family=iPhone",
			wantBody: `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod?model-family=iPhone"}]}`,
			wantUser: "alice@example.com",
		},
		{
			name:     "Mac adde",
			method:   http.MethodGet,
			query:    "user-identifier=alice@example.com&model-family=Mac",
			wantBody: `{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/mdmauth/enroll/adde?model-family=Mac"}]}`,
			wantUser: "alice@example.com",
		},
		{
			name:     "no model family takes the default mode",
			method:   http.MethodGet,
			query:    "user-identifier=alice@example.com",
			wantBody: `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod"}]}`,
			wantUser: "alice@example.com",
		},
		{
			name:     "plus kept in the identifier",
			method:   http.MethodGet,
			query:    "user-identifier=a+b@example.com&model-family=iPad",
			wantBody: `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod?model-family=iPad"}]}`,
			wantUser: "a+b@example.com",
		},
		{
			name:     "percent-encoded identifier, domain case ignored",
			method:   http.MethodGet,
			query:    "user-identifier=Alice%40EXAMPLE.com&model-family=RealityDevice",
			wantBody: `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod?model-family=RealityDevice"}]}`,
			wantUser: "Alice@EXAMPLE.com",
		},
		{
			name:     "HEAD",
			method:   http.MethodHead,
			query:    "user-identifier=alice@example.com&model-family=iPhone",
			wantBody: `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod?model-family=iPhone"}]}`,
			wantUser: "alice@example.com",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.logs.TakeAll()
			w := e.mustServe(discoveryRequest(tt.method, tt.query), failNext(t))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %q", w.Code, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if got := w.Body.String(); got != tt.wantBody {
				t.Errorf("body\n got %s\nwant %s", got, tt.wantBody)
			}
			answered := e.logs.FilterMessage("discovery answered").All()
			if len(answered) != 1 {
				t.Fatalf("%d 'discovery answered' log entries, want 1", len(answered))
			}
			if got := answered[0].ContextMap()["user_identifier"]; got != tt.wantUser {
				t.Errorf("logged user_identifier %q, want %q", got, tt.wantUser)
			}
		})
	}
}

func TestDiscoveryRefusals(t *testing.T) {
	e := newEnv(t)
	const badIdentifier = "Enter your full work account, such as name@example.com."
	tests := []struct {
		name    string
		query   string
		message string
	}{
		{"unknown domain", "user-identifier=alice@other.example&model-family=iPhone",
			"Accounts of other.example cannot enroll devices with this organization."},
		{"subdomain of a served domain", "user-identifier=alice@sub.example.com&model-family=iPhone",
			"Accounts of sub.example.com cannot enroll devices with this organization."},
		{"two at signs", "user-identifier=alice@corp@example.com&model-family=iPhone", badIdentifier},
		{"empty local part", "user-identifier=@example.com&model-family=iPhone", badIdentifier},
		{"AppleTV", "user-identifier=alice@example.com&model-family=AppleTV",
			"This kind of device cannot be enrolled with an account."},
		{"Watch", "user-identifier=alice@example.com&model-family=Watch",
			"This kind of device cannot be enrolled with an account."},
		{"missing user-identifier", "model-family=iPhone", badIdentifier},
		{"empty user-identifier", "user-identifier=&model-family=iPhone", badIdentifier},
		{"unknown model family", "user-identifier=alice@example.com&model-family=Toaster",
			"This device sent a request the server cannot handle."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.mustServe(discoveryRequest(http.MethodGet, tt.query), failNext(t))
			if w.Code != http.StatusForbidden {
				t.Fatalf("status %d, want 403; body %q", w.Code, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if body["code"] != "com.apple.well-known.failed" {
				t.Errorf("code %q, want com.apple.well-known.failed", body["code"])
			}
			if body["message"] != tt.message {
				t.Errorf("message %q, want %q", body["message"], tt.message)
			}
			if body["description"] == "" {
				t.Error("description is empty")
			}
			if len(body) != 3 {
				t.Errorf("body keys %v, want code, description and message only", body)
			}
		})
	}
}

func TestDiscoveryMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			w := e.mustServe(discoveryRequest(method, "user-identifier=alice@example.com"), failNext(t))
			if w.Code != http.StatusMethodNotAllowed {
				t.Fatalf("status %d, want 405", w.Code)
			}
			if got := w.Header().Get("Allow"); got != "GET, HEAD" {
				t.Errorf("Allow %q, want %q", got, "GET, HEAD")
			}
		})
	}
}

func TestDiscoveryPublicURL(t *testing.T) {
	public, err := url.Parse("https://enroll.example.net:8443")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *gateway.Config) { c.PublicURL = public })
	// The request arrives on another host, in plain HTTP behind a proxy.
	r := httptest.NewRequest(http.MethodGet, "http://internal:8080"+wellKnown+"?user-identifier=alice@example.com&model-family=Mac", nil)
	w := e.mustServe(r, failNext(t))
	want := `{"Servers":[{"Version":"mdm-adde","BaseURL":"https://enroll.example.net:8443/mdmauth/enroll/adde?model-family=Mac"}]}`
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("got %d %s, want 200 %s", w.Code, w.Body, want)
	}
}

func TestDiscoveryPlainHTTPRequest(t *testing.T) {
	e := newEnv(t)
	// Without TLS and without PublicURL the scheme follows the request.
	r := httptest.NewRequest(http.MethodGet, "http://mdm.internal"+wellKnown+"?user-identifier=alice@example.com", nil)
	w := e.mustServe(r, failNext(t))
	want := `{"Servers":[{"Version":"mdm-byod","BaseURL":"http://mdm.internal/mdmauth/enroll/byod"}]}`
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("got %d %s, want 200 %s", w.Code, w.Body, want)
	}
}

func TestDiscoveryCustomPrefixAndDefaultMode(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) {
		c.Prefix = "/auth"
		c.DefaultMode = "adde"
		c.Domains = []string{"Example.COM."}
	})
	w := e.mustServe(discoveryRequest(http.MethodGet, "user-identifier=alice@example.com&model-family=iPhone"), failNext(t))
	want := `{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/auth/enroll/adde?model-family=iPhone"}]}`
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("got %d %s, want 200 %s", w.Code, w.Body, want)
	}
}
