package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// adaptCaddyfile adapts src with Caddy's caddyfile adapter, as `caddy
// adapt` and `caddy run` do.
func adaptCaddyfile(t *testing.T, filename string, src []byte) ([]byte, []caddyconfig.Warning, error) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("the caddyfile adapter is not registered")
	}
	return adapter.Adapt(src, map[string]any{"filename": filename})
}

// TestCaddyfileGolden adapts every testdata/*.caddyfile and compares the
// JSON with testdata/*.json. Run with -update to rewrite the golden files.
func TestCaddyfileGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("found %d testdata/*.caddyfile, want at least 6", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".caddyfile")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out, warnings, err := adaptCaddyfile(t, filepath.Base(file), src)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("adapt warning: %s", w)
			}
			var got bytes.Buffer
			if err := json.Indent(&got, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			got.WriteByte('\n')
			golden := strings.TrimSuffix(file, ".caddyfile") + ".json"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("adapted %s differs from %s (run go test -update after checking the change):\n%s",
					file, golden, lineDiff(string(want), got.String()))
			}
		})
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl == gl {
			continue
		}
		fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
		if shown++; shown == 10 {
			b.WriteString("…\n")
			break
		}
	}
	return b.String()
}

// siteRoutes returns the routes inside the first site's subroute of an
// adapted config.
func siteRoutes(t *testing.T, adapted []byte) []any {
	t.Helper()
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []map[string]any `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	srv, ok := cfg.Apps.HTTP.Servers["srv0"]
	if !ok || len(srv.Routes) == 0 {
		t.Fatalf("no srv0 routes in %s", adapted)
	}
	handle, _ := srv.Routes[0]["handle"].([]any)
	if len(handle) != 1 {
		t.Fatalf("site route has %d handlers, want one subroute", len(handle))
	}
	sub, _ := handle[0].(map[string]any)
	if sub["handler"] != "subroute" {
		t.Fatalf("site handler is %v, want subroute", sub["handler"])
	}
	routes, _ := sub["routes"].([]any)
	return routes
}

// handlerNames lists the handler names of a route, one level deep, with
// "subroute" entries expanded into the handlers of their routes.
func handlerNames(route any) []string {
	r, _ := route.(map[string]any)
	hs, _ := r["handle"].([]any)
	var names []string
	for _, h := range hs {
		m, _ := h.(map[string]any)
		name, _ := m["handler"].(string)
		names = append(names, name)
		if name == "subroute" {
			sub, _ := m["routes"].([]any)
			for _, s := range sub {
				names = append(names, handlerNames(s)...)
			}
		}
	}
	return names
}

// TestCaddyfileDirectiveOrder checks that mdm_auth needs no `order` line:
// written last in the site, it still runs before authentication, handle,
// route, respond and reverse_proxy (and after rewrite and header, which
// Caddy orders earlier).
func TestCaddyfileDirectiveOrder(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "order.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := adaptCaddyfile(t, "order.caddyfile", src)
	if err != nil {
		t.Fatal(err)
	}
	routes := siteRoutes(t, out)
	first := map[string]int{}
	for i, r := range routes {
		for _, name := range handlerNames(r) {
			if _, seen := first[name]; !seen {
				first[name] = i
			}
		}
	}
	mdm, ok := first["mdm_auth"]
	if !ok {
		t.Fatalf("no mdm_auth handler in the site's routes: %s", out)
	}
	for _, later := range []string{"authentication", "reverse_proxy", "static_response"} {
		i, ok := first[later]
		if !ok {
			t.Fatalf("no %s handler in the site's routes", later)
		}
		if i <= mdm {
			t.Errorf("%s is route %d, mdm_auth is route %d: mdm_auth must come first", later, i, mdm)
		}
	}
	// handle and route become subroutes; every one must come after mdm_auth.
	for i, r := range routes {
		names := handlerNames(r)
		if len(names) > 0 && names[0] == "subroute" && i < mdm {
			t.Errorf("a handle/route block (route %d: %v) comes before mdm_auth (route %d)", i, names, mdm)
		}
	}
	for _, earlier := range []string{"rewrite", "headers"} {
		if i, ok := first[earlier]; !ok || i >= mdm {
			t.Errorf("%s is route %d (present %v), want it before mdm_auth (route %d)", earlier, i, ok, mdm)
		}
	}
}

// TestUnmarshalCaddyfile checks the handler's fields parsed from each
// option, independently of the JSON encoding.
func TestUnmarshalCaddyfile(t *testing.T) {
	const base = `
		oidc {
			issuer https://idp.example.com/
			client_id mdmauth
		}
		discovery {
			domains example.com
		}
		enrollment_profile /etc/enroll.mobileconfig
`
	baseHandler := func() Handler {
		return Handler{
			OIDC:              OIDC{Issuer: "https://idp.example.com/", ClientID: "mdmauth"},
			Discovery:         Discovery{Domains: []string{"example.com"}},
			EnrollmentProfile: "/etc/enroll.mobileconfig",
		}
	}
	tests := []struct {
		name  string
		extra string
		want  func(*Handler)
	}{
		{"minimal", "", func(*Handler) {}},
		{"prefix and public_url", "prefix /gw\npublic_url https://mdm.example.com:8443", func(h *Handler) {
			h.Prefix, h.PublicURL = "/gw", "https://mdm.example.com:8443"
		}},
		{"90 days", "access_token_ttl 90d", func(h *Handler) {
			h.AccessTokenTTL = caddy.Duration(90 * 24 * time.Hour)
		}},
		{"mixed units", "access_token_ttl 1d12h\nreauth_max_age 2m30s", func(h *Handler) {
			h.AccessTokenTTL = caddy.Duration(36 * time.Hour)
			h.ReauthMaxAge = caddy.Duration(150 * time.Second)
		}},
		{"binary sizes", "max_enroll_body 64KiB\nmax_mdm_body 8MiB", func(h *Handler) {
			h.MaxEnrollBody, h.MaxMDMBody = 64<<10, 8<<20
		}},
		{"decimal sizes", "max_enroll_body 100kB\nmax_mdm_body 1GB", func(h *Handler) {
			h.MaxEnrollBody, h.MaxMDMBody = 100_000, 1_000_000_000
		}},
		{"bytes and the upper limit", "max_enroll_body 1\nmax_mdm_body 1GiB", func(h *Handler) {
			h.MaxEnrollBody, h.MaxMDMBody = 1, 1<<30
		}},
		{"protect accumulates", "protect /a /b\nprotect /c", func(h *Handler) {
			h.Protect = []string{"/a", "/b", "/c"}
		}},
		{"flags", "require_identifier_match", func(h *Handler) { h.RequireIdentifierMatch = true }},
		{"oidc in full", `oidc {
			client_secret {env.SECRET}
			scopes openid email
			managed_apple_id_claim upn
			allow_unverified_email
		}`, func(h *Handler) {
			h.OIDC.ClientSecret = "{env.SECRET}"
			h.OIDC.Scopes = []string{"openid", "email"}
			h.OIDC.ManagedAppleIDClaim = "upn"
			h.OIDC.AllowUnverifiedEmail = true
		}},
		{"discovery in full", `discovery {
			domains example.org example.net
			mode adde
			mode Mac RealityDevice byod
			mode Mac adde
		}`, func(h *Handler) {
			h.Discovery.Domains = []string{"example.com", "example.org", "example.net"}
			h.Discovery.Mode = "adde"
			h.Discovery.ModelModes = map[string]string{"Mac": "adde", "RealityDevice": "byod"}
		}},
		{"sign_in web", "sign_in web", func(h *Handler) { h.SignIn = "web" }},
		{"oauth2 in full", `sign_in oauth2
		oauth2 {
			client_id com.example.mdm
			redirect_url com.example.mdm:/oauth2/done
			scope mdm.enroll
			refresh_token_ttl 30d
			sign_in_every 180d
			refresh_grace 1m30s
		}`, func(h *Handler) {
			h.SignIn = "oauth2"
			h.OAuth2 = &OAuth2{
				ClientID:        "com.example.mdm",
				RedirectURL:     "com.example.mdm:/oauth2/done",
				Scope:           "mdm.enroll",
				RefreshTokenTTL: caddy.Duration(30 * 24 * time.Hour),
				SignInEvery:     caddy.Duration(180 * 24 * time.Hour),
				RefreshGrace:    caddy.Duration(90 * time.Second),
			}
		}},
		{"empty oauth2 block", "sign_in oauth2\noauth2 {\n}", func(h *Handler) {
			h.SignIn = "oauth2"
			h.OAuth2 = &OAuth2{}
		}},
		{"oauth2 blocks merge", "oauth2 {\nclient_id a\nscope s\n}\noauth2 {\nclient_id b\nrefresh_grace 5s\n}", func(h *Handler) {
			h.OAuth2 = &OAuth2{ClientID: "b", Scope: "s", RefreshGrace: caddy.Duration(5 * time.Second)}
		}},
		{"oidc options of oauth2", `oidc {
			auth_param access_type offline
			auth_param prompt consent
			auth_param prompt select_account
			require_claim hd example.com
			require_claim groups mdm-users mdm-admins
			require_claim hd example.org
			revalidate_on_refresh 10m
			refresh_token_keys {env.KEYS}
		}`, func(h *Handler) {
			h.OIDC.AuthParams = map[string]string{"access_type": "offline", "prompt": "select_account"}
			h.OIDC.RequireClaims = []RequireClaim{
				{Claim: "hd", Values: []string{"example.com"}},
				{Claim: "groups", Values: []string{"mdm-users", "mdm-admins"}},
				{Claim: "hd", Values: []string{"example.org"}},
			}
			h.OIDC.RevalidateOnRefresh = true
			h.OIDC.RevalidateEvery = caddy.Duration(10 * time.Minute)
			h.OIDC.RefreshTokenKeys = "{env.KEYS}"
		}},
		{"revalidate_on_refresh at the default pace", "oidc {\nrevalidate_on_refresh\n}", func(h *Handler) {
			h.OIDC.RevalidateOnRefresh = true
		}},
		{"backchannel_logout", "oidc {\nbackchannel_logout\n}", func(h *Handler) {
			h.OIDC.BackchannelLogout = &BackchannelLogout{}
		}},
		{"backchannel_logout all_sessions", "oidc {\nbackchannel_logout all_sessions\n}", func(h *Handler) {
			h.OIDC.BackchannelLogout = &BackchannelLogout{AllSessions: true}
		}},
		{"backchannel_logout block", "oidc {\nbackchannel_logout {\nall_sessions\nmax_age 5m\n}\n}", func(h *Handler) {
			h.OIDC.BackchannelLogout = &BackchannelLogout{AllSessions: true, MaxAge: caddy.Duration(5 * time.Minute)}
		}},
		{"backchannel_logout max_age only", "oidc {\nbackchannel_logout {\nmax_age 90s\n}\n}", func(h *Handler) {
			h.OIDC.BackchannelLogout = &BackchannelLogout{MaxAge: caddy.Duration(90 * time.Second)}
		}},
		{"managed_apple_id_template", "oidc {\nmanaged_apple_id_template {claim.upn}@appleid.example.com\n}", func(h *Handler) {
			h.OIDC.ManagedAppleIDTemplate = "{claim.upn}@appleid.example.com"
		}},
		{"unknown 404", "discovery {\nunknown 404\n}", func(h *Handler) { h.Discovery.Unknown = "404" }},
		{"unknown 403", "discovery {\nunknown 403\n}", func(h *Handler) { h.Discovery.Unknown = "403" }},
		{"unknown 403 with a message", "discovery {\nunknown 403 \"Use your example.com account.\"\n}", func(h *Handler) {
			h.Discovery.Unknown, h.Discovery.UnknownMessage = "403", "Use your example.com account."
		}},
		{"a later unknown wins", "discovery {\nunknown 403 \"Not here.\"\n}\ndiscovery {\nunknown 404\n}", func(h *Handler) {
			h.Discovery.Unknown, h.Discovery.UnknownMessage = "404", "Not here."
		}},
		{"enrollment_profile with signing", `enrollment_profile /etc/signed.mobileconfig {
			sign_cert /etc/mdmauth/chain.pem
			sign_key {env.SIGN_KEY}
		}`, func(h *Handler) {
			h.EnrollmentProfile = "/etc/signed.mobileconfig"
			h.ProfileSigning = &ProfileSigning{CertFile: "/etc/mdmauth/chain.pem", KeyFile: "{env.SIGN_KEY}"}
		}},
		{"enrollment_profile with an empty block", "enrollment_profile /etc/other.mobileconfig {\n}", func(h *Handler) {
			h.EnrollmentProfile = "/etc/other.mobileconfig"
		}},
		{"enrollment_profiles", `enrollment_profiles {
			kiosk /etc/kiosk.mobileconfig
			"shared ipads" /etc/shared.mobileconfig
		}
		enrollment_profiles {
			adde {env.ADDE_PROFILE}
		}`, func(h *Handler) {
			h.EnrollmentProfiles = map[string]string{
				"kiosk": "/etc/kiosk.mobileconfig", "shared ipads": "/etc/shared.mobileconfig", "adde": "{env.ADDE_PROFILE}",
			}
		}},
		{"policy in full", `policy {
			rule contractors {
				domains contractors.example.com
				deny "Contractors cannot enroll."
			}
			rule macs {
				domains example.com example.org
				domains example.net
				families Mac
				families RealityDevice
				claim groups mdm-adde mdm-admins
				claim hd example.com
				mode adde
				profile corporate
				required_app_id 1234567890
				max_devices 3
			}
			rule {
				deny
			}
		}`, func(h *Handler) {
			h.Policy = &Policy{Rules: []PolicyRule{
				{Name: "contractors", Domains: []string{"contractors.example.com"}, Deny: true, Message: "Contractors cannot enroll."},
				{
					Name: "macs", Domains: []string{"example.com", "example.org", "example.net"}, Families: []string{"Mac", "RealityDevice"},
					Claims: []RequireClaim{{Claim: "groups", Values: []string{"mdm-adde", "mdm-admins"}}, {Claim: "hd", Values: []string{"example.com"}}},
					Mode:   "adde", Profile: "corporate", RequiredAppID: 1234567890, MaxDevices: 3,
				},
				{Deny: true},
			}}
		}},
		{"policy blocks append", "policy {\nrule a {\nmode byod\n}\n}\npolicy {\nrule b {\n}\n}", func(h *Handler) {
			h.Policy = &Policy{Rules: []PolicyRule{{Name: "a", Mode: "byod"}, {Name: "b"}}}
		}},
		{"empty policy block", "policy {\n}", func(h *Handler) { h.Policy = &Policy{} }},
		{"esso in full", `esso {
			itunes_store_id 1234567890
			associated_domains authsrv:login.example.com
			associated_domains webcredentials:login.example.com applinks:example.com
			direct_downloads
			configuration_profile /etc/mdmauth/esso.mobileconfig
			declarations /etc/a.json /etc/b.json
			declarations /etc/c.json
			app_ids ABCDE12345.com.example.sso ABCDE12345.com.example.sso2
			test_mode
		}`, func(h *Handler) {
			h.ESSO = &ESSO{
				ITunesStoreID:        1234567890,
				AssociatedDomains:    []string{"authsrv:login.example.com", "webcredentials:login.example.com", "applinks:example.com"},
				DirectDownloads:      true,
				ConfigurationProfile: "/etc/mdmauth/esso.mobileconfig",
				Declarations:         []string{"/etc/a.json", "/etc/b.json", "/etc/c.json"},
				AppIDs:               []string{"ABCDE12345.com.example.sso", "ABCDE12345.com.example.sso2"},
				TestMode:             true,
			}
		}},
		{"esso blocks merge", "esso {\nitunes_store_id 1\n}\nesso {\nconfiguration_profile /p\n}", func(h *Handler) {
			h.ESSO = &ESSO{ITunesStoreID: 1, ConfigurationProfile: "/p"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser("mdm_auth {\n" + base + tt.extra + "\n}")
			var got Handler
			if err := got.UnmarshalCaddyfile(d); err != nil {
				t.Fatal(err)
			}
			want := baseHandler()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestGlobalOption checks the mdm_auth global option's app value.
func TestGlobalOption(t *testing.T) {
	tests := []struct {
		src  string
		want App
	}{
		{"mdm_auth {\n\tstorage_dir /var/lib/mdmauth\n}", App{StorageDir: "/var/lib/mdmauth"}},
		{"mdm_auth {\n\tstorage_dir {env.STATE_DIRECTORY}/store\n}", App{StorageDir: "{env.STATE_DIRECTORY}/store"}},
		{"mdm_auth", App{}},
		{"mdm_auth {\n\tmin_free_space 256MiB\n}", App{MinFreeSpace: 256 << 20}},
		{"mdm_auth {\n\tmin_free_space off\n}", App{MinFreeSpace: -1}},
		{"mdm_auth {\n\tstorage postgres {\n\t\tdsn {env.MDMAUTH_PG_DSN}\n\t\tschema gw\n\t\tmax_conns 20\n\t\ttimeout 3s\n\t}\n}",
			App{Postgres: &PostgresStorage{DSN: "{env.MDMAUTH_PG_DSN}", Schema: "gw", MaxConns: 20, Timeout: caddy.Duration(3 * time.Second)}}},
	}
	for _, tt := range tests {
		v, err := parseGlobalOption(caddyfile.NewTestDispenser(tt.src), nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.src, err)
		}
		app, ok := v.(httpcaddyfile.App)
		if !ok || app.Name != "mdm_auth" {
			t.Fatalf("%q: got %#v, want an httpcaddyfile.App named mdm_auth", tt.src, v)
		}
		var got App
		if err := json.Unmarshal(app.Value, &got); err != nil {
			t.Fatal(err)
		}
		if got.StorageDir != tt.want.StorageDir || got.MinFreeSpace != tt.want.MinFreeSpace || !reflect.DeepEqual(got.Postgres, tt.want.Postgres) {
			t.Errorf("%q: got %+v, want %+v", tt.src, got, tt.want)
		}
	}
	for _, src := range []string{"mdm_auth {\n\tmin_free_space\n}", "mdm_auth {\n\tmin_free_space lots\n}", "mdm_auth {\n\tmin_free_space 0\n}",
		"mdm_auth {\n\tstorage badger\n}", "mdm_auth {\n\tstorage postgres {\n\t\tschema x\n\t}\n}",
		"mdm_auth {\n\tstorage postgres {\n\t\tdsn x\n\t\tmax_conns -1\n\t}\n}", "mdm_auth {\n\tstorage postgres {\n\t\tdsn x\n\t\tpassword y\n\t}\n}"} {
		if _, err := parseGlobalOption(caddyfile.NewTestDispenser(src), nil); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}

// TestCaddyfileErrors checks that mistakes are reported with a message
// that names the problem and the line.
func TestCaddyfileErrors(t *testing.T) {
	site := func(body string) string {
		return "mdm.example.com {\n\tmdm_auth {\n" + body + "\n\t}\n}\n"
	}
	// rule puts one option on line 5, inside a rule of a policy block;
	// essoOpt and discoveryOpt put it on line 4, inside an esso or a
	// discovery block. dsite is site for mdm_discovery.
	rule := func(opt string) string {
		return site("\t\tpolicy {\n\t\t\trule {\n\t\t\t\t" + opt + "\n\t\t\t}\n\t\t}")
	}
	essoOpt := func(opt string) string { return site("\t\tesso {\n\t\t\t" + opt + "\n\t\t}") }
	discoveryOpt := func(opt string) string { return site("\t\tdiscovery {\n\t\t\t" + opt + "\n\t\t}") }
	dsite := func(body string) string {
		return "example.com {\n\tmdm_discovery {\n" + body + "\n\t}\n}\n"
	}
	tests := []struct {
		name   string
		src    string
		want   []string // substrings of the error
		atLine int
	}{
		// unknown options
		{"unknown handler option", site("\t\tprotekt /mdm/ad"), []string{`unknown mdm_auth option "protekt"`}, 3},
		{"unknown oidc option", site("\t\toidc {\n\t\t\tclient_secrett x\n\t\t}"), []string{`unknown oidc option "client_secrett"`}, 4},
		{"unknown discovery option", site("\t\tdiscovery {\n\t\t\tdomain example.com\n\t\t}"), []string{`unknown discovery option "domain"`}, 4},
		{"unknown global option", "{\n\tmdm_auth {\n\t\tstore /x\n\t}\n}\n", []string{`unknown mdm_auth global option "store"`}, 3},
		{"storage without postgres", "{\n\tmdm_auth {\n\t\tstorage /x\n\t}\n}\n", []string{"storage takes one backend: postgres"}, 3},

		// missing or extra arguments
		{"directive argument", "mdm.example.com {\n\tmdm_auth enroll {\n\t}\n}\n", []string{"takes no matcher or arguments", `"enroll"`}, 2},
		{"directive path matcher", "mdm.example.com {\n\tmdm_auth /mdm* {\n\t}\n}\n", []string{"takes no matcher or arguments", `"/mdm*"`}, 2},
		{"directive named matcher", "mdm.example.com {\n\t@x path /x\n\tmdm_auth @x {\n\t}\n}\n", []string{"takes no matcher or arguments", `"@x"`}, 3},
		{"prefix without value", site("\t\tprefix"), []string{"wrong argument count", "'prefix'"}, 3},
		{"public_url with two values", site("\t\tpublic_url https://a https://b"), []string{"wrong argument count"}, 3},
		{"enrollment_profile without value", site("\t\tenrollment_profile"), []string{"wrong argument count", "'enrollment_profile'"}, 3},
		{"protect without path", site("\t\tprotect"), []string{"wrong argument count", "'protect'"}, 3},
		{"access_token_ttl without value", site("\t\taccess_token_ttl"), []string{"wrong argument count", "'access_token_ttl'"}, 3},
		{"flag with a value", site("\t\trequire_identifier_match yes"), []string{"wrong argument count"}, 3},
		{"max_mdm_body without value", site("\t\tmax_mdm_body"), []string{"wrong argument count", "'max_mdm_body'"}, 3},
		{"oidc with an argument", site("\t\toidc https://idp.example.com/"), []string{"wrong argument count"}, 3},
		{"issuer without value", site("\t\toidc {\n\t\t\tissuer\n\t\t}"), []string{"wrong argument count", "'issuer'"}, 4},
		{"client_id with two values", site("\t\toidc {\n\t\t\tclient_id a b\n\t\t}"), []string{"wrong argument count"}, 4},
		{"scopes without value", site("\t\toidc {\n\t\t\tscopes\n\t\t}"), []string{"wrong argument count", "'scopes'"}, 4},
		{"allow_unverified_email with a value", site("\t\toidc {\n\t\t\tallow_unverified_email true\n\t\t}"), []string{"wrong argument count"}, 4},
		{"discovery with an argument", site("\t\tdiscovery example.com"), []string{"wrong argument count"}, 3},
		{"domains without value", site("\t\tdiscovery {\n\t\t\tdomains\n\t\t}"), []string{"wrong argument count", "'domains'"}, 4},
		{"mode without value", site("\t\tdiscovery {\n\t\t\tmode\n\t\t}"), []string{"wrong argument count", "'mode'"}, 4},
		{"global option argument", "{\n\tmdm_auth /var/lib/mdmauth\n}\n", []string{"wrong argument count"}, 2},
		{"storage_dir without value", "{\n\tmdm_auth {\n\t\tstorage_dir\n\t}\n}\n", []string{"wrong argument count", "'storage_dir'"}, 3},

		{"sign_in without value", site("\t\tsign_in"), []string{"wrong argument count", "'sign_in'"}, 3},
		{"sign_in with two values", site("\t\tsign_in web oauth2"), []string{"wrong argument count"}, 3},
		{"oauth2 with an argument", site("\t\toauth2 mdmauth"), []string{"wrong argument count"}, 3},
		{"oauth2 client_id without value", site("\t\toauth2 {\n\t\t\tclient_id\n\t\t}"), []string{"wrong argument count", "'client_id'"}, 4},
		{"redirect_url with two values", site("\t\toauth2 {\n\t\t\tredirect_url a:/b c:/d\n\t\t}"), []string{"wrong argument count"}, 4},
		{"scope with two values", site("\t\toauth2 {\n\t\t\tscope mdm offline\n\t\t}"), []string{"wrong argument count"}, 4},
		{"refresh_token_ttl without value", site("\t\toauth2 {\n\t\t\trefresh_token_ttl\n\t\t}"), []string{"wrong argument count", "'refresh_token_ttl'"}, 4},
		{"auth_param with one argument", site("\t\toidc {\n\t\t\tauth_param access_type\n\t\t}"), []string{"wrong argument count", "'access_type'"}, 4},
		{"auth_param with three arguments", site("\t\toidc {\n\t\t\tauth_param access_type offline x\n\t\t}"), []string{"wrong argument count"}, 4},
		{"require_claim with no value", site("\t\toidc {\n\t\t\trequire_claim groups\n\t\t}"), []string{"wrong argument count", "'groups'"}, 4},
		{"require_claim with nothing", site("\t\toidc {\n\t\t\trequire_claim\n\t\t}"), []string{"wrong argument count", "'require_claim'"}, 4},
		{"revalidate_on_refresh with two durations", site("\t\toidc {\n\t\t\trevalidate_on_refresh 15m 30m\n\t\t}"), []string{"wrong argument count"}, 4},
		{"refresh_token_keys without value", site("\t\toidc {\n\t\t\trefresh_token_keys\n\t\t}"), []string{"wrong argument count", "'refresh_token_keys'"}, 4},
		{"unknown oauth2 option", site("\t\toauth2 {\n\t\t\tclient_secret x\n\t\t}"), []string{`unknown oauth2 option "client_secret"`}, 4},
		{"oidc option in oauth2", site("\t\toauth2 {\n\t\t\tscope mdm\n\t\t\trevalidate_on_refresh\n\t\t}"), []string{`unknown oauth2 option "revalidate_on_refresh"`}, 5},

		// sizes
		{"size with a bad unit", site("\t\tmax_enroll_body 64KB/s"), []string{`max_enroll_body: invalid size "64KB/s"`}, 3},
		{"size not a number", site("\t\tmax_mdm_body lots"), []string{`max_mdm_body: invalid size "lots"`}, 3},
		{"size zero", site("\t\tmax_mdm_body 0"), []string{`max_mdm_body: invalid size "0"`}, 3},
		{"size negative", site("\t\tmax_enroll_body -1KiB"), []string{`max_enroll_body: invalid size "-1KiB"`}, 3},
		{"size over 1GiB", site("\t\tmax_mdm_body 2GiB"), []string{`max_mdm_body: invalid size "2GiB"`}, 3},

		// durations
		{"duration without unit", site("\t\taccess_token_ttl 90"), []string{"access_token_ttl:", `"90"`}, 3},
		{"duration with a bad unit", site("\t\taccess_token_ttl 3w"), []string{"access_token_ttl:", `"3w"`}, 3},
		{"duration not a number", site("\t\treauth_max_age soon"), []string{"reauth_max_age:", `"soon"`}, 3},
		{"refresh_token_ttl not a duration", site("\t\toauth2 {\n\t\t\trefresh_token_ttl soon\n\t\t}"), []string{`refresh_token_ttl: invalid duration "soon"`}, 4},
		{"refresh_token_ttl with a bad unit", site("\t\toauth2 {\n\t\t\trefresh_token_ttl 13w\n\t\t}"), []string{`refresh_token_ttl: invalid duration "13w"`}, 4},
		{"sign_in_every zero", site("\t\toauth2 {\n\t\t\tsign_in_every 0\n\t\t}"), []string{`sign_in_every: invalid duration "0"`}, 4},
		{"sign_in_every without unit", site("\t\toauth2 {\n\t\t\tsign_in_every 30\n\t\t}"), []string{`sign_in_every: invalid duration "30"`}, 4},
		{"refresh_grace negative", site("\t\toauth2 {\n\t\t\trefresh_grace -1s\n\t\t}"), []string{`refresh_grace: invalid duration "-1s"`}, 4},
		{"revalidate_on_refresh not a duration", site("\t\toidc {\n\t\t\trevalidate_on_refresh soon\n\t\t}"), []string{"revalidate_on_refresh:", `"soon"`}, 4},
		{"revalidate_on_refresh without unit", site("\t\toidc {\n\t\t\trevalidate_on_refresh 15\n\t\t}"), []string{"revalidate_on_refresh:", `"15"`}, 4},
		// Like the oauth2 durations: a pace of zero or less is a mistake,
		// not a request for the default.
		{"revalidate_on_refresh negative", site("\t\toidc {\n\t\t\trevalidate_on_refresh -15m\n\t\t}"), []string{"revalidate_on_refresh:", `"-15m"`}, 4},

		// back-channel logout
		{"backchannel_logout unknown argument", site("\t\toidc {\n\t\t\tbackchannel_logout sid_only\n\t\t}"),
			[]string{`backchannel_logout: unknown argument "sid_only" (want all_sessions)`}, 4},
		{"backchannel_logout unknown option", site("\t\toidc {\n\t\t\tbackchannel_logout {\n\t\t\t\tleeway 1m\n\t\t\t}\n\t\t}"),
			[]string{`unknown backchannel_logout option "leeway" (want all_sessions, max_age)`}, 5},
		{"backchannel_logout max_age without value", site("\t\toidc {\n\t\t\tbackchannel_logout {\n\t\t\t\tmax_age\n\t\t\t}\n\t\t}"),
			[]string{"wrong argument count", "'max_age'"}, 5},
		{"backchannel_logout max_age not a duration", site("\t\toidc {\n\t\t\tbackchannel_logout {\n\t\t\t\tmax_age soon\n\t\t\t}\n\t\t}"),
			[]string{"backchannel_logout max_age:", `"soon"`}, 5},
		{"backchannel_logout max_age zero", site("\t\toidc {\n\t\t\tbackchannel_logout {\n\t\t\t\tmax_age 0s\n\t\t\t}\n\t\t}"),
			[]string{"backchannel_logout max_age:", `"0s"`}, 5},
		{"backchannel_logout all_sessions with a value", site("\t\toidc {\n\t\t\tbackchannel_logout {\n\t\t\t\tall_sessions yes\n\t\t\t}\n\t\t}"),
			[]string{"wrong argument count"}, 5},
		{"backchannel_logout twice", site("\t\toidc {\n\t\t\tbackchannel_logout\n\t\t\tbackchannel_logout all_sessions\n\t\t}"),
			[]string{"backchannel_logout given twice"}, 5},

		// policy
		{"policy with an argument", site("\t\tpolicy strict {\n\t\t}"), []string{"wrong argument count"}, 3},
		{"unknown policy option", site("\t\tpolicy {\n\t\t\trules {\n\t\t\t}\n\t\t}"), []string{`unknown policy option "rules" (want rule)`}, 4},
		{"rule with two names", site("\t\tpolicy {\n\t\t\trule a b {\n\t\t\t}\n\t\t}"), []string{"wrong argument count"}, 4},
		{"unknown rule option", rule("domain example.com"), []string{`unknown policy rule option "domain"`}, 5},
		{"discovery option in a rule", rule("unknown 404"), []string{`unknown policy rule option "unknown"`}, 5},
		{"rule domains without value", rule("domains"), []string{"wrong argument count", "'domains'"}, 5},
		{"rule families without value", rule("families"), []string{"wrong argument count", "'families'"}, 5},
		{"rule claim without value", rule("claim groups"), []string{"wrong argument count", "'groups'"}, 5},
		{"rule mode with two values", rule("mode byod adde"), []string{"wrong argument count"}, 5},
		{"rule profile without value", rule("profile"), []string{"wrong argument count", "'profile'"}, 5},
		{"deny with two messages", rule(`deny "no" "never"`), []string{"wrong argument count"}, 5},
		{"required_app_id not a number", rule("required_app_id abc"), []string{`required_app_id: want a positive integer, got "abc"`}, 5},
		{"required_app_id zero", rule("required_app_id 0"), []string{`required_app_id: want a positive integer, got "0"`}, 5},
		{"required_app_id negative", rule("required_app_id -1"), []string{`required_app_id: want a positive integer, got "-1"`}, 5},
		{"required_app_id too large", rule("required_app_id 99999999999999999999"), []string{`required_app_id: want a positive integer, got "99999999999999999999"`}, 5},
		{"required_app_id without value", rule("required_app_id"), []string{"wrong argument count", "'required_app_id'"}, 5},
		{"max_devices fractional", rule("max_devices 1.5"), []string{`max_devices: want a positive integer, got "1.5"`}, 5},
		{"max_devices zero", rule("max_devices 0"), []string{`max_devices: want a positive integer, got "0"`}, 5},
		{"max_devices with two values", rule("max_devices 1 2"), []string{"wrong argument count"}, 5},

		// esso
		{"esso with an argument", site("\t\tesso 1234567890"), []string{"wrong argument count"}, 3},
		{"unknown esso option", essoOpt("itunes_id 1"), []string{`unknown esso option "itunes_id"`}, 4},
		{"itunes_store_id not a number", essoOpt("itunes_store_id id1234567890"), []string{`itunes_store_id: want a positive integer, got "id1234567890"`}, 4},
		{"itunes_store_id zero", essoOpt("itunes_store_id 0"), []string{`itunes_store_id: want a positive integer, got "0"`}, 4},
		{"itunes_store_id negative", essoOpt("itunes_store_id -7"), []string{`itunes_store_id: want a positive integer, got "-7"`}, 4},
		{"itunes_store_id with two values", essoOpt("itunes_store_id 1 2"), []string{"wrong argument count"}, 4},
		{"associated_domains without value", essoOpt("associated_domains"), []string{"wrong argument count", "'associated_domains'"}, 4},
		{"declarations without value", essoOpt("declarations"), []string{"wrong argument count", "'declarations'"}, 4},
		{"app_ids without value", essoOpt("app_ids"), []string{"wrong argument count", "'app_ids'"}, 4},
		{"configuration_profile with two values", essoOpt("configuration_profile /a /b"), []string{"wrong argument count"}, 4},
		{"test_mode with a value", essoOpt("test_mode on"), []string{"wrong argument count"}, 4},
		{"direct_downloads with a value", essoOpt("direct_downloads true"), []string{"wrong argument count"}, 4},

		// discovery unknown
		{"unknown without value", discoveryOpt("unknown"), []string{`unknown: want 403 ["message"] or 404`}, 4},
		{"unknown other status", discoveryOpt("unknown 410"), []string{`unknown: want 403 ["message"] or 404`}, 4},
		{"unknown 404 with a message", discoveryOpt(`unknown 404 "Ask Apple."`), []string{`unknown: want 403 ["message"] or 404`}, 4},
		{"unknown 403 with two messages", discoveryOpt(`unknown 403 "a" "b"`), []string{`unknown: want 403 ["message"] or 404`}, 4},
		{"unknown message without status", discoveryOpt(`unknown "Not here."`), []string{`unknown: want 403 ["message"] or 404`}, 4},

		// enrollment profiles and signing
		{"enrollment_profile with two files", site("\t\tenrollment_profile /a /b"), []string{"wrong argument count"}, 3},
		{"sign_cert without sign_key", site("\t\tenrollment_profile /e {\n\t\t\tsign_cert /c.pem\n\t\t}"),
			[]string{"enrollment_profile: sign_cert and sign_key go together"}, 5},
		{"sign_key without sign_cert", site("\t\tenrollment_profile /e {\n\t\t\tsign_key /k.pem\n\t\t}"),
			[]string{"enrollment_profile: sign_cert and sign_key go together"}, 5},
		{"sign_cert without value", site("\t\tenrollment_profile /e {\n\t\t\tsign_cert\n\t\t\tsign_key /k.pem\n\t\t}"),
			[]string{"wrong argument count", "'sign_cert'"}, 4},
		{"unknown enrollment_profile option", site("\t\tenrollment_profile /e {\n\t\t\tsign_chain /c.pem\n\t\t}"),
			[]string{`unknown enrollment_profile option "sign_chain" (want sign_cert, sign_key)`}, 4},
		{"enrollment_profiles with an argument", site("\t\tenrollment_profiles /etc/profiles {\n\t\t}"), []string{"wrong argument count"}, 3},
		{"enrollment_profiles entry without file", site("\t\tenrollment_profiles {\n\t\t\tkiosk\n\t\t}"), []string{"wrong argument count", "'kiosk'"}, 4},
		{"enrollment_profiles entry with two files", site("\t\tenrollment_profiles {\n\t\t\tkiosk /a /b\n\t\t}"), []string{"wrong argument count"}, 4},
		{"enrollment_profiles name twice", site("\t\tenrollment_profiles {\n\t\t\tkiosk /a\n\t\t\tkiosk /b\n\t\t}"),
			[]string{`enrollment_profiles: "kiosk" given twice`}, 5},
		{"managed_apple_id_template without value", site("\t\toidc {\n\t\t\tmanaged_apple_id_template\n\t\t}"),
			[]string{"wrong argument count", "'managed_apple_id_template'"}, 4},

		// mdm_discovery
		{"mdm_discovery path matcher", "example.com {\n\tmdm_discovery /.well-known/* {\n\t\tredirect https://mdm.example.com\n\t}\n}\n",
			[]string{"mdm_discovery takes no matcher or arguments", `"/.well-known/*"`}, 2},
		{"mdm_discovery named matcher", "example.com {\n\t@wk path /.well-known/*\n\tmdm_discovery @wk {\n\t\tredirect https://mdm.example.com\n\t}\n}\n",
			[]string{"mdm_discovery takes no matcher or arguments", `"@wk"`}, 3},
		{"mdm_discovery argument", "example.com {\n\tmdm_discovery https://mdm.example.com\n}\n",
			[]string{"mdm_discovery takes no matcher or arguments", `"https://mdm.example.com"`}, 2},
		{"unknown mdm_discovery option", dsite("\t\tdiscovery {\n\t\t}"), []string{`unknown mdm_discovery option "discovery"`}, 3},
		{"redirect without value", dsite("\t\tredirect"), []string{"wrong argument count", "'redirect'"}, 3},
		{"base_url with two values", dsite("\t\tbase_url https://a/x https://b/x"), []string{"wrong argument count"}, 3},
		{"mdm_discovery domains without value", dsite("\t\tdomains"), []string{"wrong argument count", "'domains'"}, 3},
		{"mdm_discovery mode without value", dsite("\t\tmode"), []string{"wrong argument count", "'mode'"}, 3},
		{"mdm_discovery unknown 404 with a message", dsite("\t\tunknown 404 \"x\""), []string{`unknown: want 403 ["message"] or 404`}, 3},
		{"mdm_discovery unknown policy option", dsite("\t\tpolicy {\n\t\t\tallow example.com\n\t\t}"), []string{`unknown policy option "allow" (want rule)`}, 4},
		{"mdm_discovery bad rule integer", dsite("\t\tpolicy {\n\t\t\trule {\n\t\t\t\tmax_devices many\n\t\t\t}\n\t\t}"),
			[]string{`max_devices: want a positive integer, got "many"`}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := adaptCaddyfile(t, "Caddyfile", []byte(tt.src))
			if err == nil {
				t.Fatalf("adapted without error:\n%s\nto %s", tt.src, out)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if at := "Caddyfile:" + strconv.Itoa(tt.atLine); !strings.Contains(msg, at) {
				t.Errorf("error %q does not point at %s", msg, at)
			}
		})
	}
}
