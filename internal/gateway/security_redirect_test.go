package gateway_test

// Open-redirect and header-injection tests of the gateway's redirecting
// and challenging endpoints: hostile Host headers and query values never
// choose where a device or browser is sent, and never split or reach a
// response header raw.

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/ratelimit"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/token"
)

// hostileHosts are Host headers an attacker may send (net/http refuses
// some of them on the wire; the gateway must not depend on that).
var hostileHosts = []string{
	"evil.example.com",
	"evil.example.com:443",
	"mdm.host@evil.example.com",
	"evil.example.com/mdm.host",
	`mdm.example.com", url="https://evil.example.com`,
	"mdm.example.com\r\nLocation: https://evil.example.com",
}

// noSplitHeaders fails when a header name or value carries CR, LF or NUL,
// or a value carries raw (when raw is long enough to be meaningful).
func noSplitHeaders(t *testing.T, h http.Header, raw string) {
	t.Helper()
	for k, vs := range h {
		for _, v := range vs {
			if strings.ContainsAny(k+v, "\r\n\x00") {
				t.Errorf("header %s: %q carries a control character", k, v)
			}
			if len(raw) >= 4 && strings.Contains(v, raw) {
				t.Errorf("header %s: %q reflects the raw value %q", k, v, raw)
			}
		}
	}
}

// wantRedirectTo checks that Location goes to exactly the discovery URL of
// to, with only the parameters discovery carries over, and returns them.
func wantRedirectTo(t *testing.T, w *httptest.ResponseRecorder, to string) url.Values {
	t.Helper()
	if w.Code != http.StatusPermanentRedirect {
		t.Fatalf("status %d, want 308; body %q", w.Code, w.Body)
	}
	loc := w.Header().Get("Location")
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("Location %q: %v", loc, err)
	}
	want, _ := url.Parse(to)
	if u.Scheme != want.Scheme || u.Host != want.Host || u.User != nil || u.Path != wellKnown || u.Fragment != "" || u.Opaque != "" {
		t.Fatalf("Location %q does not go to %s%s", loc, to, wellKnown)
	}
	if !strings.HasPrefix(loc, to+wellKnown+"?") {
		t.Errorf("Location %q does not start with %s%s?", loc, to, wellKnown)
	}
	q := u.Query()
	for k, v := range q {
		if k != "user-identifier" && k != "model-family" || len(v) != 1 {
			t.Errorf("Location %q carries %s=%q", loc, k, v)
		}
	}
	return q
}

// The discovery redirect (mdm_discovery redirect) goes only to its
// configured host, whatever the Host header and the query say; hostile
// identifiers are refused or carried over escaped, never raw.
func TestDiscoveryRedirectHostileRequests(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		status int
		ui     string // carried-over identifier, for 308
	}{
		{"plain", "user-identifier=alice@example.com", 308, "alice@example.com"},
		{"slashes in the local part", "user-identifier=%2F%2Fevil.example.com%2F@example.com", 308, "//evil.example.com/@example.com"},
		{"backslashes", "user-identifier=%5C%5Cevil.example.com@example.com", 308, `\\evil.example.com@example.com`},
		{"fragment", "user-identifier=alice%23@example.com", 308, "alice#@example.com"},
		{"query delimiters", "user-identifier=a%3Fx%3D1%26y@example.com", 308, "a?x=1&y@example.com"},
		{"quotes", "user-identifier=%22alice%22@example.com", 308, `"alice"@example.com`},
		{"angle brackets", "user-identifier=%3Cscript%3E@example.com", 308, "<script>@example.com"},
		{"URL as the local part", "user-identifier=https:%2F%2Fevil.example.com@example.com", 308, "https://evil.example.com@example.com"},
		{"other parameters", "user-identifier=alice@example.com&redirect=https://evil.example.com&url=%2F%2Fevil&next=x", 308, "alice@example.com"},
		{"second at sign", "user-identifier=alice@evil.example.com@example.com", 403, ""},
		{"foreign domain", "user-identifier=alice@evil.example.com", 403, ""},
		{"domain with a path", "user-identifier=alice@example.com%2F..%2Fevil", 403, ""},
		{"CR LF", "user-identifier=alice@example.com%0D%0ALocation:%20https://evil.example.com", 403, ""},
		{"NUL", "user-identifier=alice%00@example.com", 403, ""},
		{"line separator", "user-identifier=alice%E2%80%A8@example.com", 403, ""},
		{"very long", "user-identifier=" + strings.Repeat("a", 1000) + "@example.com", 403, ""},
		{"repeated", "user-identifier=alice@example.com&user-identifier=bob@evil.example.com", 403, ""},
		{"model family not known", "user-identifier=alice@example.com&model-family=iPhone%0D%0AX:y", 403, ""},
	}
	for _, withPolicy := range []bool{false, true} {
		for _, host := range append([]string{"example.com"}, hostileHosts...) {
			for _, tt := range tests {
				name := tt.name + " / Host " + strings.ReplaceAll(host, "\r\n", `\r\n`)
				if withPolicy {
					name += " / policy"
				}
				t.Run(name, func(t *testing.T) {
					d := &gateway.Discovery{Redirect: mdmHost, Domains: []string{"example.com"}, Log: zap.NewNop()}
					if withPolicy {
						d = &gateway.Discovery{Redirect: mdmHost, Policy: redirectPolicy(), Log: zap.NewNop()}
						if err := d.Policy.Validate(nil); err != nil {
							t.Fatal(err)
						}
					}
					r := httptest.NewRequest(http.MethodGet, "https://example.com"+wellKnown, nil)
					r.URL.RawQuery = tt.query + "&model-family=iPhone"
					if strings.Contains(tt.query, "model-family") {
						r.URL.RawQuery = tt.query
					}
					r.Host = host
					w := httptest.NewRecorder()
					d.ServeHTTP(w, r)
					noSplitHeaders(t, w.Header(), "")
					if strings.Contains(w.Header().Get("Location"), "evil") && !strings.Contains(tt.ui, "evil") {
						t.Errorf("Location %q names the attacker's host", w.Header().Get("Location"))
					}
					if tt.status != 308 {
						if w.Code != tt.status || w.Header().Get("Location") != "" {
							t.Fatalf("status %d Location %q, want %d without Location", w.Code, w.Header().Get("Location"), tt.status)
						}
						return
					}
					q := wantRedirectTo(t, w, mdmHost)
					if q.Get("user-identifier") != tt.ui || q.Get("model-family") != "iPhone" {
						t.Errorf("carried over %v, want user-identifier %q model-family iPhone", q, tt.ui)
					}
					if raw, _ := url.PathUnescape(strings.TrimPrefix(tt.query, "user-identifier=")); strings.ContainsAny(tt.ui, `/\#?&"<>:`) &&
						strings.Contains(w.Header().Get("Location"), raw) {
						t.Errorf("Location %q carries the identifier unescaped", w.Header().Get("Location"))
					}
				})
			}
		}
	}
}

// stubProvider serves only OpenID Connect discovery: enough for a sign-in
// start to build its authorization URL.
func stubProvider(t *testing.T) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                srv.URL,
			"authorization_endpoint":                srv.URL + "/authorize",
			"token_endpoint":                        srv.URL + "/token",
			"jwks_uri":                              srv.URL + "/jwks",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newProviderEnv is a gateway whose sign-in reaches a provider that
// answers discovery, with apple-oauth2 and the given public URL (nil: from
// each request).
func newProviderEnv(t *testing.T, public *url.URL, oauth2 bool) (*env, *httptest.Server) {
	t.Helper()
	idp := stubProvider(t)
	e := newEnv(t)
	rp, err := signin.NewRP(signin.OIDCConfig{Issuer: idp.URL, ClientID: "mdmauth", HTTPClient: idp.Client(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	web := &signin.Web{RP: rp, Tokens: e.tokens, Store: e.store, Signer: e.signer, Now: e.clock.Now, Log: zap.NewNop()}
	cfg := gateway.Config{
		Domains:   []string{"example.com"},
		Template:  loadTemplate(t),
		Protect:   []string{protect},
		PublicURL: public,
	}
	if oauth2 {
		withOAuth2(&cfg)
		web.OAuth2 = &signin.OAuth2{ClientID: cfg.OAuth2.ClientID, RedirectURL: cfg.OAuth2.RedirectURL,
			Tokens: &token.OAuth{M: e.tokens, Key: rotationKey}}
	}
	gw, err := gateway.New(cfg, gateway.Deps{Web: web, Tokens: e.tokens, Store: e.store, Signer: e.signer, Log: zap.NewNop(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	return e, idp
}

// The sign-in start redirects only to the provider's authorization
// endpoint; with public_url, the redirect_uri it registers is the public
// callback whatever the Host header says. The OAuth 2 authorization
// endpoint never redirects for a foreign redirect_uri, and the callback
// never redirects without a pending sign-in.
func TestSignInRedirectsWithHostileHost(t *testing.T) {
	public, err := url.Parse("https://mdm.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range []*url.URL{public, nil} {
		for _, host := range hostileHosts {
			name := strings.ReplaceAll(host, "\r\n", `\r\n`)
			if pub == nil {
				name += " / no public_url"
			}
			t.Run(name, func(t *testing.T) {
				e, idp := newProviderEnv(t, pub, true)
				v, err := e.signer.Encode(signin.Flow{Kind: signin.KindEnroll, Mode: "byod", IssuedAt: e.clock.Now()})
				if err != nil {
					t.Fatal(err)
				}
				starts := map[string]string{
					"apple-as-web": origin + "/mdmauth/sign-in/" + v + "?user-identifier=alice@example.com&redirect_uri=https://evil.example.com/cb",
					"apple-oauth2": origin + "/mdmauth/oauth2/authorize?flow=" + v + "&response_type=code&client_id=mdmauth&redirect_uri=" +
						url.QueryEscape(signin.DefaultRedirectURL) + "&state=s&login_hint=https://evil.example.com",
				}
				for method, target := range starts {
					r := httptest.NewRequest(http.MethodGet, target, nil)
					r.Host = host
					w := e.mustServe(r, failNext(t))
					noSplitHeaders(t, w.Header(), "")
					if pub == nil && strings.ContainsAny(host, "@/\\\"#?% \r\n") {
						// No public_url: nothing is built from such a Host.
						if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
							t.Errorf("%s start: status %d, Location %q; want 400 without a redirect", method, w.Code, w.Header().Get("Location"))
						}
						continue
					}
					if w.Code != http.StatusFound {
						t.Fatalf("%s start: status %d, body %q", method, w.Code, w.Body)
					}
					u, err := url.Parse(w.Header().Get("Location"))
					if err != nil {
						t.Fatal(err)
					}
					if got := u.Scheme + "://" + u.Host + u.Path; got != idp.URL+"/authorize" || u.User != nil {
						t.Errorf("%s start redirects to %q, want the provider's authorization endpoint", method, w.Header().Get("Location"))
					}
					if pub != nil {
						if got := u.Query().Get("redirect_uri"); got != "https://mdm.example.com/mdmauth/oidc/callback" {
							t.Errorf("%s start: redirect_uri %q, want the public callback", method, got)
						}
					}
				}

				// A foreign redirect_uri at the authorization endpoint: an
				// error page, no redirect.
				r := httptest.NewRequest(http.MethodGet, origin+"/mdmauth/oauth2/authorize?flow="+v+
					"&response_type=code&client_id=mdmauth&redirect_uri=https%3A%2F%2Fevil.example.com%2Fcb&state=s", nil)
				r.Host = host
				w := e.mustServe(r, failNext(t))
				if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || strings.Contains(w.Body.String(), "evil") {
					t.Errorf("foreign redirect_uri: status %d Location %q", w.Code, w.Header().Get("Location"))
				}

				// A callback without a pending sign-in: an error page.
				r = httptest.NewRequest(http.MethodGet, origin+"/mdmauth/oidc/callback?code=c&state=unknown&redirect_uri=https://evil.example.com", nil)
				r.Host = host
				w = e.mustServe(r, failNext(t))
				if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
					t.Errorf("callback: status %d Location %q", w.Code, w.Header().Get("Location"))
				}
			})
		}
	}
}

// Every answer at the callback URL (which carries the provider's code)
// either is the sign-in's page with Referrer-Policy: no-referrer, or is
// plain text that loads nothing and so sends no Referer.
func TestCallbackAnswersSendNoReferer(t *testing.T) {
	e := newEnv(t)
	// One callback per hour: the later ones are answered 429.
	e.gw.SetLimits(gateway.Limits{Callback: ratelimit.Rate{Events: 1, Per: time.Hour, Burst: 1}})
	target := origin + "/mdmauth/oidc/callback?code=the-providers-code&state=s"
	for i, method := range []string{http.MethodGet, http.MethodPost, http.MethodGet} {
		w := e.mustServe(httptest.NewRequest(method, target, nil), failNext(t))
		// The sign-in's page (unknown state), then 405 and 429.
		if want := []int{http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusTooManyRequests}[i]; w.Code != want {
			t.Errorf("%s: status %d, want %d", method, w.Code, want)
		}
		h := w.Header()
		if strings.Contains(w.Body.String(), "the-providers-code") {
			t.Errorf("%s %d: the answer echoes the code", method, w.Code)
		}
		switch ct := h.Get("Content-Type"); {
		case strings.HasPrefix(ct, "text/html"):
			if h.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("%s %d: HTML answer without Referrer-Policy: no-referrer", method, w.Code)
			}
		case strings.HasPrefix(ct, "text/plain"):
			if h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s %d: plain answer without nosniff", method, w.Code)
			}
		default:
			t.Errorf("%s %d: answer of type %q", method, w.Code, ct)
		}
	}
}

// servedHosts are hostile Host headers that net/http lets through to the
// handler.
var servedHosts = []string{"evil.example.com", "evil.example.com:443", "EVIL.example.com", "evil.example.com.", "[::1]:8443"}

// The 401 challenge renders only the gateway's own values: a hostile
// model-family query never splits a header or reaches one raw, and a
// hostile Host header never changes anything but the host of the URLs —
// and not even that with public_url (without it, the answer goes back to
// whoever sent that Host; see docs/security.md).
func TestChallengeHostileValues(t *testing.T) {
	families := []string{
		"iPhone",
		`iPhone", url="https://evil.example.com`,
		"iPhone%0D%0AWWW-Authenticate:%20Basic",
		"iPhone%00",
		strings.Repeat("A", 4000),
	}
	public, err := url.Parse("https://enroll.example.net")
	if err != nil {
		t.Fatal(err)
	}
	type input struct{ fam, host string }
	var inputs []input
	for _, f := range families {
		inputs = append(inputs, input{f, host})
	}
	for _, h := range servedHosts {
		inputs = append(inputs, input{"iPhone", h})
	}
	for _, pub := range []*url.URL{nil, public} {
		for _, variant := range []struct{ esso, oauth bool }{{false, false}, {true, false}, {true, true}} {
			esso, oauth := variant.esso, variant.oauth
			for _, in := range inputs {
				fam, h := in.fam, in.host
				name := h + " / " + fam[:min(len(fam), 40)]
				if pub != nil {
					name += " / public_url"
				}
				if esso {
					name += " / esso"
				}
				if oauth {
					name += " / oauth2"
				}
				t.Run(name, func(t *testing.T) {
					edits := []func(*gateway.Config){func(c *gateway.Config) { c.PublicURL = pub }}
					if esso {
						edits = append(edits, withESSO(t))
					}
					if oauth {
						edits = append(edits, withOAuth2)
					}
					e := newEnv(t, edits...)
					r := enrollRequest("byod", "", nil, "")
					r.URL.RawQuery = "model-family=" + strings.ReplaceAll(fam, " ", "%20")
					r.Host = h
					w := e.mustServe(r, failNext(t))
					raw, _ := url.PathUnescape(fam)
					noSplitHeaders(t, w.Header(), raw)
					if w.Code != http.StatusUnauthorized {
						t.Fatalf("status %d, want 401; body %q", w.Code, w.Body)
					}
					wantHost := h
					if pub != nil {
						wantHost = pub.Host
					}
					vals := w.Header().Values("WWW-Authenticate")
					if len(vals) != 1 {
						t.Fatalf("%d challenges: %q", len(vals), vals)
					}
					method, params, err := apple.ParseChallenge(vals[0])
					if err != nil {
						t.Fatalf("challenge %q does not parse: %v", vals[0], err)
					}
					if want := map[bool]string{false: "apple-as-web", true: "apple-oauth2"}[oauth]; method != want {
						t.Errorf("method %q, want %q", method, want)
					}
					for _, p := range params {
						switch p.Name {
						case "redirect-url", "client-id", "scope":
							continue
						}
						u, err := url.Parse(p.Value)
						if err != nil || u.Scheme != "https" || u.Host != wantHost || u.User != nil || u.Fragment != "" ||
							!strings.HasPrefix(u.Path, "/mdmauth/") {
							t.Errorf("challenge %s %q: want an https URL of the gateway at %s", p.Name, p.Value, wantHost)
						}
					}
					if esso {
						if got, want := w.Header().Get("X-Apple-MDM-ESSO"), "https://"+wantHost+"/mdmauth/esso"; got != want {
							t.Errorf("ESSO header %q, want %q", got, want)
						}
					}
				})
			}
		}
	}
}

// Host headers that would put another host, a path or quotes into the
// gateway's URLs are refused by the HTTP server (400) before any handler
// runs: the gateway builds its URLs only from Host values that passed
// that check.
func TestUnservableHostsNeverReachTheGateway(t *testing.T) {
	e := newEnv(t, withESSO(t))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := e.gw.ServeHTTP(w, r, failNext(t)); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	for _, h := range []string{
		"mdm.host@evil.example.com",
		"evil.example.com/mdm.host",
		`mdm.example.com",url="https://evil.example.com`,
		"mdm.example.com\\evil.example.com",
		"evil.example.com#",
		"evil.example.com?",
	} {
		t.Run(h, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := "POST /mdmauth/enroll/byod HTTP/1.1\r\nHost: " + h + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("WWW-Authenticate") != "" || resp.Header.Get("X-Apple-MDM-ESSO") != "" {
				t.Errorf("Host %q: status %d, challenge %q: want 400 from the server", h, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// Discovery answering on the MDM host: hostile identifiers are answered or
// refused with clean headers, no Location, and a JSON body that never puts
// the identifier into the enrollment URL.
func TestDiscoveryAnswerHostileIdentifiers(t *testing.T) {
	e := newEnv(t)
	answered := 0
	for _, q := range []string{
		"user-identifier=alice@example.com%0D%0ALocation:%20https://evil.example.com",
		"user-identifier=%22alice%22@example.com",
		"user-identifier=%22%2C%22BaseURL%22:%22https://evil.example.com@example.com",
		"user-identifier=https:%2F%2Fevil.example.com%2F@example.com",
		"user-identifier=alice@example.com&model-family=iPhone%22,%22BaseURL%22:%22x",
		"user-identifier=alice@%3Cscript%3E.example",
		"user-identifier=" + strings.Repeat("a", 2000) + "@example.com",
	} {
		t.Run(q[:min(len(q), 60)], func(t *testing.T) {
			w := e.mustServe(discoveryRequest(http.MethodGet, q), failNext(t))
			raw, _ := url.PathUnescape(strings.TrimPrefix(q, "user-identifier="))
			noSplitHeaders(t, w.Header(), raw)
			if w.Header().Get("Location") != "" {
				t.Errorf("discovery answer with Location %q", w.Header().Get("Location"))
			}
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("status %d, body %q is not JSON: %v", w.Code, w.Body, err)
			}
			if w.Code != http.StatusOK {
				return
			}
			answered++
			servers, _ := body["Servers"].([]any)
			if len(body) != 1 || len(servers) != 1 {
				t.Fatalf("answer %s: want exactly one server", w.Body)
			}
			base, _ := servers[0].(map[string]any)["BaseURL"].(string)
			u, err := url.Parse(base)
			if err != nil || u.Scheme+"://"+u.Host != origin || u.User != nil || strings.Contains(base, "evil") {
				t.Errorf("BaseURL %q, want the gateway's enrollment URL", base)
			}
		})
	}
	if answered < 2 {
		t.Errorf("only %d hostile identifiers answered: the BaseURL check did not run", answered)
	}
}

// Without public_url, a Host that would change the meaning of the URLs
// built from it is refused on every gateway endpoint and protected path,
// whichever server stack read the request (the check does not rely on
// net/http's own).
func TestHostValidatedBeforeURLsAreBuilt(t *testing.T) {
	e := newEnv(t)
	for _, host := range []string{"a@evil.example", "evil.example/x", `evil.example\x`, `evil"example`, "evil.example#x", "evil.example?x", "evil%2eexample", ""} {
		for _, target := range []string{"/.well-known/com.apple.remotemanagement?user-identifier=alice@example.com", "/mdmauth/enroll/byod", protect} {
			r := httptest.NewRequest(http.MethodPost, origin+target, nil)
			r.Host = host
			w := e.mustServe(r, failNext(t))
			if w.Code != http.StatusBadRequest || w.Header().Get("WWW-Authenticate") != "" || w.Header().Get("Location") != "" {
				t.Errorf("Host %q, %s: status %d, challenge %q, Location %q", host, target, w.Code, w.Header().Get("WWW-Authenticate"), w.Header().Get("Location"))
			}
		}
	}
	// Ordinary hosts, with a port too, are served.
	for _, host := range []string{"mdm.example.com", "mdm.example.com:8443", "127.0.0.1:8443", "[::1]:8443"} {
		r := httptest.NewRequest(http.MethodPost, origin+"/mdmauth/enroll/byod", nil)
		r.Host = host
		if w := e.mustServe(r, failNext(t)); w.Code != http.StatusUnauthorized {
			t.Errorf("Host %q: status %d, want the challenge", host, w.Code)
		}
	}
	// Other paths pass whatever their Host: they are not the gateway's.
	r := httptest.NewRequest(http.MethodGet, origin+"/scep", nil)
	r.Host = "a@evil.example"
	n := &recNext{status: http.StatusOK}
	if w := e.mustServe(r, n.serve); w.Code != http.StatusOK {
		t.Errorf("pass-through: status %d", w.Code)
	}
}
