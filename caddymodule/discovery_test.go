package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// wellKnown is Apple's service discovery path.
const wellKnown = "/.well-known/com.apple.remotemanagement"

// TestUnmarshalDiscoveryCaddyfile checks the mdm_discovery handler's fields
// parsed from each option.
func TestUnmarshalDiscoveryCaddyfile(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want DiscoveryHandler
	}{
		{"redirect", "redirect https://mdm.example.com\ndomains example.com example.org\ndomains example.net",
			DiscoveryHandler{Redirect: "https://mdm.example.com", Discovery: Discovery{Domains: []string{"example.com", "example.org", "example.net"}}}},
		{"base_url with modes", "base_url https://mdm.example.com/mdmauth\ndomains example.com\nmode adde\nmode iPhone iPad byod",
			DiscoveryHandler{BaseURL: "https://mdm.example.com/mdmauth", Discovery: Discovery{
				Domains: []string{"example.com"}, Mode: "adde", ModelModes: map[string]string{"iPhone": "byod", "iPad": "byod"},
			}}},
		{"unknown 404", "redirect {env.MDM_HOST}\ndomains example.com\nunknown 404",
			DiscoveryHandler{Redirect: "{env.MDM_HOST}", Discovery: Discovery{Domains: []string{"example.com"}, Unknown: "404"}}},
		{"unknown 403 with a message", "redirect https://mdm.example.com\ndomains example.com\nunknown 403 \"Use your work account.\"",
			DiscoveryHandler{Redirect: "https://mdm.example.com", Discovery: Discovery{Domains: []string{"example.com"}, Unknown: "403", UnknownMessage: "Use your work account."}}},
		{"policy", "redirect https://mdm.example.com\npolicy {\nrule guests {\ndomains guests.example.com\ndeny \"No.\"\n}\nrule {\nfamilies Mac\nmode adde\n}\n}",
			DiscoveryHandler{Redirect: "https://mdm.example.com", Policy: &Policy{Rules: []PolicyRule{
				{Name: "guests", Domains: []string{"guests.example.com"}, Deny: true, Message: "No."},
				{Families: []string{"Mac"}, Mode: "adde"},
			}}}},
		{"limits", "redirect https://mdm.example.com\ndomains example.com\nlimits {\ndiscovery 10/m burst 5\ndiscovery_user off\n}",
			DiscoveryHandler{Redirect: "https://mdm.example.com", Discovery: Discovery{Domains: []string{"example.com"}},
				Limits: &Limits{Discovery: "10/m burst 5", DiscoveryUser: "off"}}},
		{"limits off", "redirect https://mdm.example.com\nlimits off",
			DiscoveryHandler{Redirect: "https://mdm.example.com", Limits: &Limits{Off: true}}},
		{"empty block", "", DiscoveryHandler{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got DiscoveryHandler
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mdm_discovery {\n" + tt.src + "\n}")); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// validDiscovery returns an mdm_discovery handler config that provisions.
func validDiscovery() map[string]any {
	return map[string]any{
		"handler":   "mdm_discovery",
		"redirect":  "https://mdm.example.com",
		"discovery": map[string]any{"domains": []string{"example.com"}},
	}
}

// TestDiscoveryProvisionErrors checks that caddy.Validate refuses every
// mdm_discovery misconfiguration with a message naming the problem.
func TestDiscoveryProvisionErrors(t *testing.T) {
	const exactlyOne = "mdm_discovery: set exactly one of redirect and base_url"
	baseURL := func(u string) func(map[string]any) {
		return func(h map[string]any) {
			delete(h, "redirect")
			h["base_url"] = u
		}
	}
	redirect := func(u string) func(map[string]any) { return func(h map[string]any) { h["redirect"] = u } }
	rules := func(rules ...map[string]any) func(map[string]any) {
		return func(h map[string]any) { h["policy"] = map[string]any{"rules": rules} }
	}
	tests := []struct {
		name   string
		change func(h map[string]any)
		want   []string
	}{
		{"redirect and base_url", func(h map[string]any) { h["base_url"] = "https://mdm.example.com/mdmauth" }, []string{exactlyOne}},
		{"a sign-in limit", func(h map[string]any) { h["limits"] = map[string]any{"sign_in": "1/m"} },
			[]string{"mdm_discovery limits: only discovery, discovery_user and max_keys apply"}},
		{"a bad rate", func(h map[string]any) { h["limits"] = map[string]any{"discovery": "fast"} }, []string{"mdm_discovery limits discovery:"}},
		{"neither redirect nor base_url", func(h map[string]any) { delete(h, "redirect") }, []string{exactlyOne}},
		{"redirect empty after expansion", redirect("{env.MDMAUTH_TEST_UNSET}"), []string{exactlyOne}},
		{"http redirect", redirect("http://mdm.example.com"), []string{`mdm_discovery: redirect "http://mdm.example.com" must be https://host[:port]`}},
		{"redirect with a path", redirect("https://mdm.example.com/mdmauth"), []string{`redirect "https://mdm.example.com/mdmauth" must be https://host[:port]`}},
		{"redirect with a query", redirect("https://mdm.example.com/?x=1"), []string{`redirect "https://mdm.example.com/?x=1" must be https://host[:port]`}},
		{"redirect without host", redirect("https://"), []string{`redirect "https://" must be https://host[:port]`}},
		{"redirect without scheme", redirect("mdm.example.com"), []string{`redirect "mdm.example.com" must be https://host[:port]`}},
		{"redirect without domains nor policy", func(h map[string]any) { h["discovery"] = map[string]any{} },
			[]string{"mdm_discovery: list the domains to redirect (discovery { domains … }) or a policy"}},
		{"redirect with an empty domain list", func(h map[string]any) { h["discovery"] = map[string]any{"domains": []string{}} },
			[]string{"mdm_discovery: list the domains to redirect"}},
		{"http base_url", baseURL("http://mdm.example.com/mdmauth"),
			[]string{`mdm_discovery: base_url "http://mdm.example.com/mdmauth" must be https://host[:port]/prefix, without a trailing slash`}},
		{"base_url with a trailing slash", baseURL("https://mdm.example.com/mdmauth/"), []string{`base_url "https://mdm.example.com/mdmauth/" must be`}},
		{"base_url of the host only with a slash", baseURL("https://mdm.example.com/"), []string{`base_url "https://mdm.example.com/" must be`}},
		{"base_url with a query", baseURL("https://mdm.example.com/mdmauth?x=1"), []string{`base_url "https://mdm.example.com/mdmauth?x=1" must be`}},
		// base_url is used as written: anything url.Parse drops or escapes
		// would end up in every discovery answer's BaseURL, e.g.
		// "https://mdm.example.com/mdmauth#x/enroll/byod".
		{"base_url with a fragment", baseURL("https://mdm.example.com/mdmauth#x"), []string{`base_url "https://mdm.example.com/mdmauth#x" must be`}},
		{"base_url with an empty query", baseURL("https://mdm.example.com/mdmauth?"), []string{`base_url "https://mdm.example.com/mdmauth?" must be`}},
		{"base_url with user info", baseURL("https://user@mdm.example.com/mdmauth"), []string{`base_url "https://user@mdm.example.com/mdmauth" must be`}},
		{"base_url with a space", baseURL("https://mdm.example.com/mdm auth"), []string{`base_url "https://mdm.example.com/mdm auth" must be`}},
		{"base_url without domains nor policy", func(h map[string]any) {
			baseURL("https://mdm.example.com/mdmauth")(h)
			h["discovery"] = map[string]any{}
		}, []string{"discovery needs at least one domain (or a policy)"}},
		{"policy without rules", rules(), []string{"policy: at least one rule is needed"}},
		{"base_url policy without rules", func(h map[string]any) {
			baseURL("https://mdm.example.com/mdmauth")(h)
			rules()(h)
		}, []string{"policy: at least one rule is needed"}},
		{"rule with a bad family", rules(map[string]any{"families": []string{"iphone"}}),
			[]string{"mdm_discovery policy:", `rule 1: unknown model family "iphone"`}},
		{"rule with a family that cannot enroll", rules(map[string]any{"name": "tv", "families": []string{"AppleTV"}}),
			[]string{"mdm_discovery policy:", `tv: unknown model family "AppleTV"`}},
		{"rule with a bad mode", rules(map[string]any{"mode": "mdm-adde"}), []string{"mdm_discovery policy:", `mode "mdm-adde": want byod or adde`}},
		{"deny rule with a mode", rules(map[string]any{"deny": true, "mode": "adde"}),
			[]string{"mdm_discovery policy:", "a deny rule takes no mode"}},
		{"rule with claims without values", rules(map[string]any{"claims": []any{map[string]any{"claim": "groups"}}}),
			[]string{"mdm_discovery policy:", "a claim condition needs a claim and at least one value"}},
		{"bad default mode", func(h map[string]any) { h["discovery"].(map[string]any)["mode"] = "byod " },
			[]string{"discovery mode:"}},
		{"Watch family mode", func(h map[string]any) {
			h["discovery"].(map[string]any)["model_modes"] = map[string]string{"Watch": "byod"}
		}, []string{`model family "Watch" cannot enroll account-driven`}},
		{"unknown 404 with a message", func(h map[string]any) {
			h["discovery"].(map[string]any)["unknown"] = "404"
			h["discovery"].(map[string]any)["unknown_message"] = "Ask Apple."
		}, []string{"discovery unknown: a message goes with 403 only"}},
		{"unknown other status", func(h map[string]any) { h["discovery"].(map[string]any)["unknown"] = "410" },
			[]string{`discovery unknown: want 403 or 404, got "410"`}},
		{"unknown JSON field", func(h map[string]any) { h["domains"] = []string{"example.com"} }, []string{`unknown field "domains"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := validDiscovery()
			tt.change(h)
			err := caddy.Validate(testConfig(t, "", h))
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "http.handlers.mdm_discovery") {
				t.Errorf("error %q does not name the module", err)
			}
		})
	}
}

// TestDiscoveryCaddyfilesValidate adapts the mdm_discovery goldens' sources
// and provisions them with caddy.Validate.
func TestDiscoveryCaddyfilesValidate(t *testing.T) {
	for _, name := range []string{"discovery-redirect", "discovery-base-url"} {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", name+".caddyfile"))
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := adaptCaddyfile(t, name+".caddyfile", src)
			if err != nil {
				t.Fatal(err)
			}
			var cfg caddy.Config
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg.Admin = &caddy.AdminConfig{Disabled: true}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// provisionedDiscovery provisions an mdm_discovery handler config the way
// Caddy does.
func provisionedDiscovery(t *testing.T, h map[string]any) *DiscoveryHandler {
	t.Helper()
	ctx, err := caddy.ProvisionContext(&caddy.Config{Admin: &caddy.AdminConfig{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]any{}
	for k, v := range h {
		if k != "handler" {
			own[k] = v
		}
	}
	mod, err := ctx.LoadModuleByID("http.handlers.mdm_discovery", caddyconfig.JSON(own, nil))
	if err != nil {
		t.Fatalf("provisioning mdm_discovery: %v", err)
	}
	return mod.(*DiscoveryHandler)
}

// siteNext is the website behind mdm_discovery: it records the paths it
// serves.
type siteNext struct{ paths []string }

func (s *siteNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	s.paths = append(s.paths, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusOK)
	_, err := io.WriteString(w, "<h1>Example</h1>")
	return err
}

// serveSite runs one request to the website through h.
func serveSite(t *testing.T, h *DiscoveryHandler, method, target string) (*httptest.ResponseRecorder, *siteNext) {
	t.Helper()
	next := &siteNext{}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, httptest.NewRequest(method, target, nil), next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w, next
}

func TestDiscoveryHandlerPassesOtherPaths(t *testing.T) {
	for _, variant := range []string{"redirect", "base_url"} {
		h := validDiscovery()
		if variant == "base_url" {
			delete(h, "redirect")
			h["base_url"] = "https://mdm.example.com/mdmauth"
		}
		d := provisionedDiscovery(t, h)
		for _, target := range []string{
			"https://example.com/",
			"https://example.com/index.html?user-identifier=alice@example.com",
			"https://example.com/.well-known/apple-app-site-association",
			"https://example.com" + wellKnown + "/",
			"https://example.com" + wellKnown + "x?user-identifier=alice@example.com",
			"https://example.com/x" + wellKnown + "?user-identifier=alice@example.com",
		} {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				t.Run(variant+" "+method+" "+target, func(t *testing.T) {
					w, next := serveSite(t, d, method, target)
					u, _ := http.NewRequest(method, target, nil)
					if len(next.paths) != 1 || next.paths[0] != method+" "+u.URL.Path {
						t.Fatalf("next served %q, want exactly %s %s", next.paths, method, u.URL.Path)
					}
					if w.Code != http.StatusOK || w.Body.String() != "<h1>Example</h1>" || w.Header().Get("Location") != "" {
						t.Errorf("got %d %q Location %q, want the website's answer untouched", w.Code, w.Body, w.Header().Get("Location"))
					}
				})
			}
		}
	}
}

func TestDiscoveryHandlerRedirect(t *testing.T) {
	t.Setenv("MDMAUTH_TEST_MDM_HOST", "mdm.example.com:8443")
	h := validDiscovery()
	h["redirect"] = "https://{env.MDMAUTH_TEST_MDM_HOST}/"
	h["discovery"] = map[string]any{"domains": []string{"Example.COM."}, "unknown": "404"}
	d := provisionedDiscovery(t, h)
	const to = "https://mdm.example.com:8443" + wellKnown + "?"
	tests := []struct {
		name     string
		method   string
		query    string
		status   int
		location string
	}{
		{"iPhone", http.MethodGet, "user-identifier=a+b@example.com&model-family=iPhone", http.StatusPermanentRedirect,
			to + "user-identifier=a+b@example.com&model-family=iPhone"},
		{"HEAD, encoded identifier", http.MethodHead, "user-identifier=Alice%40Example.com&model-family=Mac", http.StatusPermanentRedirect,
			to + "user-identifier=Alice@Example.com&model-family=Mac"},
		{"reserved characters", http.MethodGet, "user-identifier=a%26b%3Dc@example.com", http.StatusPermanentRedirect,
			to + "user-identifier=a%26b%3Dc@example.com"},
		{"unknown domain", http.MethodGet, "user-identifier=alice@example.org&model-family=iPhone", http.StatusNotFound, ""},
		{"malformed identifier", http.MethodGet, "user-identifier=alice&model-family=iPhone", http.StatusForbidden, ""},
		{"POST", http.MethodPost, "user-identifier=alice@example.com", http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, next := serveSite(t, d, tt.method, "https://example.com"+wellKnown+"?"+tt.query)
			if len(next.paths) != 0 {
				t.Errorf("next served %q", next.paths)
			}
			if w.Code != tt.status || w.Header().Get("Location") != tt.location {
				t.Fatalf("got %d Location %q, want %d %q; body %q", w.Code, w.Header().Get("Location"), tt.status, tt.location, w.Body)
			}
			if tt.status != http.StatusMethodNotAllowed && w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", w.Header().Get("Cache-Control"))
			}
			if tt.status == http.StatusForbidden && !strings.Contains(w.Body.String(), `"code":"com.apple.well-known.failed"`) {
				t.Errorf("403 body %s, want com.apple.well-known.failed", w.Body)
			}
		})
	}
}

func TestDiscoveryHandlerRedirectPolicy(t *testing.T) {
	h := validDiscovery()
	h["discovery"] = map[string]any{"unknown": "403", "unknown_message": "Use your example.com account."}
	h["policy"] = map[string]any{"rules": []any{
		map[string]any{"name": "contractors", "domains": []string{"contractors.example.com"}, "deny": true, "message": "Contractors cannot enroll."},
		map[string]any{"domains": []string{"example.com"}, "families": []string{"iPhone", "Mac"}},
	}}
	d := provisionedDiscovery(t, h)
	tests := []struct {
		query    string
		status   int
		location string
		message  string
	}{
		{"user-identifier=alice@example.com&model-family=Mac", http.StatusPermanentRedirect,
			"https://mdm.example.com" + wellKnown + "?user-identifier=alice@example.com&model-family=Mac", ""},
		{"user-identifier=carol@contractors.example.com&model-family=iPhone", http.StatusForbidden, "", "Contractors cannot enroll."},
		{"user-identifier=alice@example.com&model-family=iPad", http.StatusForbidden, "", "Use your example.com account."},
		{"user-identifier=eve@example.net&model-family=iPhone", http.StatusForbidden, "", "Use your example.com account."},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			w, next := serveSite(t, d, http.MethodGet, "https://example.com"+wellKnown+"?"+tt.query)
			if len(next.paths) != 0 {
				t.Errorf("next served %q", next.paths)
			}
			if w.Code != tt.status || w.Header().Get("Location") != tt.location {
				t.Fatalf("got %d Location %q, want %d %q; body %q", w.Code, w.Header().Get("Location"), tt.status, tt.location, w.Body)
			}
			if tt.message == "" {
				return
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if body["code"] != "com.apple.well-known.failed" || body["message"] != tt.message {
				t.Errorf("body %v, want com.apple.well-known.failed with message %q", body, tt.message)
			}
		})
	}
}

func TestDiscoveryHandlerBaseURL(t *testing.T) {
	h := map[string]any{
		"handler":   "mdm_discovery",
		"base_url":  "https://mdm.example.com/mdmauth",
		"discovery": map[string]any{"domains": []string{"example.com"}, "mode": "byod", "model_modes": map[string]string{"Mac": "adde"}},
	}
	d := provisionedDiscovery(t, h)
	tests := []struct {
		query string
		want  string
	}{
		{"user-identifier=alice@example.com&model-family=iPhone",
			`{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod?model-family=iPhone"}]}`},
		{"user-identifier=alice@example.com&model-family=Mac",
			`{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/mdmauth/enroll/adde?model-family=Mac"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			// The website's own host does not leak into the answer.
			w, next := serveSite(t, d, http.MethodGet, "http://www.example.com:8080"+wellKnown+"?"+tt.query)
			if len(next.paths) != 0 {
				t.Errorf("next served %q", next.paths)
			}
			if w.Code != http.StatusOK || w.Body.String() != tt.want {
				t.Fatalf("got %d %s, want 200 %s", w.Code, w.Body, tt.want)
			}
			if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Content-Type %q Cache-Control %q", w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"))
			}
		})
	}
	w, _ := serveSite(t, d, http.MethodGet, "https://example.com"+wellKnown+"?user-identifier=eve@example.org")
	if w.Code != http.StatusForbidden {
		t.Errorf("unknown domain: status %d, want 403", w.Code)
	}
}

// Interface guard of the test's next handler.
var _ caddyhttp.Handler = (*siteNext)(nil)

// The website's discovery is an unauthenticated step too: limited per
// client address and per user identifier by default, 429 with
// Retry-After past the limit, and configurable or off.
func TestDiscoveryHandlerLimits(t *testing.T) {
	const query = "?model-family=iPhone&user-identifier="
	serve := func(d *DiscoveryHandler, addr, user string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "https://example.com"+wellKnown+query+user, nil)
		r.RemoteAddr = addr + ":40000"
		w := httptest.NewRecorder()
		if err := d.ServeHTTP(w, r, &siteNext{}); err != nil {
			t.Fatal(err)
		}
		return w
	}
	t.Run("defaults per user", func(t *testing.T) {
		d := provisionedDiscovery(t, validDiscovery())
		for i := 0; i < 10; i++ { // the default burst of discovery_user
			if w := serve(d, "192.0.2.1", "alice@example.com"); w.Code != http.StatusPermanentRedirect {
				t.Fatalf("request %d: %d", i, w.Code)
			}
		}
		w := serve(d, "192.0.2.2", "ALICE@example.com")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || w.Header().Get("Location") != "" {
			t.Fatalf("past the burst: %d, Retry-After %q, Location %q", w.Code, w.Header().Get("Retry-After"), w.Header().Get("Location"))
		}
		if w := serve(d, "192.0.2.2", "bob@example.com"); w.Code != http.StatusPermanentRedirect {
			t.Fatalf("another user: %d", w.Code)
		}
	})
	t.Run("per address", func(t *testing.T) {
		h := validDiscovery()
		h["limits"] = map[string]any{"discovery": "3/m burst 3", "discovery_user": "off"}
		d := provisionedDiscovery(t, h)
		for i := 0; i < 3; i++ {
			if w := serve(d, "192.0.2.1", fmt.Sprintf("u%d@example.com", i)); w.Code != http.StatusPermanentRedirect {
				t.Fatalf("request %d: %d", i, w.Code)
			}
		}
		if w := serve(d, "192.0.2.1", "z@example.com"); w.Code != http.StatusTooManyRequests {
			t.Fatalf("past the address's burst: %d", w.Code)
		}
		if w := serve(d, "192.0.2.9", "z@example.com"); w.Code != http.StatusPermanentRedirect {
			t.Fatalf("another address: %d", w.Code)
		}
	})
	t.Run("off", func(t *testing.T) {
		h := validDiscovery()
		h["limits"] = map[string]any{"off": true}
		d := provisionedDiscovery(t, h)
		for i := 0; i < 50; i++ {
			if w := serve(d, "192.0.2.1", "alice@example.com"); w.Code != http.StatusPermanentRedirect {
				t.Fatalf("request %d: %d", i, w.Code)
			}
		}
	})
}
