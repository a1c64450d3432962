package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/policy"
)

// mdmHost is where a redirecting Discovery sends devices.
const mdmHost = "https://mdm.host"

// serveDiscovery runs one discovery request of rawQuery through d, as the
// organization's website (example.com) receives it.
func serveDiscovery(d *gateway.Discovery, method, rawQuery string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	d.ServeHTTP(w, httptest.NewRequest(method, "https://example.com"+wellKnown+"?"+rawQuery, nil))
	return w
}

// assertWellKnownFailed checks a 403 com.apple.well-known.failed refusal
// showing message.
func assertWellKnownFailed(t *testing.T, w *httptest.ResponseRecorder, message string) {
	t.Helper()
	if w.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403; body %q", w.Code, w.Body)
	}
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q, want application/json", got)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	if loc := w.Header().Get("Location"); loc != "" {
		t.Errorf("refusal carries Location %q", loc)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if body["code"] != "com.apple.well-known.failed" || body["description"] == "" || len(body) != 3 {
		t.Errorf("body %v, want code com.apple.well-known.failed, a description and a message only", body)
	}
	if body["message"] != message {
		t.Errorf("message %q, want %q", body["message"], message)
	}
}

// assertNotFound checks the plain 404 that lets iOS 18.2+ ask Apple
// Business Manager instead.
func assertNotFound(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404; body %q", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		t.Errorf("404 sent as %q: a JSON body would read as a refusal", ct)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	if loc := w.Header().Get("Location"); loc != "" {
		t.Errorf("404 carries Location %q", loc)
	}
}

func TestDiscoveryRedirect(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	d := &gateway.Discovery{Redirect: mdmHost, Domains: []string{"example.com"}, Log: zap.New(core)}
	const to = mdmHost + wellKnown + "?"
	tests := []struct {
		name   string
		method string
		query  string
		want   string // Location
	}{
		{"iPhone", http.MethodGet, "user-identifier=alice@example.com&model-family=iPhone",
			to + "user-identifier=alice@example.com&model-family=iPhone"},
		{"HEAD", http.MethodHead, "user-identifier=alice@example.com&model-family=Mac",
			to + "user-identifier=alice@example.com&model-family=Mac"},
		{"no model family", http.MethodGet, "user-identifier=alice@example.com",
			to + "user-identifier=alice@example.com"},
		{"model family first", http.MethodGet, "model-family=RealityDevice&user-identifier=alice@example.com",
			to + "user-identifier=alice@example.com&model-family=RealityDevice"},
		{"plus kept as sent", http.MethodGet, "user-identifier=a+b@example.com&model-family=iPad",
			to + "user-identifier=a+b@example.com&model-family=iPad"},
		{"encoded plus and at sign sent plain", http.MethodGet, "user-identifier=a%2Bb%40example.com&model-family=iPhone",
			to + "user-identifier=a+b@example.com&model-family=iPhone"},
		{"case of the identifier kept", http.MethodGet, "user-identifier=Alice@EXAMPLE.com",
			to + "user-identifier=Alice@EXAMPLE.com"},
		{"unreserved characters plain", http.MethodGet, "user-identifier=a.b-c_d~e@example.com",
			to + "user-identifier=a.b-c_d~e@example.com"},
		{"query delimiters encoded", http.MethodGet, "user-identifier=a%26model-family%3DMac@example.com&model-family=iPhone",
			to + "user-identifier=a%26model-family%3DMac@example.com&model-family=iPhone"},
		{"other reserved characters encoded", http.MethodGet, "user-identifier=a%23b%3Fc%2Fd%25e%21f%27g%2Ah%3Bi%2Cj%3Ak%24l@example.com",
			to + "user-identifier=a%23b%3Fc%2Fd%25e%21f%27g%2Ah%3Bi%2Cj%3Ak%24l@example.com"},
		{"lower-case escapes normalized", http.MethodGet, "user-identifier=a%2fb@example.com",
			to + "user-identifier=a%2Fb@example.com"},
		{"UTF-8 encoded byte by byte", http.MethodGet, "user-identifier=jos%C3%A9@example.com",
			to + "user-identifier=jos%C3%A9@example.com"},
		{"other parameters dropped", http.MethodGet, "lang=en&user-identifier=alice@example.com&x=1",
			to + "user-identifier=alice@example.com"},
		{"mixed-case domain served, kept as typed", http.MethodGet, "user-identifier=bob@Example.Com&model-family=iPhone",
			to + "user-identifier=bob@Example.Com&model-family=iPhone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.TakeAll()
			w := serveDiscovery(d, tt.method, tt.query)
			if w.Code != http.StatusPermanentRedirect {
				t.Fatalf("status %d, want 308; body %q", w.Code, w.Body)
			}
			if got := w.Header().Get("Location"); got != tt.want {
				t.Errorf("Location\n got %s\nwant %s", got, tt.want)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			// The MDM host reads the same request back from Location.
			sent, err := apple.ParseDiscoveryQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			_, rawQuery, _ := strings.Cut(w.Header().Get("Location"), "?")
			got, err := apple.ParseDiscoveryQuery(rawQuery)
			if err != nil {
				t.Fatalf("the MDM host cannot parse the redirected query %q: %v", rawQuery, err)
			}
			if got != sent {
				t.Errorf("redirected request %+v, want %+v", got, sent)
			}
			if n := logs.FilterMessage("discovery redirected").Len(); n != 1 {
				t.Errorf("%d 'discovery redirected' log entries, want 1", n)
			}
		})
	}
}

func TestDiscoveryRedirectWithPort(t *testing.T) {
	d := &gateway.Discovery{Redirect: "https://mdm.example.net:8443", Domains: []string{"example.com"}, Log: zap.NewNop()}
	w := serveDiscovery(d, http.MethodGet, "user-identifier=alice@example.com&model-family=iPhone")
	want := "https://mdm.example.net:8443" + wellKnown + "?user-identifier=alice@example.com&model-family=iPhone"
	if w.Code != http.StatusPermanentRedirect || w.Header().Get("Location") != want {
		t.Fatalf("got %d Location %q, want 308 %q", w.Code, w.Header().Get("Location"), want)
	}
}

// TestDiscoveryRedirectRefusals: the website refuses what the MDM host
// would refuse, without a redirect.
func TestDiscoveryRedirectRefusals(t *testing.T) {
	const badIdentifier = "Enter your full work account, such as name@example.com."
	const unknownMessage = "Use your example.com account."
	tests := []struct {
		name     string
		notFound bool
		query    string
		want404  bool
		message  string // of the 403
	}{
		{"unknown domain, 404", true, "user-identifier=alice@other.example&model-family=iPhone", true, ""},
		{"unknown domain, 403", false, "user-identifier=alice@other.example&model-family=iPhone", false, unknownMessage},
		{"two at signs, 404 mode", true, "user-identifier=a@b@example.com&model-family=iPhone", false, badIdentifier},
		{"two at signs", false, "user-identifier=a@b@example.com", false, badIdentifier},
		{"missing identifier, 404 mode", true, "model-family=iPhone", false, badIdentifier},
		{"space in identifier, 404 mode", true, "user-identifier=a%20b@example.com", false, badIdentifier},
		{"bad percent-encoding, 404 mode", true, "user-identifier=a%zz@example.com", false, "This device sent a request the server cannot handle."},
		{"Watch, 404 mode", true, "user-identifier=alice@example.com&model-family=Watch", false, "This kind of device cannot be enrolled with an account."},
		{"unknown model family, 404 mode", true, "user-identifier=alice@example.com&model-family=iphone", false, "This device sent a request the server cannot handle."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &gateway.Discovery{Redirect: mdmHost, Domains: []string{"example.com"}, NotFound: tt.notFound, Log: zap.NewNop()}
			if !tt.notFound {
				d.UnknownMessage = unknownMessage
			}
			w := serveDiscovery(d, http.MethodGet, tt.query)
			if tt.want404 {
				assertNotFound(t, w)
				return
			}
			assertWellKnownFailed(t, w, tt.message)
		})
	}
}

func TestDiscoveryRedirectMethods(t *testing.T) {
	d := &gateway.Discovery{Redirect: mdmHost, Domains: []string{"example.com"}, Log: zap.NewNop()}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodOptions} {
		w := serveDiscovery(d, method, "user-identifier=alice@example.com")
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d Allow %q, want 405 GET, HEAD", method, w.Code, w.Header().Get("Allow"))
		}
		if loc := w.Header().Get("Location"); loc != "" {
			t.Errorf("%s: Location %q", method, loc)
		}
	}
}

// redirectPolicy is the policy of the redirecting website's tests.
func redirectPolicy() *policy.Policy {
	return &policy.Policy{Rules: []policy.Rule{
		{Name: "contractors", Domains: []string{"contractors.example.com"}, Deny: true, Message: "Contractors enroll with their own company."},
		{Name: "no watches of guests", Domains: []string{"guests.example.com"}, Deny: true},
		{Name: "staff macs", Domains: []string{"example.com"}, Families: []string{"Mac"}, Mode: "adde"},
		{Name: "staff phones", Domains: []string{"example.com"}, Families: []string{"iPhone", "iPad"}},
	}}
}

// TestDiscoveryRedirectPolicy: with a policy, the website redirects only
// what the policy allows, and answers denies and unknown users itself.
func TestDiscoveryRedirectPolicy(t *testing.T) {
	const to = mdmHost + wellKnown + "?"
	tests := []struct {
		name     string
		notFound bool
		query    string
		status   int
		want     string // Location, or the 403 message
	}{
		{"allowed iPhone", false, "user-identifier=alice@example.com&model-family=iPhone", 308, to + "user-identifier=alice@example.com&model-family=iPhone"},
		{"allowed Mac", true, "user-identifier=alice@example.com&model-family=Mac", 308, to + "user-identifier=alice@example.com&model-family=Mac"},
		{"denied with the rule's message", false, "user-identifier=carol@contractors.example.com&model-family=iPhone", 403, "Contractors enroll with their own company."},
		{"denied, never 404", true, "user-identifier=carol@contractors.example.com&model-family=iPhone", 403, "Contractors enroll with their own company."},
		{"denied without a message", true, "user-identifier=guest@guests.example.com", 403, "Your organization does not allow enrolling this device."},
		{"no rule for the family, 404", true, "user-identifier=alice@example.com&model-family=RealityDevice", 404, ""},
		{"no rule for the family, 403", false, "user-identifier=alice@example.com&model-family=RealityDevice", 403, "Accounts of example.com cannot enroll this device with this organization."},
		{"no rule without a family", true, "user-identifier=alice@example.com", 404, ""},
		{"no rule for the domain, 404", true, "user-identifier=dave@example.org&model-family=iPhone", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &gateway.Discovery{Redirect: mdmHost, Policy: redirectPolicy(), NotFound: tt.notFound, Log: zap.NewNop()}
			if err := d.Policy.Validate(nil); err != nil {
				t.Fatal(err)
			}
			w := serveDiscovery(d, http.MethodGet, tt.query)
			switch tt.status {
			case 308:
				if w.Code != http.StatusPermanentRedirect || w.Header().Get("Location") != tt.want {
					t.Fatalf("got %d Location %q, want 308 %q; body %q", w.Code, w.Header().Get("Location"), tt.want, w.Body)
				}
			case 404:
				assertNotFound(t, w)
			default:
				assertWellKnownFailed(t, w, tt.want)
			}
		})
	}
}

// TestDiscoveryBaseURL is the website answering itself (mdm_discovery
// base_url): the BaseURL points at the MDM host's gateway, the mode comes
// from the policy.
func TestDiscoveryBaseURL(t *testing.T) {
	var gotHost string
	d := &gateway.Discovery{
		Policy: &policy.Policy{
			Rules: []policy.Rule{
				{Name: "devices", Domains: []string{"example.com"}, Families: []string{"RealityDevice"}, Mode: "byod"},
				{Name: "staff", Domains: []string{"example.com"}},
			},
			Modes: policy.Modes{Default: "byod", ByFamily: map[string]string{"Mac": "adde", "RealityDevice": "adde"}},
		},
		BaseURL: func(r *http.Request) string { gotHost = r.Host; return "https://mdm.example.com/mdmauth" },
		Log:     zap.NewNop(),
	}
	if err := d.Policy.Validate(nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query string
		want  string
	}{
		{"user-identifier=alice@example.com&model-family=iPhone",
			`{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod?model-family=iPhone"}]}`},
		{"user-identifier=alice@example.com&model-family=Mac",
			`{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/mdmauth/enroll/adde?model-family=Mac"}]}`},
		// The rule's own mode wins over the family's.
		{"user-identifier=alice@example.com&model-family=RealityDevice",
			`{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod?model-family=RealityDevice"}]}`},
		{"user-identifier=alice@example.com",
			`{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			w := serveDiscovery(d, http.MethodGet, tt.query)
			if w.Code != http.StatusOK || w.Body.String() != tt.want {
				t.Fatalf("got %d %s, want 200 %s", w.Code, w.Body, tt.want)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if loc := w.Header().Get("Location"); loc != "" {
				t.Errorf("answer carries Location %q", loc)
			}
			if gotHost != "example.com" {
				t.Errorf("BaseURL called with the request of %q, want example.com", gotHost)
			}
		})
	}
	// Unknown users of the website are refused, not sent to the MDM host.
	assertWellKnownFailed(t, serveDiscovery(d, http.MethodGet, "user-identifier=eve@example.org&model-family=iPhone"),
		"Accounts of example.org cannot enroll this device with this organization.")
}
