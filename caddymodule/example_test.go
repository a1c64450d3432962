package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// exampleCaddyfile is the Caddyfile shipped at the repository root.
const exampleCaddyfile = "../Caddyfile.example"

// exampleLog is where the example writes its access log.
const exampleLog = "/var/log/caddy/mdm.example.com-access.log"

// adaptExample adapts Caddyfile.example as shipped, with its environment
// variables pointing into dir, and returns the JSON.
func adaptExample(t *testing.T, dir string) []byte {
	t.Helper()
	t.Setenv("MDMAUTH_ENROLLMENT_PROFILE", copyProfile(t, dir))
	t.Setenv("MDMAUTH_STORAGE_DIR", filepath.Join(dir, "store"))
	t.Setenv("MDMAUTH_OIDC_SECRET", "example-secret")
	src, err := os.ReadFile(exampleCaddyfile)
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := adaptCaddyfile(t, "Caddyfile.example", src)
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w)
	}
	return out
}

// TestExampleCaddyfileValidates adapts Caddyfile.example and provisions
// every module of the result with caddy.Validate, as `caddy validate`
// does, without starting anything.
func TestExampleCaddyfileValidates(t *testing.T) {
	dir := t.TempDir()
	for _, env := range []string{"HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"} {
		t.Setenv(env, filepath.Join(dir, strings.ToLower(env)))
	}
	adapted := adaptExample(t, dir)

	var raw map[string]any
	if err := json.Unmarshal(adapted, &raw); err != nil {
		t.Fatal(err)
	}
	// Keep the access log out of /var/log: Validate opens log writers.
	logPath := filepath.Join(dir, "access.log")
	if n := redirectFileLogs(raw, exampleLog, logPath); n != 1 {
		t.Fatalf("found %d file logs writing to %s, want 1", n, exampleLog)
	}
	// The global option reached the app, with the variable expanded.
	apps, _ := raw["apps"].(map[string]any)
	app, _ := apps["mdm_auth"].(map[string]any)
	if got, want := app["storage_dir"], filepath.Join(dir, "store"); got != want {
		t.Errorf("mdm_auth storage_dir = %v, want %v", got, want)
	}
	// The secret is a runtime placeholder, never written into the JSON.
	if strings.Contains(string(adapted), "example-secret") {
		t.Error("the adapted config contains the OIDC client secret")
	}
	if !strings.Contains(string(adapted), `"client_secret":"{env.MDMAUTH_OIDC_SECRET}"`) {
		t.Error("the adapted config lacks client_secret {env.MDMAUTH_OIDC_SECRET}")
	}

	data, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("caddy.Validate(Caddyfile.example): %v", err)
	}
	// Validating provisioned the store where the example put it, and
	// released it afterwards.
	if !openReleased(t, filepath.Join(dir, "store")) {
		t.Error("provisioning did not create the sign-in signing key in the store")
	}
	if _, err := os.Stat(logPath); err != nil {
		t.Errorf("access log writer: %v", err)
	}
}

// redirectFileLogs rewrites every file log writer of cfg whose filename is
// from to write to to, and returns how many it rewrote.
func redirectFileLogs(cfg map[string]any, from, to string) int {
	logging, _ := cfg["logging"].(map[string]any)
	logs, _ := logging["logs"].(map[string]any)
	n := 0
	for _, l := range logs {
		w, _ := l.(map[string]any)["writer"].(map[string]any)
		if w["output"] == "file" && w["filename"] == from {
			w["filename"] = to
			n++
		}
	}
	return n
}

// TestExampleCaddyfileExposesOnlyMDM walks the adapted example's routes:
// every reverse_proxy must sit behind path matchers that let through the
// MDM and SCEP endpoints only, never NanoMDM's /v1/ API, /migration or
// /authproxy/; and every rewrite on the way must target an MDM path.
func TestExampleCaddyfileExposesOnlyMDM(t *testing.T) {
	adapted := adaptExample(t, t.TempDir())
	var proxies []proxyRoute
	for name, routes := range serverRoutes(t, adapted) {
		walkRoutes(t, routes, nil, func(handler map[string]any, chain [][]any) {
			switch handler["handler"] {
			case "reverse_proxy":
				proxies = append(proxies, proxyRoute{server: name, chain: chain, upstreams: upstreams(handler)})
			case "rewrite":
				if uri, _ := handler["uri"].(string); uri != "/mdm" {
					t.Errorf("rewrite to %q: only the MDM path may be a rewrite target", uri)
				}
			}
		})
	}
	if len(proxies) != 2 {
		t.Fatalf("found %d reverse_proxy handlers, want 2 (NanoMDM and SCEP)", len(proxies))
	}
	// mdm_auth guards the proxied paths: it runs before any route that
	// reaches a proxy.
	mdm := -1
	for i, r := range siteRoutes(t, adapted) {
		names := handlerNames(r)
		if slices.Contains(names, "mdm_auth") && mdm < 0 {
			mdm = i
		}
		if slices.Contains(names, "reverse_proxy") && (mdm < 0 || mdm == i) {
			t.Errorf("route %d reaches reverse_proxy before mdm_auth has run", i)
		}
	}
	if mdm < 0 {
		t.Error("no mdm_auth handler in the example's site")
	}

	forbidden := []string{
		"/v1/enqueue/ABC", "/v1/pushcert", "/v1/push/ABC", "/V1/enqueue/ABC", "/v1",
		"/migration", "/migration/", "/authproxy/", "/authproxy/x",
		"/mdm/../v1/enqueue/ABC", "/mdm/ad/../../v1/pushcert", "//v1/enqueue/ABC", "/mdm/v1",
	}
	for _, p := range proxies {
		for _, path := range forbidden {
			if reaches(t, p.chain, path) {
				t.Errorf("%s reaches reverse_proxy %v on %s", path, p.upstreams, p.server)
			}
		}
	}
	// The walk is meaningful: the MDM and SCEP paths do reach an upstream.
	allowed := map[string]string{
		"/mdm": "127.0.0.1:9000", "/mdm/ad": "127.0.0.1:9000",
		"/scep": "127.0.0.1:8080", "/scep/pkiclient.exe": "127.0.0.1:8080",
	}
	for path, upstream := range allowed {
		ok := false
		for _, p := range proxies {
			if reaches(t, p.chain, path) && slices.Contains(p.upstreams, upstream) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s does not reach %s", path, upstream)
		}
	}
}

// serverRoutes returns the routes of each HTTP server of an adapted config.
func serverRoutes(t *testing.T, adapted []byte) map[string][]any {
	t.Helper()
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []any `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	out := map[string][]any{}
	for name, srv := range cfg.Apps.HTTP.Servers {
		out[name] = srv.Routes
	}
	if len(out) == 0 {
		t.Fatalf("no HTTP servers in %s", adapted)
	}
	return out
}

type proxyRoute struct {
	server    string
	chain     [][]any // the "match" lists of the enclosing routes, outermost first
	upstreams []string
}

func upstreams(handler map[string]any) []string {
	var out []string
	ups, _ := handler["upstreams"].([]any)
	for _, u := range ups {
		if dial, ok := u.(map[string]any)["dial"].(string); ok {
			out = append(out, dial)
		}
	}
	return out
}

// walkRoutes calls visit for every handler in routes, recursing into
// subroutes, with the match lists of the routes that enclose it.
func walkRoutes(t *testing.T, routes []any, chain [][]any, visit func(map[string]any, [][]any)) {
	t.Helper()
	for _, r := range routes {
		route, _ := r.(map[string]any)
		match, _ := route["match"].([]any)
		inner := append(slices.Clip(chain), match)
		handlers, _ := route["handle"].([]any)
		for _, h := range handlers {
			handler, _ := h.(map[string]any)
			visit(handler, inner)
			if handler["handler"] == "subroute" {
				sub, _ := handler["routes"].([]any)
				walkRoutes(t, sub, inner, visit)
			}
		}
	}
}

// reaches reports whether a GET of path on the example's host passes every
// match list of chain. An empty list matches everything; within a list the
// matcher sets are OR'ed, within a set the matchers AND'ed. Only the host
// and path matchers are understood: anything else fails the test, which
// must then learn it.
func reaches(t *testing.T, chain [][]any, path string) bool {
	t.Helper()
	req := httptest.NewRequest("GET", "https://mdm.example.com/", nil)
	req.URL.Path = path
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	for _, match := range chain {
		if len(match) == 0 {
			continue
		}
		matched := false
		for _, set := range match {
			if setMatches(t, set.(map[string]any), req) {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	return true
}

func setMatches(t *testing.T, set map[string]any, req *http.Request) bool {
	t.Helper()
	for name, v := range set {
		var values []string
		for _, x := range v.([]any) {
			values = append(values, x.(string))
		}
		var m interface {
			Provision(caddy.Context) error
			MatchWithError(*http.Request) (bool, error)
		}
		switch name {
		case "path":
			m = caddyhttp.MatchPath(values)
		case "host":
			m = caddyhttp.MatchHost(values)
		default:
			t.Fatalf("the route walk does not know the %q matcher", name)
		}
		if err := m.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		ok, err := m.MatchWithError(req)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return false
		}
	}
	return true
}

// TestRouteWalkDetectsExposure shows that the walk above fails a config
// whose proxy is reachable from any path.
func TestRouteWalkDetectsExposure(t *testing.T) {
	for src, want := range map[string]bool{
		"mdm.example.com {\n\treverse_proxy 127.0.0.1:9000\n}\n":                          true,
		"mdm.example.com {\n\treverse_proxy /v1/* 127.0.0.1:9000\n}\n":                    true,
		"mdm.example.com {\n\thandle /mdm* {\n\t\treverse_proxy 127.0.0.1:9000\n\t}\n}\n": false,
		"other.example.com {\n\treverse_proxy 127.0.0.1:9000\n}\n":                        false,
	} {
		out, _, err := adaptCaddyfile(t, "Caddyfile", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		got := false
		walkRoutes(t, serverRoutes(t, out)["srv0"], nil, func(h map[string]any, chain [][]any) {
			if h["handler"] == "reverse_proxy" && reaches(t, chain, "/v1/enqueue/ABC") {
				got = true
			}
		})
		if got != want {
			t.Errorf("%q: /v1/enqueue/ABC reaches the proxy: %v, want %v", src, got, want)
		}
	}
}
