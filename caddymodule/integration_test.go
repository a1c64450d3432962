package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/mdmauth/mdmauth/internal/apple"
)

// Addresses fixed by caddytest: its in-process Caddy's admin endpoint is
// localhost:2999, and its sites use these ports.
const (
	itBase  = "http://localhost:9080"
	itAdmin = "localhost:2999"
)

// itSecret is the OIDC client secret, given to Caddy through the
// environment only.
const itSecret = "s3cret-from-the-environment"

// itConfig is a deployment shaped like Caddyfile.example on plain HTTP:
// mdm_auth, the /mdm/ad → /mdm rewrite and NanoMDM behind reverse_proxy.
const itConfig = `{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	mdm_auth {
		storage_dir {{.Store}}
	}
}

http://localhost:9080 {
	mdm_auth {
		oidc {
			issuer {{.Issuer}}
			client_id mdmauth
			client_secret {env.MDMAUTH_IT_OIDC_SECRET}
		}
		discovery {
			{{.Discovery}}
		}
		enrollment_profile {{.Profile}}
		protect /mdm/ad
	}
	@accountDriven path /mdm/ad
	rewrite @accountDriven /mdm
	@mdm path /mdm /mdm/ad
	handle @mdm {
		reverse_proxy {{.NanoMDM}}
	}
	handle {
		respond "{{.Name}}" 404
	}
}
`

// itPortsOnce and itPortsErr remember the outcome of the first caddytest use in this
// process.
var (
	itPortsOnce sync.Once
	itPortsErr  error
)

// newTester returns a caddytest tester, after making sure, the first time,
// that no other process holds caddytest's fixed ports: caddytest starts
// Caddy in this process only when nothing answers on localhost:2999, and
// would otherwise configure and test that other process (for instance a
// concurrent go test of this package).
func newTester(t *testing.T) *caddytest.Tester {
	t.Helper()
	if testing.Short() {
		t.Fatal("the caddytest integration tests must run: do not use -short")
	}
	itPortsOnce.Do(func() {
		for _, addr := range []string{itAdmin, "localhost:9080", "localhost:9443"} {
			if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				conn.Close()
				itPortsErr = fmt.Errorf("another process is listening on %s, one of caddytest's fixed addresses; stop it (or a concurrent test of this package) and run again", addr)
				return
			}
		}
	})
	if itPortsErr != nil {
		t.Fatal(itPortsErr)
	}
	return caddytest.NewTester(t)
}

// TestCaddyReloadSharesStore runs Caddy in-process (caddytest) with
// mdm_auth, reloads it with a changed site and finally without mdm_auth.
// Both configs answer discovery (a second Badger open of the directory
// would fail the reload with a lock error); a sign-in link signed under the
// first config still works under the second (same store, same key); the
// client secret reaches the provider expanded from {env.*}; and the last
// reload closes the store.
func TestCaddyReloadSharesStore(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	profile := copyProfile(t, dir)
	idp := newFakeIdP(t)
	nanomdm := newRecordingUpstream(t)
	t.Setenv("MDMAUTH_IT_OIDC_SECRET", itSecret)

	tester := newTester(t)
	load := func(name, discovery string) {
		t.Helper()
		cfg := strings.NewReplacer(
			"{{.Store}}", store, "{{.Issuer}}", idp.URL, "{{.Profile}}", profile,
			"{{.NanoMDM}}", strings.TrimPrefix(nanomdm.URL, "http://"),
			"{{.Discovery}}", discovery, "{{.Name}}", name,
		).Replace(itConfig)
		failed := t.Failed()
		tester.InitServer(cfg, "caddyfile")
		if !failed && t.Failed() {
			t.FailNow() // the config did not load
		}
		// The new config is the one serving.
		tester.AssertGetResponse(itBase+"/unrouted", http.StatusNotFound, name)
	}
	client := &http.Client{
		Transport:     caddytest.CreateTestingTransport(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	// First config.
	load("first", "domains example.com\n\t\t\tmode byod")
	assertDiscovery(t, tester, "alice@example.com", "iPhone", apple.ModeBYOD)
	assertDiscovery(t, tester, "alice@example.com", "Mac", apple.ModeBYOD)
	signIn := enrollChallenge(t, client)

	// The protected path is guarded, the profile-based one passes.
	nanomdm.reset()
	if code, challenged := mdmPut(t, "/mdm/ad"); code != http.StatusUnauthorized || !challenged {
		t.Errorf("PUT /mdm/ad without a bearer: %d (challenge %v), want 401 with a challenge", code, challenged)
	}
	if code, _ := mdmPut(t, "/mdm"); code != http.StatusOK {
		t.Errorf("PUT /mdm: %d, want 200 from NanoMDM", code)
	}
	if got := nanomdm.paths(); len(got) != 1 || got[0] != "/mdm" {
		t.Errorf("NanoMDM received %v, want [/mdm]", got)
	}

	// Reload with a changed site.
	load("second", "domains example.com example.org\n\t\t\tmode byod\n\t\t\tmode Mac adde")
	assertDiscovery(t, tester, "alice@example.com", "iPhone", apple.ModeBYOD)
	assertDiscovery(t, tester, "alice@example.com", "Mac", apple.ModeADDE)
	assertDiscovery(t, tester, "bob@example.org", "iPad", apple.ModeBYOD)

	// The first config's sign-in link verifies with the key in the shared
	// store, and the sign-in reaches the provider.
	res, err := client.Get(signIn)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("sign-in link from before the reload: %d, want 302 to the provider", res.StatusCode)
	}
	authURL, err := url.Parse(res.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(authURL.String(), idp.URL+"/authorize?") {
		t.Fatalf("sign-in redirects to %q, want the provider's authorization endpoint", res.Header.Get("Location"))
	}
	if got := authURL.Query().Get("client_id"); got != "mdmauth" {
		t.Errorf("authorization request client_id %q, want mdmauth", got)
	}
	var binding *http.Cookie
	for _, c := range res.Cookies() {
		binding = c
	}
	if binding == nil {
		t.Fatal("the sign-in set no browser-binding cookie")
	}

	// The provider's redirect back: the code exchange carries the secret
	// from the environment.
	cb, err := http.NewRequest(http.MethodGet, itBase+"/mdmauth/oidc/callback?code=test-code&state="+url.QueryEscape(authURL.Query().Get("state")), nil)
	if err != nil {
		t.Fatal(err)
	}
	cb.AddCookie(&http.Cookie{Name: binding.Name, Value: binding.Value})
	res, err = client.Do(cb)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusPermanentRedirect {
		t.Error("the callback issued a token although the provider refused the code")
	}
	id, secret, n := idp.credentials()
	if n == 0 {
		t.Fatal("the callback never exchanged the code at the provider")
	}
	if id != "mdmauth" || secret != itSecret {
		t.Errorf("the provider received client_id %q and a secret of %d bytes (placeholder: %v), want mdmauth and the %d-byte secret from MDMAUTH_IT_OIDC_SECRET",
			id, len(secret), strings.Contains(secret, "{env."), len(itSecret))
	}

	// A config without mdm_auth releases the store, which kept the key.
	tester.InitServer(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
}

http://localhost:9080 {
	respond "none" 404
}
`, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	if !openReleased(t, store) {
		t.Error("the store lost the sign-in signing key")
	}
}

// TestCaddyGuardsPathVariants sends account-driven MDM requests without a
// bearer to spellings of /mdm/ad that Caddy's path matcher treats as
// /mdm/ad (it ignores case and cleans the path), so the example's
// rewrite sends them to NanoMDM as /mdm. Every one must be challenged and
// none may reach NanoMDM.
func TestCaddyGuardsPathVariants(t *testing.T) {
	dir := t.TempDir()
	idp := newFakeIdP(t)
	nanomdm := newRecordingUpstream(t)
	t.Setenv("MDMAUTH_IT_OIDC_SECRET", itSecret)
	tester := newTester(t)
	tester.InitServer(strings.NewReplacer(
		"{{.Store}}", filepath.Join(dir, "store"), "{{.Issuer}}", idp.URL, "{{.Profile}}", copyProfile(t, dir),
		"{{.NanoMDM}}", strings.TrimPrefix(nanomdm.URL, "http://"),
		"{{.Discovery}}", "domains example.com", "{{.Name}}", "guard",
	).Replace(itConfig), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	for _, path := range []string{
		"/mdm/ad", "/mdm/ad/", "/mdm/ad/.", "/MDM/AD", "/Mdm/Ad", "/mdm//ad", "//mdm/ad",
		"/mdm/./ad", "/x/../mdm/ad", "/mdm%2Fad", "/%4Ddm/ad",
	} {
		nanomdm.reset()
		code, challenged := mdmPut(t, path)
		if code != http.StatusUnauthorized || !challenged {
			t.Errorf("PUT %s without a bearer: %d (challenge %v), want 401 with a challenge", path, code, challenged)
		}
		if got := nanomdm.paths(); len(got) != 0 {
			t.Errorf("PUT %s without a bearer reached NanoMDM as %v", path, got)
		}
	}
	tester.InitServer(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	skip_install_trust
}
`, "caddyfile")
}

// assertDiscovery checks the discovery answer for user on family.
func assertDiscovery(t *testing.T, tester *caddytest.Tester, user, family string, mode apple.Mode) {
	t.Helper()
	q := url.Values{"user-identifier": {user}, "model-family": {family}}
	want := apple.DiscoveryResponse(mode, itBase+"/mdmauth/enroll/"+string(mode)+"?model-family="+family)
	res, _ := tester.AssertGetResponse(itBase+apple.WellKnownPath+"?"+q.Encode(), http.StatusOK, string(want))
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("discovery Content-Type %q, want application/json", ct)
	}
}

// enrollChallenge posts to the enrollment URL without a bearer and returns
// the sign-in URL of the 401 challenge.
func enrollChallenge(t *testing.T, client *http.Client) string {
	t.Helper()
	res, err := client.Post(itBase+"/mdmauth/enroll/byod?model-family=iPhone", "application/pkcs7-signature", strings.NewReader("not signed"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("enrollment without a bearer: %d, want 401", res.StatusCode)
	}
	method, params, err := apple.ParseChallenge(res.Header.Get("WWW-Authenticate"))
	if err != nil || method != "apple-as-web" || len(params) != 1 || params[0].Name != "url" {
		t.Fatalf("challenge %q: method %q params %v err %v", res.Header.Get("WWW-Authenticate"), method, params, err)
	}
	if !strings.HasPrefix(params[0].Value, itBase+"/mdmauth/sign-in/") {
		t.Fatalf("sign-in URL %q is not under %s/mdmauth/sign-in/", params[0].Value, itBase)
	}
	return params[0].Value
}

// tokenUpdate is an iPhone's TokenUpdate check-in.
const tokenUpdate = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>MessageType</key>
	<string>TokenUpdate</string>
	<key>EnrollmentID</key>
	<string>BYOD-ENROLLMENT-1</string>
	<key>Topic</key>
	<string>com.apple.mgmt.External.00000000-0000-0000-0000-000000000000</string>
	<key>Token</key>
	<data>AAAA</data>
</dict>
</plist>
`

// mdmPut sends a check-in without a bearer to path, written on the wire
// exactly as given (an HTTP client would clean or reinterpret some of the
// spellings), and returns the status and whether it carried mdm_auth's
// challenge.
func mdmPut(t *testing.T, path string) (status int, challenged bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:9080", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "PUT " + path + " HTTP/1.1\r\n" +
		"Host: localhost:9080\r\n" +
		"Content-Type: application/x-apple-aspen-mdm-checkin\r\n" +
		"Content-Length: " + strconv.Itoa(len(tokenUpdate)) + "\r\n" +
		"Connection: close\r\n\r\n" + tokenUpdate
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, strings.HasPrefix(res.Header.Get("WWW-Authenticate"), `Bearer method="apple-as-web"`)
}

// recordingUpstream stands in for NanoMDM: it answers 200 and records the
// paths it received.
type recordingUpstream struct {
	*httptest.Server
	mu  sync.Mutex
	got []string
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.got = append(u.got, r.URL.Path)
		u.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) reset() {
	u.mu.Lock()
	u.got = nil
	u.mu.Unlock()
}

func (u *recordingUpstream) paths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

// fakeIdP is an OpenID provider reduced to what the relying party touches
// before verifying an ID token: discovery, and a token endpoint that
// records the client credentials and refuses every code.
type fakeIdP struct {
	*httptest.Server
	mu           sync.Mutex
	clientID     string
	clientSecret string
	exchanges    int
}

func newFakeIdP(t *testing.T) *fakeIdP {
	p := &fakeIdP{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSONBody(w, http.StatusOK, discoveryDocument(p.URL))
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if ok {
			id, _ = url.QueryUnescape(id)
			secret, _ = url.QueryUnescape(secret)
		} else if err := r.ParseForm(); err == nil {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		p.mu.Lock()
		p.clientID, p.clientSecret = id, secret
		p.exchanges++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"keys":[]}`)
	})
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

// discoveryDocument is the OpenID provider metadata of a test provider at
// issuer, which serves /authorize, /token and /keys.
func discoveryDocument(issuer string) map[string]any {
	return map[string]any{
		"issuer":                                issuer,
		"authorization_endpoint":                issuer + "/authorize",
		"token_endpoint":                        issuer + "/token",
		"jwks_uri":                              issuer + "/keys",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic"},
	}
}

// credentials returns the client credentials of the last code exchange
// and the number of exchanges.
func (p *fakeIdP) credentials() (id, secret string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clientID, p.clientSecret, p.exchanges
}
