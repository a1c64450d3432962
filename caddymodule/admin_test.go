package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	dto "github.com/prometheus/client_model/go"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/token"
)

const (
	admURL    = "http://" + itAdmin + "/mdm_auth/"
	admIssuer = "https://idp.example.com"
)

// admEnv is an in-process Caddy (caddytest) running mdm_auth.
type admEnv struct {
	t       *testing.T
	tester  *caddytest.Tester
	dir     string
	idp     *fakeIdP
	nanomdm *recordingUpstream
	client  *http.Client
}

func newAdmEnv(t *testing.T) *admEnv {
	t.Helper()
	t.Setenv("MDMAUTH_IT_OIDC_SECRET", itSecret)
	e := &admEnv{t: t, tester: newTester(t), dir: t.TempDir(), idp: newFakeIdP(t), nanomdm: newRecordingUpstream(t),
		client: &http.Client{Timeout: 30 * time.Second}}
	t.Cleanup(func() {
		e.tester.InitServer("{\n\tadmin localhost:2999\n\thttp_port 9080\n\thttps_port 9443\n\tskip_install_trust\n}\n", "caddyfile")
	})
	return e
}

// config is itConfig with the store in dir/<storeName>.
func (e *admEnv) config(storeName, name string) string {
	return strings.NewReplacer(
		"{{.Store}}", filepath.Join(e.dir, storeName), "{{.Issuer}}", e.idp.URL, "{{.Profile}}", copyProfile(e.t, e.dir),
		"{{.NanoMDM}}", strings.TrimPrefix(e.nanomdm.URL, "http://"),
		"{{.Discovery}}", "domains example.com", "{{.Name}}", name,
	).Replace(itConfig)
}

func (e *admEnv) load(cfg string) {
	e.t.Helper()
	e.tester.InitServer(cfg, "caddyfile")
	if e.t.Failed() {
		e.t.FailNow()
	}
}

// withStore runs fn on the running app's store, as the admin API does.
func (e *admEnv) withStore(fn func(m *token.Manager, s store.Store)) {
	e.t.Helper()
	app, err := acquireRunning()
	if err != nil {
		e.t.Fatal(err)
	}
	defer app.release()
	fn(&token.Manager{Store: app.store, Lifetime: token.Lifetime{TTL: 24 * time.Hour, Floor: time.Hour}}, app.store)
}

// issue mints a web sign-in token for user in the running store.
func (e *admEnv) issue(user string) (string, store.Hash) {
	e.t.Helper()
	var raw string
	var h store.Hash
	e.withStore(func(m *token.Manager, _ store.Store) {
		r, tk, err := m.Issue(context.Background(), token.Grant{Issuer: admIssuer, Subject: "sub-" + user,
			ManagedAppleID: user + "@example.com", Mode: "byod", ModelFamily: "iPhone"})
		if err != nil {
			e.t.Fatal(err)
		}
		raw, h = r, tk.Hash
	})
	return raw, h
}

// checkIn sends an Authenticate of enrollment id with bearer to the
// protected path and returns the status and whether it was challenged.
func (e *admEnv) checkIn(bearer, id string) (int, bool) {
	e.t.Helper()
	body := `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
<key>MessageType</key><string>Authenticate</string>
<key>EnrollmentID</key><string>` + id + `</string>
<key>Model</key><string>iPhone17,2</string>
<key>Topic</key><string>com.apple.mgmt.External.00000000-0000-0000-0000-000000000000</string>
</dict></plist>
`
	req, _ := http.NewRequest(http.MethodPut, itBase+"/mdm/ad", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-apple-aspen-mdm-checkin")
	req.Header.Set("Authorization", "Bearer "+bearer)
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, strings.HasPrefix(res.Header.Get("WWW-Authenticate"), `Bearer method="apple-as-web"`)
}

// api calls the admin API and returns the status, headers and body.
func (e *admEnv) api(method, path, body string) (int, http.Header, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, admURL+path, r)
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

// cli runs "caddy mdm-auth <args> --address localhost:2999".
func (e *admEnv) cli(args ...string) (string, error) {
	e.t.Helper()
	return runCaddy(e.t, append(append([]string{"mdm-auth"}, args...), "--address", itAdmin)...)
}

func (e *admEnv) mustCLI(args ...string) string {
	e.t.Helper()
	out, err := e.cli(args...)
	if err != nil {
		e.t.Fatalf("caddy mdm-auth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestAdminAPIAndCLIThroughCaddy(t *testing.T) {
	e := newAdmEnv(t)
	e.load(e.config("store", "admin"))

	alice, _ := e.issue("alice")
	bob, bobHash := e.issue("bob")
	for tok, id := range map[string]string{alice: "UE-ALICE", bob: "UE-BOB"} {
		if code, _ := e.checkIn(tok, id); code != http.StatusOK {
			t.Fatalf("check-in of %s: %d, want 200 (bound)", id, code)
		}
	}

	// The API through Caddy's admin endpoint.
	code, _, body := e.api("GET", "enrollments?limit=1", "")
	var page admin.EnrollmentList
	if code != 200 || json.Unmarshal(body, &page) != nil || len(page.Enrollments) != 1 || page.Enrollments[0].ID != "UE-ALICE" || page.NextCursor == "" {
		t.Fatalf("first page: %d %s", code, body)
	}
	code, h, body := e.api("POST", "stats", "")
	if code != http.StatusMethodNotAllowed || h.Get("Allow") != "GET" || h.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"error":`) {
		t.Errorf("POST stats: %d %v %s", code, h, body)
	}
	if code, _, body = e.api("GET", "enrollments/NOPE", ""); code != http.StatusNotFound || !strings.Contains(string(body), `"error":"enrollment not found"`) {
		t.Errorf("unknown enrollment: %d %s", code, body)
	}
	if bytes.Contains(body, []byte(alice)) {
		t.Error("an answer holds a token")
	}

	// The CLI.
	out := e.mustCLI("list")
	for _, want := range []string{"ENROLLMENT", "UE-ALICE", "UE-BOB", "alice@example.com", "active", admIssuer + ",sub-bob"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if out = e.mustCLI("list", "--limit", "1"); !strings.Contains(out, "more: --cursor ") || strings.Contains(out, "UE-BOB") {
		t.Errorf("one page:\n%s", out)
	}
	if out = e.mustCLI("list", "--limit", "1", "--all", "--json"); !strings.Contains(out, `"id": "UE-BOB"`) || strings.Contains(out, "next_cursor") {
		t.Errorf("--all --json:\n%s", out)
	}
	if out = e.mustCLI("list", "--user", admIssuer+",sub-bob"); strings.Contains(out, "UE-ALICE") || !strings.Contains(out, "UE-BOB") {
		t.Errorf("--user:\n%s", out)
	}
	if out = e.mustCLI("list", "--tokens", "--live"); !strings.Contains(out, bobHash.ID()) || strings.Contains(out, bob) {
		t.Errorf("--tokens:\n%s", out)
	}
	if out = e.mustCLI("show", "UE-BOB"); !strings.Contains(out, bobHash.ID()) || !strings.Contains(out, "bob@example.com") {
		t.Errorf("show:\n%s", out)
	}

	// Block: the device is challenged on its very next request.
	revokedBefore := adminRevocations(t)
	if out = e.mustCLI("block", "UE-ALICE"); !strings.Contains(out, "active → blocked") || !strings.Contains(out, "revoked 1 tokens") {
		t.Errorf("block:\n%s", out)
	}
	if code, challenged := e.checkIn(alice, "UE-ALICE"); code != http.StatusUnauthorized || !challenged {
		t.Errorf("check-in after block: %d (challenged %v), want 401", code, challenged)
	}
	if got := adminRevocations(t); got != revokedBefore+1 {
		t.Errorf("mdm_auth_tokens_revoked_total{reason=admin} went from %v to %v, want one more", revokedBefore, got)
	}
	if _, err := e.cli("block", "UE-ALICE"); err == nil || !strings.Contains(err.Error(), "HTTP 409") {
		t.Errorf("blocking again: %v, want HTTP 409", err)
	}
	if out = e.mustCLI("unblock", "UE-ALICE"); !strings.Contains(out, "blocked → reauth") {
		t.Errorf("unblock:\n%s", out)
	}
	if _, err := e.cli("show", "NOPE"); err == nil || !strings.Contains(err.Error(), "HTTP 404: enrollment not found") {
		t.Errorf("show NOPE: %v", err)
	}

	// Profile rendering for the MDM.
	profPath := filepath.Join(e.dir, "bob.mobileconfig")
	e.mustCLI("profile", "UE-BOB", "--output", profPath)
	if prof, err := os.ReadFile(profPath); err != nil || !bytes.Contains(prof, []byte("<string>bob@example.com</string>")) {
		t.Errorf("rendered profile: %v\n%s", err, prof)
	}

	// Revoke bob's token by its id: challenged next.
	if out = e.mustCLI("revoke", bobHash.ID()); !strings.Contains(out, "token "+bobHash.ID()) {
		t.Errorf("revoke:\n%s", out)
	}
	if code, challenged := e.checkIn(bob, "UE-BOB"); code != http.StatusUnauthorized || !challenged {
		t.Errorf("check-in after revoke: %d (challenged %v), want 401", code, challenged)
	}

	// A user-wide action; an error for one enrollment is a non-zero exit.
	if out = e.mustCLI("offboard", "--user", admIssuer+",sub-bob", "--within", "2h"); !strings.Contains(out, "1 changed") {
		t.Errorf("offboard --user:\n%s", out)
	}
	if out, err := e.cli("reauth", "--user", admIssuer+",sub-bob"); err == nil || !strings.Contains(out, "error") {
		t.Errorf("reauth of an offboarding device: %v\n%s", err, out)
	}

	out = e.mustCLI("stats")
	for _, want := range []string{"store:", "ok", "enrollments reauth:", "enrollments offboarding:"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}

	// The admin address read from the configuration.
	cfgPath := filepath.Join(e.dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(e.config("store", "admin")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCaddy(t, "mdm-auth", "list", "--config", cfgPath, "--adapter", "caddyfile", "--json"); err != nil || !strings.Contains(out, `"UE-ALICE"`) {
		t.Errorf("list --config: %v\n%s", err, out)
	}

	// Live backup, restore offline into a new directory.
	backup := filepath.Join(e.dir, "store.backup")
	if out = e.mustCLI("backup", "--output", backup); !strings.Contains(out, "backup written to") {
		t.Errorf("backup:\n%s", out)
	}
	if _, err := e.cli("backup", "--output", filepath.Join(e.dir, "offline.backup"), "--storage-dir", filepath.Join(e.dir, "store")); err == nil ||
		!strings.Contains(err.Error(), "is Caddy running?") {
		t.Errorf("offline backup of a store in use: %v", err)
	}
	restored := filepath.Join(e.dir, "restored")
	if out, err := runCaddy(t, "mdm-auth", "restore", "--storage-dir", restored, "--input", backup); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if _, err := runCaddy(t, "mdm-auth", "restore", "--storage-dir", restored, "--input", backup); err == nil || !strings.Contains(err.Error(), "empty directory") {
		t.Errorf("restore into a used directory: %v", err)
	}
	s, err := badger.Open(badger.Options{Dir: restored, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	en, err := s.Enrollment(context.Background(), "UE-ALICE")
	if err != nil || en.State != store.StateReauth {
		t.Errorf("restored UE-ALICE: %+v %v", en, err)
	}
	s.Close()
	// The offline backup of the restored copy works while nothing holds it.
	if _, err := runCaddy(t, "mdm-auth", "backup", "--output", filepath.Join(e.dir, "offline.backup"), "--storage-dir", restored); err != nil {
		t.Errorf("offline backup: %v", err)
	}
}

// The API serves the configuration in force: a reload to another store
// moves it there, a request still using the old store keeps it open until
// it ends, a failed reload leaves it on the running one, and without
// mdm_auth it answers 503.
func TestAdminAPIFollowsReloads(t *testing.T) {
	e := newAdmEnv(t)
	e.load(e.config("first", "first"))
	raw, _ := e.issue("alice")
	if code, _ := e.checkIn(raw, "UE-FIRST"); code != 200 {
		t.Fatal(code)
	}
	pinned, err := acquireRunning()
	if err != nil {
		t.Fatal(err)
	}

	e.load(e.config("second", "second"))
	code, _, body := e.api("GET", "enrollments", "")
	if code != 200 || !strings.Contains(string(body), `"enrollments":[]`) {
		t.Errorf("after the reload: %d %s, want the second (empty) store", code, body)
	}
	// The request that began before the reload still has its store.
	if en, err := pinned.store.Enrollment(context.Background(), "UE-FIRST"); err != nil || en.ID != "UE-FIRST" {
		t.Errorf("pinned store: %v", err)
	}
	pinned.release()
	openReleased(t, filepath.Join(e.dir, "first"))

	raw, _ = e.issue("bob")
	if code, _ := e.checkIn(raw, "UE-SECOND"); code != 200 {
		t.Fatal(code)
	}
	// A config that fails to load: Caddy replaced its admin endpoint (and
	// provisioned this API anew) before the failure.
	bad := strings.Replace(e.config("third", "third"), "enrollment_profile ", "enrollment_profile /nonexistent/", 1)
	req, _ := http.NewRequest(http.MethodPost, "http://"+itAdmin+"/load", strings.NewReader(bad))
	req.Header.Set("Content-Type", "text/caddyfile")
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode < 400 {
		t.Fatalf("the broken config loaded: %d", res.StatusCode)
	}
	if code, _, body = e.api("GET", "enrollments", ""); code != 200 || !strings.Contains(string(body), `"id":"UE-SECOND"`) {
		t.Errorf("after a failed reload: %d %s, want the running store", code, body)
	}
	if code, _, body = e.api("GET", "health", ""); code != 200 {
		t.Errorf("health after a failed reload: %d %s", code, body)
	}

	e.load("{\n\tadmin localhost:2999\n\thttp_port 9080\n\thttps_port 9443\n\tskip_install_trust\n}\n")
	if code, _, body = e.api("GET", "stats", ""); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "not running") {
		t.Errorf("without mdm_auth: %d %s, want 503", code, body)
	}
	openReleased(t, filepath.Join(e.dir, "second"))
}

func TestAdminProfileSites(t *testing.T) {
	e := newAdmEnv(t)
	two := strings.Replace(e.config("store", "sites"), "\tmdm_auth {\n\t\toidc", "\tmdm_auth {\n\t\tpublic_url https://mdm.example.com\n\t\toidc", 1) + `
http://127.0.0.1:9080 {
	mdm_auth {
		public_url https://mdm.example.org
		oidc {
			issuer ` + e.idp.URL + `
			client_id mdmauth
			client_secret {env.MDMAUTH_IT_OIDC_SECRET}
		}
		discovery {
			domains example.org
		}
		enrollment_profile ` + filepath.Join(e.dir, "enroll.mobileconfig") + `
		protect /mdm/ad
	}
}
`
	e.load(two)
	raw, _ := e.issue("alice")
	if code, _ := e.checkIn(raw, "UE-1"); code != 200 {
		t.Fatal(code)
	}
	for _, tt := range []struct {
		query string
		want  int
	}{
		{"", 400}, {"?site=mdm.example.org", 200}, {"?site=EXAMPLE.com", 200}, {"?site=nowhere.example", 400},
	} {
		code, h, body := e.api("POST", "enrollments/UE-1/profile"+tt.query, "")
		if code != tt.want {
			t.Errorf("%q: %d %s, want %d", tt.query, code, body, tt.want)
		}
		if code == 200 && (h.Get("Content-Type") != "application/x-apple-aspen-config" || !bytes.Contains(body, []byte("alice@example.com"))) {
			t.Errorf("%q: %v %s", tt.query, h, body)
		}
	}
	e.withStore(func(m *token.Manager, _ store.Store) {
		if _, err := m.SetState(context.Background(), "UE-1", store.StateBlocked, time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
	if code, _, body := e.api("POST", "enrollments/UE-1/profile?site=mdm.example.com", ""); code != http.StatusConflict {
		t.Errorf("blocked: %d %s, want 409", code, body)
	}
}

// The README's admin endpoint snippets are valid Caddy configuration.
func TestREADMEAdminSnippets(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "## Operating it: admin API and CLI")
	end := strings.Index(s[start:], "\n## Reference")
	if start < 0 || end < 0 {
		t.Fatal("the README has no operating section")
	}
	s = s[start : start+end]
	block := func(lang string) string {
		i := strings.Index(s, "```"+lang+"\n")
		if i < 0 {
			t.Fatalf("no %s block", lang)
		}
		rest := s[i+len(lang)+4:]
		return rest[:strings.Index(rest, "```")]
	}
	var cfg caddy.Config
	if err := caddy.StrictUnmarshalJSON([]byte(block("json")), &cfg); err != nil {
		t.Fatalf("the remote admin JSON: %v", err)
	}
	if cfg.Admin == nil || cfg.Admin.Remote == nil || len(cfg.Admin.Remote.AccessControl) != 2 || cfg.Admin.Identity == nil {
		t.Fatalf("the remote admin JSON lacks parts: %+v", cfg.Admin)
	}
	for _, ac := range cfg.Admin.Remote.AccessControl {
		if len(ac.Permissions) == 0 {
			t.Error("an access control entry without permissions grants everything")
		}
		for _, p := range ac.Permissions {
			for _, path := range p.Paths {
				if !strings.HasPrefix(path, "/mdm_auth/") {
					t.Errorf("permission path %q is outside the API", path)
				}
			}
		}
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(block("caddy")), nil)
	if err != nil {
		t.Fatalf("the Caddyfile snippet: %v", err)
	}
	if !strings.Contains(string(adapted), `"listen":"unix//run/caddy/admin.sock"`) {
		t.Errorf("the Caddyfile snippet adapts to %s", adapted)
	}
}

// adminRevocations reads mdm_auth_tokens_revoked_total{reason="admin"}.
func adminRevocations(t *testing.T) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := procMetrics.tokensRevoked.WithLabelValues("admin").Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
