package checker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/checker"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// check runs the checker as alice@example.com against base with a client
// trusting the test servers.
func check(t *testing.T, srv *httptest.Server, base, family string) checker.Report {
	t.Helper()
	rep, err := checker.Check(ctx(t), checker.Options{
		Identifier: "alice@example.com", ModelFamily: family, DiscoveryBase: base, HTTPClient: srv.Client(),
	})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return rep
}

// expectFindings requires a finding per want ("step: substring", prefixed
// "✗ " for a fatal one), exactly as many fatal findings as fatal wants, and
// OK only when none is fatal.
func expectFindings(t *testing.T, rep checker.Report, want []string) {
	t.Helper()
	fatal := 0
	for _, w := range want {
		isFatal := strings.HasPrefix(w, "✗ ")
		if isFatal {
			fatal++
		}
		step, sub, _ := strings.Cut(strings.TrimPrefix(w, "✗ "), ": ")
		found := false
		for _, f := range rep.Findings {
			if f.Step == step && f.Fatal == isFatal && strings.Contains(f.Problem, sub) && f.Fix != "" {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no finding %q", w)
		}
	}
	if got := len(rep.Fatal()); got != fatal {
		t.Errorf("%d fatal findings, want %d", got, fatal)
	}
	if rep.OK != (fatal == 0) {
		t.Errorf("OK = %t with %d fatal findings", rep.OK, fatal)
	}
	if t.Failed() {
		for _, f := range rep.Findings {
			t.Logf("  %s", f)
		}
	}
}

// The conforming deployment passes without a single finding, and the
// checker asked it the way a device does.
func TestCheckConformingDeployment(t *testing.T) {
	for _, tc := range []struct {
		name, family, product, method string
		oauth2                        bool
		esso                          bool
	}{
		{"web sign-in", "iPhone", "iPhone17,2", "apple-as-web", false, false},
		{"oauth2", "iPad", "iPad16,3", "apple-oauth2", true, false},
		{"enrollment SSO", "iPhone", "iPhone17,2", "apple-as-web", false, true},
		{"mac", "Mac", "Mac14,2", "apple-as-web", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &deployment{OAuth2: tc.oauth2}
			if tc.esso {
				d.ESSO = validESSO()
			}
			newDeployment(t, d)
			rep := check(t, d.Server, d.URL, tc.family)
			if !rep.OK || len(rep.Findings) != 0 {
				t.Fatalf("OK = %t, findings %v", rep.OK, rep.Findings)
			}
			if rep.Version != "mdm-byod" || rep.BaseURL != d.BaseURL() || rep.Method != tc.method || len(rep.Redirects) != 0 {
				t.Errorf("report %+v", rep)
			}
			if want := d.URL + "/.well-known/com.apple.remotemanagement?user-identifier=alice@example.com&model-family=" + tc.family; rep.DiscoveryURL != want {
				t.Errorf("DiscoveryURL %q, want %q", rep.DiscoveryURL, want)
			}
			if (rep.ESSOURL != "") != tc.esso {
				t.Errorf("ESSOURL %q", rep.ESSOURL)
			}
			reqs := d.Requests()
			wantReqs := 2
			if tc.esso {
				wantReqs = 3
			}
			if len(reqs) != wantReqs {
				t.Fatalf("requests %+v", reqs)
			}
			for _, r := range reqs {
				if r.UserAgent != "DeviceManagementClient/1.0" || r.HasAuthorization || r.HasCookie {
					t.Errorf("request %+v", r)
				}
			}
			if q := reqs[0].RawQuery; q != "user-identifier=alice@example.com&model-family="+tc.family {
				t.Errorf("discovery query %q", q)
			}
			post := reqs[1]
			if post.Method != http.MethodPost || post.ContentType != "application/pkcs7-signature" || post.SignatureErr != "" ||
				post.SignedContent["PRODUCT"] != tc.product || post.SignedContent["LANGUAGE"] == "" || post.SignedContent["VERSION"] == "" {
				t.Errorf("enrollment POST %+v", post)
			}
		})
	}
}

// The emulator's own fake server passes too.
func TestCheckDeviceTestServer(t *testing.T) {
	for _, o := range []devicetest.Options{{}, {OAuth2: true}, {ESSO: validESSO()}} {
		srv := devicetest.New(o)
		rep := check(t, srv.Server, srv.URL, "iPhone")
		srv.Close()
		if !rep.OK || len(rep.Findings) != 0 {
			t.Errorf("options %+v: OK = %t, findings %v", o, rep.OK, rep.Findings)
		}
	}
}

// hook builds a deployment hook answering stage with fn.
type hook func(d *deployment, w http.ResponseWriter, r *http.Request) bool

func TestCheckBrokenDeployments(t *testing.T) {
	webChallenge := func(d *deployment) string {
		return `Bearer method="apple-as-web", url="` + d.URL + `/mdmauth/sign-in/FLOW"`
	}
	unauthorized := func(values ...string) hook {
		return func(d *deployment, w http.ResponseWriter, r *http.Request) bool {
			for _, v := range values {
				w.Header().Add("WWW-Authenticate", strings.ReplaceAll(v, "{URL}", d.URL))
			}
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
	}
	discoveryBody := func(ct, body string) hook {
		return func(d *deployment, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Cache-Control", "no-store")
			if ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			w.Write([]byte(strings.ReplaceAll(body, "{BASE}", d.BaseURL())))
			return true
		}
	}
	status := func(code int, ct, body string) hook {
		return func(d *deployment, w http.ResponseWriter, r *http.Request) bool {
			if ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			w.WriteHeader(code)
			w.Write([]byte(body))
			return true
		}
	}
	tests := []struct {
		name   string
		family string
		oauth2 bool
		esso   []byte
		stage  string
		hook   hook
		want   []string
	}{
		{name: "wrong content type", stage: "discovery", hook: discoveryBody("text/plain; charset=utf-8", `{"Servers":[{"Version":"mdm-byod","BaseURL":"{BASE}"}]}`),
			want: []string{`✗ discovery: Content-Type "text/plain; charset=utf-8": devices require application/json`}},
		{name: "no content type", stage: "discovery", hook: func(d *deployment, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Cache-Control", "no-store")
			w.Header()["Content-Type"] = nil // no sniffing
			w.Write(d.DiscoveryAnswer())
			return true
		}, want: []string{`✗ discovery: Content-Type "": devices require application/json`}},
		{name: "extra keys, all reported", stage: "discovery",
			hook: discoveryBody("application/json", `{"Servers":[{"Version":"mdm-byod","BaseURL":"{BASE}","Name":"MDM"}],"Organization":"Example"}`),
			want: []string{`✗ discovery: unexpected top-level key "Organization"`, `✗ discovery: unexpected key "Name" in the server entry`}},
		{name: "two servers", stage: "discovery",
			hook: discoveryBody("application/json", `{"Servers":[{"Version":"mdm-byod","BaseURL":"{BASE}"},{"Version":"mdm-adde","BaseURL":"{BASE}"}]}`),
			want: []string{`✗ discovery: "Servers" has 2 entries: devices need exactly one`}},
		{name: "zero servers", stage: "discovery", hook: discoveryBody("application/json", `{"Servers":[]}`),
			want: []string{`✗ discovery: "Servers" is empty`}},
		{name: "unknown version", stage: "discovery", hook: discoveryBody("application/json", `{"Servers":[{"Version":"byod","BaseURL":"{BASE}"}]}`),
			want: []string{`✗ discovery: Version "byod"`}},
		{name: "http BaseURL", stage: "discovery", hook: func(d *deployment, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"Servers":[{"Version":"mdm-byod","BaseURL":"` + strings.Replace(d.BaseURL(), "https:", "http:", 1) + `"}]}`))
			return true
		}, want: []string{`✗ discovery: devices only use https`}},
		{name: "no cache-control is a warning", stage: "discovery", hook: func(d *deployment, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			w.Write(d.DiscoveryAnswer())
			return true
		}, want: []string{"discovery: no Cache-Control: no-store"}},
		{name: "refused with a message", stage: "discovery",
			hook: status(403, "application/json", `{"code":"com.apple.well-known.failed","message":"Ask IT to enable your account.","description":"not in group"}`),
			want: []string{`✗ discovery: the deployment refuses alice@example.com (403 com.apple.well-known.failed); the device shows "Ask IT to enable your account." (description: "not in group")`}},
		{name: "refused without JSON", stage: "discovery", hook: status(403, "text/html", "<h1>Forbidden</h1>"),
			want: []string{`✗ discovery: 403 with Content-Type "text/html": a device only reads 403 bodies sent as application/json`}},
		{name: "refused with a wrong code", stage: "discovery", hook: status(403, "application/json", `{"code":"forbidden","message":"no"}`),
			want: []string{`✗ discovery: 403 with code "forbidden"`}},
		{name: "not found", stage: "discovery", hook: status(404, "text/plain", "404 page not found"),
			want: []string{"✗ discovery: answered 404 Not Found: iOS 18.2, macOS 15.2 and later then ask Apple Business Manager"}},
		{name: "server error", stage: "discovery", hook: status(500, "", ""), want: []string{"✗ discovery: answered HTTP 500: devices need 200"}},
		{name: "200 on the enrollment POST", stage: "enroll", hook: status(200, "application/x-apple-aspen-config", "<plist/>"),
			want: []string{`✗ enroll: the first enrollment POST (no Authorization) was answered 200 (Content-Type "application/x-apple-aspen-config")`}},
		{name: "enrollment refused", stage: "enroll", hook: status(403, "application/json", `{"code":"policy","message":"Not on this device."}`),
			want: []string{`✗ enroll: the enrollment URL refuses this device (403 "policy"); the device shows "Not on this device."`}},
		{name: "enrollment 400", stage: "enroll", hook: status(400, "text/plain", "cannot parse form"),
			want: []string{"✗ enroll: the enrollment POST was answered 400 Bad Request: cannot parse form"}},
		{name: "302 on the enrollment POST", stage: "enroll", hook: func(d *deployment, w http.ResponseWriter, r *http.Request) bool {
			if r.URL.RawQuery != "" || r.Method != http.MethodPost {
				return false
			}
			http.Redirect(w, r, enrollPath+"?moved=1", http.StatusFound)
			return true
		}, want: []string{"✗ enroll: is redirected with HTTP 302, which drops the body"}},
		{name: "401 without a challenge", stage: "enroll", hook: unauthorized(),
			want: []string{"✗ challenge: the 401 has no WWW-Authenticate header"}},
		{name: "lowercase bearer", stage: "enroll", hook: unauthorized(`bearer method="apple-as-web", url="{URL}/mdmauth/sign-in/FLOW"`),
			want: []string{`✗ challenge: auth scheme "bearer": devices compare "Bearer" case-sensitively`}},
		{name: "two headers", stage: "enroll", hook: unauthorized(`Bearer method="apple-as-web", url="{URL}/mdmauth/sign-in/FLOW"`, `Basic realm="mdm"`),
			want: []string{`✗ challenge: the 401 has 2 WWW-Authenticate headers ("Bearer method=`}},
		{name: "quoting and separators", stage: "enroll", hook: unauthorized(`Bearer method=apple-as-web,url="{URL}/mdmauth/sign-in/FLOW"`),
			want: []string{"✗ challenge: the value of method is not quoted", `✗ challenge: parameters separated by "," instead of ", "`}},
		{name: "missing redirect-url", oauth2: true, stage: "enroll",
			hook: unauthorized(`Bearer method="apple-oauth2", authorization-url="{URL}/oauth/authorize", token-url="{URL}/oauth/token", client-id="mdm"`),
			want: []string{"✗ challenge: apple-oauth2 challenge without redirect-url"}},
		{name: "redirect-uri instead of redirect-url", oauth2: true, stage: "enroll",
			hook: unauthorized(`Bearer method="apple-oauth2", authorization-url="{URL}/oauth/authorize", token-url="{URL}/oauth/token", redirect-uri="apple-remotemanagement-user-login:/oauth2/redirection", client-id="mdm"`),
			want: []string{"✗ challenge: parameter redirect-uri: devices read redirect-url"}},
		{name: "oauth2 missing client-id and http token-url", oauth2: true, stage: "enroll",
			hook: unauthorized(`Bearer method="apple-oauth2", authorization-url="{URL}/oauth/authorize", token-url="http://idp.example.com/token", redirect-url="apple-remotemanagement-user-login:/oauth2/redirection"`),
			want: []string{"✗ challenge: apple-oauth2 challenge without client-id", `✗ challenge: token-url "http://idp.example.com/token" is not https`}},
		{name: "unknown method", stage: "enroll", hook: unauthorized(`Bearer method="apple-web", url="{URL}/s"`),
			want: []string{`✗ challenge: unknown method "apple-web"`}},
		{name: "web challenge without url", stage: "enroll", hook: unauthorized(`Bearer method="apple-as-web"`),
			want: []string{"✗ challenge: apple-as-web challenge without url"}},
		{name: "esso document invalid", esso: func() []byte {
			f := devicetest.ESSOFields(false)
			delete(f, "iTunesStoreID")
			return devicetest.ESSODocument(f)
		}(), want: []string{"✗ esso: is invalid: no iTunesStoreID"}},
		{name: "esso document not JSON", stage: "esso", esso: validESSO(), hook: status(200, "text/html", "<html></html>"),
			want: []string{`✗ esso: is invalid: Enrollment SSO document Content-Type "text/html", want application/json`}},
		{name: "esso document missing", stage: "esso", esso: validESSO(), hook: status(404, "text/plain", "not found"),
			want: []string{"✗ esso: answered HTTP 404: the device needs 200"}},
		{name: "esso offered to a Mac", family: "Mac", esso: validESSO(),
			want: []string{"✗ esso: the enrollment 401 for a Mac carries X-Apple-MDM-ESSO"}},
		{name: "developer esso problems are warnings", stage: "enroll", hook: func(d *deployment, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("WWW-Authenticate", webChallenge(d))
			w.Header().Set("X-Apple-MDM-ESSO-Developer", d.URL+"/mdmauth/esso")
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}, esso: validESSO(), want: []string{"esso: test devices only (X-Apple-MDM-ESSO-Developer): the Enrollment SSO document", "esso: no AppIDs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &deployment{OAuth2: tc.oauth2, ESSO: tc.esso}
			if tc.hook != nil {
				d.Hook = func(stage string, w http.ResponseWriter, r *http.Request) bool {
					return stage == tc.stage && tc.hook(d, w, r)
				}
			}
			newDeployment(t, d)
			family := tc.family
			if family == "" {
				family = "iPhone"
			}
			rep := check(t, d.Server, d.URL, family)
			expectFindings(t, rep, tc.want)
		})
	}
}

// An organization's website that hands discovery to the deployment.
func TestCheckDiscoveryRedirects(t *testing.T) {
	tests := []struct {
		name       string
		identifier string
		location   func(d *deployment, r *http.Request) string
		status     int
		want       []string
		redirects  int
	}{
		{name: "query carried", status: http.StatusPermanentRedirect, redirects: 1,
			location: func(d *deployment, r *http.Request) string {
				return d.URL + r.URL.Path + "?" + r.URL.RawQuery
			}},
		{name: "query carried, relative first, 302", status: http.StatusFound, redirects: 2,
			location: func(d *deployment, r *http.Request) string {
				if r.URL.Path == "/.well-known/moved" {
					return d.URL + "/.well-known/com.apple.remotemanagement?" + r.URL.RawQuery
				}
				return "moved?" + r.URL.RawQuery
			}},
		{name: "redirect drops the query", status: http.StatusMovedPermanently, redirects: 1,
			location: func(d *deployment, r *http.Request) string { return d.URL + r.URL.Path },
			want: []string{
				"✗ redirect: does not carry user-identifier and model-family: a device does not copy the query onto the new URL",
				"✗ discovery: the deployment refuses alice@example.com",
			}},
		{name: "model-family dropped", status: http.StatusPermanentRedirect, redirects: 1,
			location: func(d *deployment, r *http.Request) string {
				return d.URL + r.URL.Path + "?user-identifier=" + url.QueryEscape(r.URL.Query().Get("user-identifier"))
			},
			want: []string{"✗ redirect: does not carry model-family", "✗ discovery: the deployment refuses"}},
		{name: "plus turned into a space", identifier: "a+b@example.com", status: http.StatusPermanentRedirect, redirects: 1,
			location: func(d *deployment, r *http.Request) string {
				q := r.URL.Query() // form decoding: '+' becomes a space
				return d.URL + r.URL.Path + "?user-identifier=" + url.PathEscape(q.Get("user-identifier")) + "&model-family=" + q.Get("model-family")
			},
			want: []string{`✗ redirect: the redirect changes user-identifier from "a+b@example.com" to "a b@example.com"`}},
		{name: "no Location", status: http.StatusFound,
			location: func(*deployment, *http.Request) string { return "" },
			want:     []string{"✗ redirect: answered HTTP 302 without a Location header"}},
		{name: "to http", status: http.StatusFound, redirects: 1,
			location: func(d *deployment, r *http.Request) string {
				return strings.Replace(d.URL, "https:", "http:", 1) + r.URL.Path + "?" + r.URL.RawQuery
			},
			want: []string{"✗ redirect: devices only follow https"}},
		{name: "loop", status: http.StatusFound, redirects: 10,
			location: func(d *deployment, r *http.Request) string { return r.URL.String() },
			want:     []string{"✗ redirect: more than 10 redirects"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeployment(t, &deployment{})
			website := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if loc := tc.location(d, r); loc != "" {
					w.Header().Set("Location", loc)
				}
				w.WriteHeader(tc.status)
			}))
			defer website.Close()
			if tc.name == "loop" {
				d.Close()
				d = &deployment{Server: website}
			}
			identifier := tc.identifier
			if identifier == "" {
				identifier = "alice@example.com"
			}
			rep, err := checker.Check(ctx(t), checker.Options{Identifier: identifier, DiscoveryBase: website.URL, HTTPClient: website.Client()})
			if err != nil {
				t.Fatal(err)
			}
			expectFindings(t, rep, tc.want)
			if len(rep.Redirects) != tc.redirects {
				t.Errorf("redirects %q", rep.Redirects)
			}
			if tc.want == nil && (rep.Method != "apple-as-web" || rep.BaseURL != d.BaseURL()) {
				t.Errorf("report %+v", rep)
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	d := newDeployment(t, &deployment{})
	rep := check(t, d.Server, d.URL, "iPhone")
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["ok"] != true || m["version"] != "mdm-byod" || m["method"] != "apple-as-web" || m["base_url"] != d.BaseURL() {
		t.Errorf("JSON %s", b)
	}
}
