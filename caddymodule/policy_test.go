package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/mdmauth/mdmauth/internal/esso"
	"github.com/mdmauth/mdmauth/internal/token"
)

// fullHandler returns a handler config using every option of policies,
// named profiles, profile signing and Enrollment SSO, with its files in
// dir, and the signing identity.
func fullHandler(t *testing.T, dir string) (map[string]any, *signingIdentity) {
	t.Helper()
	id := currentSigningIdentity(t, dir, "signing")
	decl := func(name string) string { return filepath.Join(essoTestdata, "declarations", name+".json") }
	h := validHandler(copyProfile(t, dir))
	h["oidc"].(map[string]any)["managed_apple_id_template"] = "{claim.preferred_username}@appleid.example.com"
	h["discovery"] = map[string]any{
		"domains": []string{"example.com", "contractors.example.com"}, "mode": "byod", "model_modes": map[string]string{"Mac": "adde"},
		"unknown": "403", "unknown_message": "Sign in with your example.com account.",
	}
	h["enrollment_profiles"] = map[string]string{"kiosk": writeKioskProfile(t, dir)}
	h["profile_signing"] = map[string]any{"cert_file": id.certFile, "key_file": id.keyFile}
	h["policy"] = map[string]any{"rules": []any{
		map[string]any{"name": "contractors", "domains": []string{"contractors.example.com"}, "deny": true, "message": "Contractors cannot enroll here."},
		map[string]any{"name": "kiosks", "domains": []string{"example.com"}, "families": []string{"iPad"}, "mode": "adde",
			"profile": "kiosk", "required_app_id": 1234567890, "max_devices": 2},
		map[string]any{"name": "staff", "domains": []string{"example.com"}},
	}}
	h["esso"] = map[string]any{
		"itunes_store_id":       1234567890,
		"associated_domains":    []string{"authsrv:login.example.com"},
		"configuration_profile": filepath.Join(essoTestdata, "redirect.mobileconfig"),
		"declarations":          []string{decl("activation"), decl("app"), decl("asset"), decl("legacy")},
	}
	return h, id
}

// TestProvisionFullValidates is the baseline of the new options: all of
// them together provision.
func TestProvisionFullValidates(t *testing.T) {
	dir := t.TempDir()
	h, _ := fullHandler(t, dir)
	store := filepath.Join(dir, "store")
	if err := caddy.Validate(testConfig(t, store, h)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	openReleased(t, store)
}

// TestPolicyProvisioned checks, through the handler's answers, what the
// new options configured.
func TestPolicyProvisioned(t *testing.T) {
	dir := t.TempDir()
	hc, id := fullHandler(t, dir)
	h, st := provisioned(t, hc)

	t.Run("discovery", func(t *testing.T) {
		tests := []struct {
			query  string
			status int
			want   string // body, or the refusal's message
		}{
			{"user-identifier=alice@example.com&model-family=iPad", http.StatusOK,
				`{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/mdmauth/enroll/adde?model-family=iPad"}]}`},
			{"user-identifier=alice@example.com&model-family=Mac", http.StatusOK,
				`{"Servers":[{"Version":"mdm-adde","BaseURL":"https://mdm.example.com/mdmauth/enroll/adde?model-family=Mac"}]}`},
			{"user-identifier=alice@example.com&model-family=iPhone", http.StatusOK,
				`{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/mdmauth/enroll/byod?model-family=iPhone"}]}`},
			{"user-identifier=carol@contractors.example.com&model-family=iPhone", http.StatusForbidden, "Contractors cannot enroll here."},
			{"user-identifier=eve@example.org&model-family=iPhone", http.StatusForbidden, "Sign in with your example.com account."},
		}
		for _, tt := range tests {
			w := serveHandler(t, h, httptest.NewRequest(http.MethodGet, "https://mdm.example.com"+wellKnown+"?"+tt.query, nil))
			if w.Code != tt.status {
				t.Errorf("%s: status %d, want %d; body %s", tt.query, w.Code, tt.status, w.Body)
				continue
			}
			if tt.status == http.StatusOK {
				if w.Body.String() != tt.want {
					t.Errorf("%s: body %s, want %s", tt.query, w.Body, tt.want)
				}
				continue
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["code"] != "com.apple.well-known.failed" || body["message"] != tt.want {
				t.Errorf("%s: body %s (%v), want com.apple.well-known.failed with message %q", tt.query, w.Body, err, tt.want)
			}
		}
	})

	t.Run("esso header", func(t *testing.T) {
		w := serveHandler(t, h, enrollPOST(""))
		challengeOf(t, w)
		if got := w.Header().Get(esso.Header); got != "https://mdm.example.com/mdmauth/esso" {
			t.Errorf("%s %q, want https://mdm.example.com/mdmauth/esso", esso.Header, got)
		}
		mac := httptest.NewRequest(http.MethodPost, "https://mdm.example.com/mdmauth/enroll/adde?model-family=Mac", nil)
		w = serveHandler(t, h, mac)
		challengeOf(t, w)
		if got := w.Header().Values(esso.Header); len(got) != 0 {
			t.Errorf("%s %q on a Mac's challenge", esso.Header, got)
		}
	})

	t.Run("esso document", func(t *testing.T) {
		w := serveHandler(t, h, httptest.NewRequest(http.MethodGet, "https://mdm.example.com/mdmauth/esso", nil))
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d Content-Type %q Cache-Control %q", w.Code, w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"))
		}
		var doc struct {
			ITunesStoreID        json.Number `json:"iTunesStoreID"`
			AssociatedDomains    []string
			ConfigurationProfile []byte
			Declarations         [][]byte
			AppIDs               []string
		}
		dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("document %s: %v", w.Body, err)
		}
		want, err := os.ReadFile(filepath.Join(essoTestdata, "redirect.mobileconfig"))
		if err != nil {
			t.Fatal(err)
		}
		if doc.ITunesStoreID != "1234567890" || len(doc.AssociatedDomains) != 1 || !bytes.Equal(doc.ConfigurationProfile, want) ||
			len(doc.Declarations) != 4 || doc.AppIDs != nil {
			t.Errorf("document %s does not hold the configured store id, domains, profile and four declarations", w.Body)
		}
	})

	t.Run("named, signed profile", func(t *testing.T) {
		tokens := &token.Manager{Store: st, Lifetime: token.Lifetime{TTL: 24 * time.Hour, Floor: time.Hour}}
		tests := []struct {
			name, profile, mode, serverURL string
			appID                          int64
		}{
			{"kiosk template", "kiosk", "adde", "https://mdm.example.com/mdm/kiosk", 1234567890},
			{"default template", "", "byod", "https://mdm.example.com/mdm/ad", 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				raw, _, err := tokens.Issue(context.Background(), token.Grant{
					Issuer: "https://idp.example.com/", Subject: "sub-alice", UserIdentifier: "alice@example.com",
					ManagedAppleID: "alice@appleid.example.com", Mode: tt.mode, ModelFamily: "iPad",
					Profile: tt.profile, RequiredAppID: tt.appID,
				})
				if err != nil {
					t.Fatal(err)
				}
				r := httptest.NewRequest(http.MethodPost, "https://mdm.example.com/mdmauth/enroll/"+tt.mode+"?model-family=iPad", nil)
				r.Header.Set("Authorization", "Bearer "+raw)
				w := serveHandler(t, h, r)
				if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-apple-aspen-config" {
					t.Fatalf("status %d Content-Type %q, want the profile; body %q", w.Code, w.Header().Get("Content-Type"), w.Body)
				}
				if v := w.Header().Values(esso.Header); len(v) != 0 {
					t.Errorf("%s %q on the profile", esso.Header, v)
				}
				p7, err := pkcs7.Parse(w.Body.Bytes())
				if err != nil {
					t.Fatalf("the profile is not CMS: %v", err)
				}
				if err := p7.Verify(); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if s := p7.GetOnlySigner(); s == nil || !s.Equal(id.cert) {
					t.Error("not signed by the sign_cert certificate")
				}
				mdm := mdmPayload(t, p7.Content)
				if mdm["ServerURL"] != tt.serverURL || mdm["AssignedManagedAppleID"] != "alice@appleid.example.com" {
					t.Errorf("ServerURL %v AssignedManagedAppleID %v, want %s", mdm["ServerURL"], mdm["AssignedManagedAppleID"], tt.serverURL)
				}
				got, ok := mdm["RequiredAppIDForMDM"]
				if tt.appID == 0 && ok || tt.appID != 0 && got != uint64(tt.appID) {
					t.Errorf("RequiredAppIDForMDM %v (%T), want %d", got, got, tt.appID)
				}
			})
		}
	})
}

// TestESSOTestModeProvisioned checks that test_mode serves the document
// through X-Apple-MDM-ESSO-Developer, with the app ids.
func TestESSOTestModeProvisioned(t *testing.T) {
	hc := validHandler(copyProfile(t, t.TempDir()))
	hc["esso"] = map[string]any{
		"test_mode": true, "app_ids": []string{"ABCDE12345.com.example.sso"},
		"configuration_profile": filepath.Join(essoTestdata, "redirect.mobileconfig"),
	}
	h, _ := provisioned(t, hc)
	w := serveHandler(t, h, enrollPOST(""))
	challengeOf(t, w)
	if got := w.Header().Get(esso.DeveloperHeader); got != "https://mdm.example.com/mdmauth/esso" {
		t.Errorf("%s %q, want https://mdm.example.com/mdmauth/esso", esso.DeveloperHeader, got)
	}
	if got := w.Header().Values(esso.Header); len(got) != 0 {
		t.Errorf("%s %q in test mode", esso.Header, got)
	}
	w = serveHandler(t, h, httptest.NewRequest(http.MethodGet, "https://mdm.example.com/mdmauth/esso", nil))
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if ids, _ := doc["AppIDs"].([]any); len(ids) != 1 || ids[0] != "ABCDE12345.com.example.sso" {
		t.Errorf("AppIDs %v, want [ABCDE12345.com.example.sso]", doc["AppIDs"])
	}
	if _, ok := doc["iTunesStoreID"]; ok {
		t.Errorf("iTunesStoreID %v, want none", doc["iTunesStoreID"])
	}
}

// mdmPayload decodes a profile and returns its com.apple.mdm payload.
func mdmPayload(t *testing.T, profile []byte) map[string]any {
	t.Helper()
	var prof struct {
		PayloadContent []map[string]any
	}
	if err := plist.NewXMLDecoder(io.LimitReader(bytes.NewReader(profile), 1<<20)).Decode(&prof); err != nil {
		t.Fatalf("profile: %v", err)
	}
	for _, p := range prof.PayloadContent {
		if p["PayloadType"] == "com.apple.mdm" {
			return p
		}
	}
	t.Fatal("no com.apple.mdm payload")
	return nil
}
