package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/policy"
	"github.com/mdmauth/mdmauth/internal/profile"
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

// TestDiscoveryUnknown: unknown users and domains get 404 (so that iOS
// 18.2+ asks Apple Business Manager) or 403 with the configured message;
// everything else is a 403 whatever the setting, since a 404 would send the
// device to another MDM.
func TestDiscoveryUnknown(t *testing.T) {
	const (
		badIdentifier  = "Enter your full work account, such as name@example.com."
		unknownMessage = "Use your example.com account to enroll."
	)
	tests := []struct {
		name     string
		notFound bool
		message  string // DiscoveryUnknownMessage
		query    string
		want404  bool
		want     string // the 403's message
	}{
		{"unknown domain, 404", true, "", "user-identifier=alice@other.example&model-family=iPhone", true, ""},
		{"unknown domain, 403 with the message", false, unknownMessage, "user-identifier=alice@other.example&model-family=iPhone", false, unknownMessage},
		{"unknown domain, 403 by default", false, "", "user-identifier=alice@other.example&model-family=iPhone", false,
			"Accounts of other.example cannot enroll devices with this organization."},
		{"subdomain, 404", true, "", "user-identifier=alice@sub.example.com", true, ""},
		{"malformed identifier, 404 mode", true, "", "user-identifier=alice@corp@example.com&model-family=iPhone", false, badIdentifier},
		{"malformed identifier keeps its message", false, unknownMessage, "user-identifier=@example.com", false, badIdentifier},
		{"missing identifier, 404 mode", true, "", "model-family=iPhone", false, badIdentifier},
		{"repeated identifier, 404 mode", true, "", "user-identifier=alice@example.com&user-identifier=bob@example.com", false,
			"This device sent a request the server cannot handle."},
		{"AppleTV, 404 mode", true, "", "user-identifier=alice@example.com&model-family=AppleTV", false,
			"This kind of device cannot be enrolled with an account."},
		{"AppleTV keeps its message", false, unknownMessage, "user-identifier=alice@example.com&model-family=AppleTV", false,
			"This kind of device cannot be enrolled with an account."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *gateway.Config) {
				c.DiscoveryNotFound = tt.notFound
				c.DiscoveryUnknownMessage = tt.message
			})
			e.logs.TakeAll()
			w := e.mustServe(discoveryRequest(http.MethodGet, tt.query), failNext(t))
			if tt.want404 {
				assertNotFound(t, w)
			} else {
				assertWellKnownFailed(t, w, tt.want)
			}
			refused := e.logs.FilterMessage("discovery refused").All()
			if len(refused) != 1 {
				t.Fatalf("%d 'discovery refused' log entries, want 1", len(refused))
			}
			if got := refused[0].ContextMap()["not_found"]; got != tt.want404 {
				t.Errorf("logged not_found %v, want %v", got, tt.want404)
			}
		})
	}
}

// testPolicy is the policy of the gateway's policy tests; its modes give
// iPad adde.
func testPolicy() *policy.Policy {
	return &policy.Policy{
		Rules: []policy.Rule{
			{Name: "contractors", Domains: []string{"contractors.example.com"}, Deny: true, Message: "Contractors cannot enroll devices here."},
			{Name: "mute", Domains: []string{"guests.example.com"}, Deny: true},
			// Undecidable before sign-in: discovery skips it.
			{Name: "interns", Domains: []string{"example.com"}, Families: []string{"Mac"}, Deny: true,
				Claims: []policy.ClaimMatch{{Claim: "groups", Values: []string{"interns"}}}},
			{Name: "macs", Domains: []string{"example.com"}, Families: []string{"Mac"}, Mode: "adde"},
			// An allowing rule with claims answers optimistically.
			{Name: "vision", Domains: []string{"example.com"}, Families: []string{"RealityDevice"}, Mode: "adde",
				Claims: []policy.ClaimMatch{{Claim: "groups", Values: []string{"xr"}}}},
			{Name: "org phones", Domains: []string{"example.org"}, Mode: "byod"},
			{Name: "staff", Domains: []string{"example.com"}},
		},
		Modes: policy.Modes{Default: "byod", ByFamily: map[string]string{"iPad": "adde", "iPhone": "adde"}},
	}
}

func TestDiscoveryPolicy(t *testing.T) {
	const base = "https://mdm.example.com/mdmauth/enroll/"
	tests := []struct {
		name    string
		query   string
		version string // "" for a refusal
		url     string // BaseURL, or the 403 message
		rule    string
		unknown bool // no rule matches: 404 in the 404 mode
	}{
		{"rule mode", "user-identifier=alice@example.com&model-family=Mac", "mdm-adde", base + "adde?model-family=Mac", "macs", false},
		{"claim rule allows optimistically", "user-identifier=alice@example.com&model-family=RealityDevice", "mdm-adde", base + "adde?model-family=RealityDevice", "vision", false},
		{"family mode", "user-identifier=alice@example.com&model-family=iPad", "mdm-adde", base + "adde?model-family=iPad", "staff", false},
		{"rule mode over family mode", "user-identifier=bob@example.org&model-family=iPhone", "mdm-byod", base + "byod?model-family=iPhone", "org phones", false},
		{"default mode", "user-identifier=alice@example.com", "mdm-byod", base + "byod", "staff", false},
		{"domain case ignored", "user-identifier=alice@Example.COM&model-family=iPhone", "mdm-adde", base + "adde?model-family=iPhone", "staff", false},
		{"deny with the rule's message", "user-identifier=carol@contractors.example.com&model-family=iPhone", "", "Contractors cannot enroll devices here.", "", false},
		{"deny without a message", "user-identifier=guest@guests.example.com&model-family=iPad", "", "Your organization does not allow enrolling this device.", "", false},
		{"no rule", "user-identifier=eve@example.net&model-family=iPhone", "", "Accounts of example.net cannot enroll this device with this organization.", "", true},
	}
	for _, notFound := range []bool{false, true} {
		e := newEnv(t, func(c *gateway.Config) {
			c.Domains = nil
			c.Policy = testPolicy()
			c.DiscoveryNotFound = notFound
		})
		for _, tt := range tests {
			name := tt.name
			if notFound {
				name += ", 404 mode"
			}
			t.Run(name, func(t *testing.T) {
				e.logs.TakeAll()
				w := e.mustServe(discoveryRequest(http.MethodGet, tt.query), failNext(t))
				switch {
				case tt.version != "":
					want := string(apple.DiscoveryResponse(apple.Mode(tt.version[len("mdm-"):]), tt.url))
					if w.Code != http.StatusOK || w.Body.String() != want {
						t.Fatalf("got %d %s, want 200 %s", w.Code, w.Body, want)
					}
					answered := e.logs.FilterMessage("discovery answered").All()
					if len(answered) != 1 || answered[0].ContextMap()["rule"] != tt.rule {
						t.Errorf("answered log entries %v, want one naming rule %q", answered, tt.rule)
					}
				case tt.unknown && notFound:
					assertNotFound(t, w)
				default:
					assertWellKnownFailed(t, w, tt.url)
				}
			})
		}
	}
}

// TestDiscoveryPolicyAndDomains: the discovery domains still bound a
// policy: a domain outside them is unknown before any rule is read.
func TestDiscoveryPolicyAndDomains(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) {
		c.Domains = []string{"example.com"}
		c.Policy = testPolicy()
		c.DiscoveryNotFound = true
	})
	assertNotFound(t, e.mustServe(discoveryRequest(http.MethodGet, "user-identifier=bob@example.org&model-family=iPhone"), failNext(t)))
	w := e.mustServe(discoveryRequest(http.MethodGet, "user-identifier=alice@example.com&model-family=Mac"), failNext(t))
	if want := `{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/mdmauth/enroll/adde?model-family=Mac"}]}`; w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("got %d %s, want 200 %s", w.Code, w.Body, want)
	}
}

func TestNewPolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*gateway.Config)
		want string
	}{
		{"unknown profile", func(c *gateway.Config) {
			c.Policy = &policy.Policy{Rules: []policy.Rule{{Name: "kiosks", Profile: "kiosk"}}}
		}, `policy: kiosks: unknown enrollment profile "kiosk"`},
		{"bad family", func(c *gateway.Config) {
			c.Policy = &policy.Policy{Rules: []policy.Rule{{Families: []string{"Watch"}}}}
		}, `policy: rule 1: unknown model family "Watch"`},
		{"bad mode", func(c *gateway.Config) {
			c.Policy = &policy.Policy{Rules: []policy.Rule{{Mode: "BYOD"}}}
		}, `policy: rule 1: mode "BYOD"`},
		{"deny with a profile", func(c *gateway.Config) {
			c.Templates = map[string]*profile.Template{"kiosk": c.Template}
			c.Policy = &policy.Policy{Rules: []policy.Rule{{Deny: true, Profile: "kiosk"}}}
		}, "a deny rule takes no mode, profile, max_devices or required_app_id"},
		{"no policy and no domains", func(c *gateway.Config) { c.Domains = nil }, "discovery needs at least one domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := gateway.Config{Domains: []string{"example.com"}, Template: loadTemplate(t)}
			tt.edit(&cfg)
			_, err := gateway.New(cfg, gateway.Deps{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
