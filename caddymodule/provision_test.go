package caddymodule

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// testConfig returns a Caddy config with the mdm_auth app storing in
// storageDir (no app at all when it is "") and one HTTP server whose only
// route runs handler. Nothing in it listens until started.
func testConfig(t *testing.T, storageDir string, handler map[string]any) *caddy.Config {
	t.Helper()
	apps := map[string]any{
		"http": map[string]any{
			"servers": map[string]any{
				"test": map[string]any{
					"listen":          []string{"127.0.0.1:0"},
					"automatic_https": map[string]any{"disable": true},
					"routes":          []any{map[string]any{"handle": []any{handler}}},
				},
			},
		},
	}
	if storageDir != "" {
		apps["mdm_auth"] = map[string]any{"storage_dir": storageDir}
	}
	data, err := json.Marshal(map[string]any{"admin": map[string]any{"disabled": true}, "apps": apps})
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// validHandler returns a handler config that provisions.
func validHandler(profile string) map[string]any {
	return map[string]any{
		"handler": "mdm_auth",
		"oidc": map[string]any{
			"issuer":        "https://idp.example.com/",
			"client_id":     "mdmauth",
			"client_secret": "secret",
		},
		"discovery":          map[string]any{"domains": []string{"example.com"}, "mode": "byod", "model_modes": map[string]string{"Mac": "adde"}},
		"enrollment_profile": profile,
		"protect":            []string{"/mdm/ad"},
	}
}

// key32 is a 32-byte key for refresh_token_keys.
var key32 = []byte("0123456789abcdef0123456789abcdef")

// oauth2Option returns a change of a handler config to sign_in oauth2
// with one option of its oauth2 block set.
func oauth2Option(name, value string) func(map[string]any) {
	return func(h map[string]any) {
		h["sign_in"] = "oauth2"
		h["oauth2"] = map[string]any{name: value}
	}
}

// refreshTokenKeys returns a change of a handler config to sign_in oauth2
// with re-validation whose provider refresh tokens are encrypted with
// spec.
func refreshTokenKeys(spec string) func(map[string]any) {
	return func(h map[string]any) {
		h["sign_in"] = "oauth2"
		oidc := h["oidc"].(map[string]any)
		oidc["revalidate_on_refresh"] = true
		oidc["refresh_token_keys"] = spec
	}
}

// TestProvisionValid is the baseline of the error table below: the valid
// handler provisions, creates the store with its signing key, and
// caddy.Validate releases the store afterwards.
func TestProvisionValid(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	if err := caddy.Validate(testConfig(t, store, validHandler(copyProfile(t, dir)))); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !openReleased(t, store) {
		t.Error("provisioning did not create the sign-in signing key")
	}
}

// TestProvisionExpandsPlaceholders checks that {env.*} is expanded in
// storage_dir, enrollment_profile and public_url.
func TestProvisionExpandsPlaceholders(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MDMAUTH_TEST_DIR", dir)
	t.Setenv("MDMAUTH_TEST_PROFILE", copyProfile(t, dir))
	t.Setenv("MDMAUTH_TEST_HOST", "mdm.example.com")
	h := validHandler("{env.MDMAUTH_TEST_PROFILE}")
	h["public_url"] = "https://{env.MDMAUTH_TEST_HOST}"
	if err := caddy.Validate(testConfig(t, "{env.MDMAUTH_TEST_DIR}/store", h)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !openReleased(t, filepath.Join(dir, "store")) {
		t.Error("no store with a signing key in the expanded storage_dir")
	}
}

// TestProvisionDefaultStorageDir checks that without the global option
// the store lives in Caddy's data directory.
func TestProvisionDefaultStorageDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	if err := caddy.Validate(testConfig(t, "", validHandler(copyProfile(t, dir)))); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !openReleased(t, filepath.Join(dir, "data", "caddy", "mdm_auth")) {
		t.Error("no store with a signing key in $XDG_DATA_HOME/caddy/mdm_auth")
	}
}

// TestProvisionErrors checks that every misconfiguration stops the config
// with a message naming the option and the problem, and that a failed
// provisioning releases the store.
func TestProvisionErrors(t *testing.T) {
	dir := t.TempDir()
	profile := copyProfile(t, dir)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage.mobileconfig", "this is not a profile\n")
	binary := write("binary.mobileconfig", "bplist00\xd1\x01\x02")
	wrongType := write("wrong-type.mobileconfig", `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict><key>PayloadType</key><string>com.apple.mdm</string></dict></plist>
`)
	missing := filepath.Join(dir, "missing.mobileconfig")
	kiosk := writeKioskProfile(t, dir)
	signing := currentSigningIdentity(t, dir, "signing")
	other := currentSigningIdentity(t, dir, "other")
	expired := writeSigningIdentity(t, dir, "expired", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	ssoProfile := filepath.Join(essoTestdata, "redirect.mobileconfig")
	// policy sets the policy rules of a handler config.
	policy := func(rules ...map[string]any) func(map[string]any) {
		return func(h map[string]any) { h["policy"] = map[string]any{"rules": rules} }
	}
	// withESSO sets the esso block of a handler config.
	withESSO := func(e map[string]any) func(map[string]any) {
		return func(h map[string]any) { h["esso"] = e }
	}
	// signWith sets the profile signing files of a handler config.
	signWith := func(cert, key string) func(map[string]any) {
		return func(h map[string]any) { h["profile_signing"] = map[string]any{"cert_file": cert, "key_file": key} }
	}
	// oidcOption sets one oidc option of a handler config.
	oidcOption := func(name, value string) func(map[string]any) {
		return func(h map[string]any) { h["oidc"].(map[string]any)[name] = value }
	}

	tests := []struct {
		name   string
		change func(h map[string]any)
		want   []string
	}{
		{"enrollment_profile missing", func(h map[string]any) { delete(h, "enrollment_profile") },
			[]string{"enrollment_profile is required"}},
		{"enrollment_profile empty after expansion", func(h map[string]any) { h["enrollment_profile"] = "{env.MDMAUTH_TEST_UNSET}" },
			[]string{"enrollment_profile is required"}},
		{"enrollment_profile not found", func(h map[string]any) { h["enrollment_profile"] = missing },
			[]string{"enrollment_profile:", missing, "no such file or directory"}},
		{"enrollment_profile is a directory", func(h map[string]any) { h["enrollment_profile"] = dir },
			[]string{"enrollment_profile:", "is a directory"}},
		{"enrollment_profile not a plist", func(h map[string]any) { h["enrollment_profile"] = garbage },
			[]string{"enrollment_profile " + garbage, "enrollment profile template:", "not an XML plist"}},
		{"enrollment_profile binary plist", func(h map[string]any) { h["enrollment_profile"] = binary },
			[]string{"enrollment_profile " + binary, "binary plists are not supported"}},
		{"enrollment_profile not a configuration profile", func(h map[string]any) { h["enrollment_profile"] = wrongType },
			[]string{"enrollment_profile " + wrongType, "PayloadType"}},

		{"no domains", func(h map[string]any) { h["discovery"] = map[string]any{} },
			[]string{"discovery needs at least one domain"}},
		{"empty domain list", func(h map[string]any) { h["discovery"] = map[string]any{"domains": []string{}} },
			[]string{"discovery needs at least one domain"}},
		{"bad default mode", func(h map[string]any) { h["discovery"].(map[string]any)["mode"] = "BYOD" },
			[]string{"discovery mode:", `unknown enrollment mode "BYOD"`, `"byod"`, `"adde"`}},
		{"bad family mode", func(h map[string]any) {
			h["discovery"].(map[string]any)["model_modes"] = map[string]string{"Mac": "device"}
		}, []string{"discovery mode for Mac:", `unknown enrollment mode "device"`}},
		{"Watch cannot enroll", func(h map[string]any) {
			h["discovery"].(map[string]any)["model_modes"] = map[string]string{"Watch": "byod"}
		}, []string{`model family "Watch" cannot enroll account-driven`}},
		{"AppleTV cannot enroll", func(h map[string]any) {
			h["discovery"].(map[string]any)["model_modes"] = map[string]string{"AppleTV": "adde"}
		}, []string{`model family "AppleTV" cannot enroll account-driven`}},
		// A misspelt family is never sent by a device: its line would be
		// silently ignored and the family would get the default mode.
		{"unknown model family", func(h map[string]any) {
			h["discovery"].(map[string]any)["model_modes"] = map[string]string{"iphone": "adde"}
		}, []string{`model family "iphone"`}},

		{"access_token_ttl below 1h", func(h map[string]any) { h["access_token_ttl"] = "59m" },
			[]string{"access_token_ttl:", "shorter than the minimum 1h0m0s"}},
		{"access_token_ttl negative", func(h map[string]any) { h["access_token_ttl"] = "-24h" },
			[]string{"access_token_ttl:", "must be positive"}},

		{"public_url without scheme", func(h map[string]any) { h["public_url"] = "mdm.example.com" },
			[]string{`public_url "mdm.example.com" must be scheme://host[:port]`}},
		{"public_url other scheme", func(h map[string]any) { h["public_url"] = "ftp://mdm.example.com" },
			[]string{`public_url "ftp://mdm.example.com" must be scheme://host[:port]`}},
		{"public_url with a path", func(h map[string]any) { h["public_url"] = "https://mdm.example.com/mdm" },
			[]string{`public_url "https://mdm.example.com/mdm" must be scheme://host[:port]`}},
		{"public_url without host", func(h map[string]any) { h["public_url"] = "https://" },
			[]string{`public_url "https://" must be scheme://host[:port]`}},
		{"public_url unparsable", func(h map[string]any) { h["public_url"] = "https://mdm.example.com:port" },
			[]string{`public_url "https://mdm.example.com:port" must be scheme://host[:port]`}},

		{"protect the prefix", func(h map[string]any) { h["protect"] = []string{"/mdm/ad", "/mdmauth"} },
			[]string{`protect path "/mdmauth" overlaps the gateway's own endpoints`}},
		{"protect under the prefix", func(h map[string]any) { h["protect"] = []string{"/mdmauth/enroll"} },
			[]string{`protect path "/mdmauth/enroll" overlaps the gateway's own endpoints`}},
		{"protect above a custom prefix", func(h map[string]any) {
			h["prefix"] = "/mdm/gw"
			h["protect"] = []string{"/mdm"}
		}, []string{`protect path "/mdm" overlaps the gateway's own endpoints`}},
		{"protect discovery", func(h map[string]any) { h["protect"] = []string{"/.well-known"} },
			[]string{`protect path "/.well-known" overlaps the gateway's own endpoints`}},
		{"protect the root", func(h map[string]any) { h["protect"] = []string{"/"} },
			[]string{`protect path "/" must start with / and not be the root`}},
		{"protect a relative path", func(h map[string]any) { h["protect"] = []string{"mdm/ad"} },
			[]string{`protect path "mdm/ad" must start with /`}},
		{"prefix with a trailing slash", func(h map[string]any) { h["prefix"] = "/mdmauth/" },
			[]string{`prefix "/mdmauth/" must start with / and not end with /`}},

		{"sign_in unknown", func(h map[string]any) { h["sign_in"] = "bogus" },
			[]string{`sign_in "bogus": want web or oauth2`}},
		{"sign_in upper-case", func(h map[string]any) { h["sign_in"] = "OAuth2" },
			[]string{`sign_in "OAuth2": want web or oauth2`}},
		{"oauth2 block with sign_in web", func(h map[string]any) {
			h["sign_in"] = "web"
			h["oauth2"] = map[string]any{"client_id": "mdmauth"}
		}, []string{"oauth2 settings and revalidate_on_refresh need sign_in oauth2"}},
		{"empty oauth2 block without sign_in", func(h map[string]any) { h["oauth2"] = map[string]any{} },
			[]string{"oauth2 settings and revalidate_on_refresh need sign_in oauth2"}},
		{"revalidate_on_refresh with sign_in web", func(h map[string]any) {
			h["sign_in"] = "web"
			h["oidc"].(map[string]any)["revalidate_on_refresh"] = true
		}, []string{"oauth2 settings and revalidate_on_refresh need sign_in oauth2"}},
		{"revalidate_on_refresh without sign_in", func(h map[string]any) {
			h["oidc"].(map[string]any)["revalidate_on_refresh"] = true
		}, []string{"oauth2 settings and revalidate_on_refresh need sign_in oauth2"}},

		{"redirect_url with a quote", oauth2Option("redirect_url", `apple-remotemanagement-user-login:/oauth2/"redirection"`),
			[]string{"oauth2:", "cannot be sent in a challenge"}},
		{"redirect_url with a space", oauth2Option("redirect_url", "apple-remotemanagement-user-login:/oauth2/ redirection"),
			[]string{"oauth2:", "cannot be sent in a challenge"}},
		{"client_id with a backslash", oauth2Option("client_id", `mdm\auth`),
			[]string{"oauth2:", "cannot be sent in a challenge"}},
		{"scope with two scopes", oauth2Option("scope", "mdm offline_access"),
			[]string{"oauth2:", "cannot be sent in a challenge"}},
		{"scope with a line break", oauth2Option("scope", "mdm\r\nX-Injected: 1"),
			[]string{"oauth2:", "cannot be sent in a challenge"}},
		// The challenge takes printable ASCII only: anything else provisions
		// but then fails every challenge with a 500.
		{"client_id not ASCII", oauth2Option("client_id", "mdm\u00e4uth"),
			[]string{"oauth2:", "cannot be sent in a challenge"}},
		{"client_id with a control character", oauth2Option("client_id", "mdm\x7fauth"),
			[]string{"oauth2:", "cannot be sent in a challenge"}},

		{"access_token_ttl below 5m with oauth2", func(h map[string]any) {
			h["sign_in"] = "oauth2"
			h["access_token_ttl"] = "4m59s"
		}, []string{"access_token_ttl:", "shorter than the minimum 5m0s"}},
		{"access_token_ttl negative with oauth2", func(h map[string]any) {
			h["sign_in"] = "oauth2"
			h["access_token_ttl"] = "-1h"
		}, []string{"access_token_ttl:", "must be positive"}},
		// Negative durations in JSON must not silently turn into a default
		// (re-validation every 15m, a 90-day refresh token) or switch a
		// control off (sign_in_every), as the Caddyfile refuses them.
		{"revalidate_every negative", func(h map[string]any) {
			h["sign_in"] = "oauth2"
			h["oidc"].(map[string]any)["revalidate_on_refresh"] = true
			h["oidc"].(map[string]any)["revalidate_every"] = "-15m"
		}, []string{"revalidate"}},
		{"sign_in_every negative", oauth2Option("sign_in_every", "-720h"), []string{"sign_in_every"}},

		{"refresh_token_keys without an id", refreshTokenKeys(base64.StdEncoding.EncodeToString(key32)),
			[]string{"refresh_token_keys:", "want id:base64key"}},
		{"refresh_token_keys with an empty id", refreshTokenKeys(":" + base64.StdEncoding.EncodeToString(key32)),
			[]string{"refresh_token_keys:", "want id:base64key"}},
		{"refresh_token_keys with a 16-byte key", refreshTokenKeys("k1:" + base64.StdEncoding.EncodeToString(key32[:16])),
			[]string{"refresh_token_keys:", `key "k1" must be 32 bytes`}},
		{"refresh_token_keys with a 33-byte key", refreshTokenKeys("k1:" + base64.StdEncoding.EncodeToString(append(key32, 0))),
			[]string{"refresh_token_keys:", `key "k1" must be 32 bytes`}},
		{"refresh_token_keys second key bad", refreshTokenKeys("k1:" + base64.StdEncoding.EncodeToString(key32) + ",k0:c2hvcnQ="),
			[]string{"refresh_token_keys:", `key "k0" must be 32 bytes`}},
		{"refresh_token_keys not base64", refreshTokenKeys("k1:not*base64"),
			[]string{"refresh_token_keys:", `key "k1" must be 32 bytes`}},
		{"refresh_token_keys duplicate id", refreshTokenKeys("k1:" + base64.StdEncoding.EncodeToString(key32) + ",k1:" + base64.StdEncoding.EncodeToString(key32)),
			[]string{"refresh_token_keys:", `duplicate key id "k1"`}},
		{"refresh_token_keys without keys", refreshTokenKeys(", ,"),
			[]string{"refresh_token_keys:", "no keys"}},

		{"require_claims without values", func(h map[string]any) {
			h["oidc"].(map[string]any)["require_claims"] = []any{map[string]any{"claim": "groups", "values": []string{}}}
		}, []string{"require_claims: a claim name and at least one value are needed"}},
		{"require_claims without a values list", func(h map[string]any) {
			h["oidc"].(map[string]any)["require_claims"] = []any{
				map[string]any{"claim": "hd", "values": []string{"example.com"}},
				map[string]any{"claim": "groups"},
			}
		}, []string{"require_claims: a claim name and at least one value are needed"}},
		{"require_claims without a claim name", func(h map[string]any) {
			h["oidc"].(map[string]any)["require_claims"] = []any{map[string]any{"values": []string{"mdm-users"}}}
		}, []string{"require_claims: a claim name and at least one value are needed"}},

		{"policy rule naming an unknown profile", policy(map[string]any{"name": "kiosks", "domains": []string{"example.com"}, "profile": "kiosk"}),
			[]string{`policy: kiosks: unknown enrollment profile "kiosk"`}},
		{"policy rule naming another profile", func(h map[string]any) {
			h["enrollment_profiles"] = map[string]string{"kiosk": kiosk}
			policy(map[string]any{"profile": "Kiosk"})(h)
		}, []string{`policy: rule 1: unknown enrollment profile "Kiosk"`}},
		{"policy rule with a bad family", policy(map[string]any{"domains": []string{"example.com"}}, map[string]any{"families": []string{"mac"}}),
			[]string{`policy: rule 2: unknown model family "mac"`}},
		{"policy rule with Watch", policy(map[string]any{"name": "watches", "families": []string{"Watch"}}),
			[]string{`policy: watches: unknown model family "Watch"`}},
		{"policy rule with a bad mode", policy(map[string]any{"mode": "device"}),
			[]string{`policy: rule 1: mode "device": want byod or adde`}},
		{"deny rule with a profile", func(h map[string]any) {
			h["enrollment_profiles"] = map[string]string{"kiosk": kiosk}
			policy(map[string]any{"deny": true, "profile": "kiosk"})(h)
		}, []string{"policy: rule 1: a deny rule takes no mode, profile, max_devices or required_app_id"}},
		{"negative max_devices", policy(map[string]any{"max_devices": -1}),
			[]string{"policy: rule 1: max_devices and required_app_id must not be negative"}},
		{"policy rule claim without values", policy(map[string]any{"claims": []any{map[string]any{"claim": "groups", "values": []string{}}}}),
			[]string{"policy: rule 1: a claim condition needs a claim and at least one value"}},
		{"policy without rules", policy(), []string{"policy: at least one rule is needed"}},

		{"enrollment_profiles file missing", func(h map[string]any) { h["enrollment_profiles"] = map[string]string{"kiosk": missing} },
			[]string{"enrollment_profiles kiosk:", "no such file or directory"}},
		{"enrollment_profiles not a profile", func(h map[string]any) { h["enrollment_profiles"] = map[string]string{"kiosk": garbage} },
			[]string{"enrollment_profiles kiosk " + garbage, "not an XML plist"}},
		{"enrollment_profiles empty name", func(h map[string]any) { h["enrollment_profiles"] = map[string]string{"": kiosk} },
			[]string{"enrollment_profiles: empty name"}},

		{"managed Apple ID claim and template", func(h map[string]any) {
			oidcOption("managed_apple_id_claim", "upn")(h)
			oidcOption("managed_apple_id_template", "{claim.preferred_username}@appleid.example.com")(h)
		}, []string{"oidc: set managed_apple_id_claim or managed_apple_id_template, not both"}},
		{"template without a claim", oidcOption("managed_apple_id_template", "alice@appleid.example.com"),
			[]string{"oidc: managed_apple_id_template must use at least one {claim.NAME}"}},
		{"template without an at sign", oidcOption("managed_apple_id_template", "{claim.preferred_username}.appleid.example.com"),
			[]string{"oidc: managed_apple_id_template must read like an address"}},
		{"template with two at signs", oidcOption("managed_apple_id_template", "{claim.sub}@corp@appleid.example.com"),
			[]string{"oidc: managed_apple_id_template must read like an address"}},
		{"template with another placeholder", oidcOption("managed_apple_id_template", "{env.USER}@appleid.example.com"),
			[]string{"oidc: managed_apple_id_template must use at least one {claim.NAME}"}},
		{"template with a stray brace", oidcOption("managed_apple_id_template", "{claim.sub}}@appleid.example.com"),
			[]string{"oidc: managed_apple_id_template must read like an address"}},

		{"esso with a Wi-Fi profile", withESSO(map[string]any{"itunes_store_id": 1234567890, "configuration_profile": filepath.Join(essoTestdata, "wifi.mobileconfig")}),
			[]string{"esso:", "PayloadType com.apple.wifi.managed", "may hold only com.apple.extensiblesso and certificate payloads"}},
		{"esso with an enrollment profile", withESSO(map[string]any{"itunes_store_id": 1234567890, "configuration_profile": profile}),
			[]string{"esso:", "PayloadType com.apple.security.scep"}},
		{"esso app_ids without test_mode", withESSO(map[string]any{
			"itunes_store_id": 1234567890, "configuration_profile": ssoProfile, "app_ids": []string{"ABCDE12345.com.example.sso"},
		}), []string{"esso:", "AppIDs are for test mode only"}},
		{"esso test_mode without app_ids", withESSO(map[string]any{"test_mode": true, "configuration_profile": ssoProfile}),
			[]string{"esso:", "test mode needs at least one AppID"}},
		{"esso without itunes_store_id", withESSO(map[string]any{"configuration_profile": ssoProfile}),
			[]string{"esso:", "ITunesStoreID is required"}},
		{"esso without profile or declarations", withESSO(map[string]any{"itunes_store_id": 1234567890}),
			[]string{"esso:", "give a ConfigurationProfile, Declarations, or both"}},
		{"esso direct_downloads without associated_domains", withESSO(map[string]any{
			"itunes_store_id": 1234567890, "configuration_profile": ssoProfile, "direct_downloads": true,
		}), []string{"esso:", "DirectDownloads"}},
		{"esso configuration_profile missing", withESSO(map[string]any{"itunes_store_id": 1234567890, "configuration_profile": missing}),
			[]string{"esso configuration_profile:", "no such file or directory"}},
		{"esso declaration missing", withESSO(map[string]any{"itunes_store_id": 1234567890, "declarations": []string{missing}}),
			[]string{"esso declarations:", "no such file or directory"}},
		{"esso declaration of another app", withESSO(map[string]any{
			"itunes_store_id": 987654321, "configuration_profile": ssoProfile,
			"declarations": []string{
				filepath.Join(essoTestdata, "declarations", "activation.json"), filepath.Join(essoTestdata, "declarations", "app.json"),
				filepath.Join(essoTestdata, "declarations", "asset.json"), filepath.Join(essoTestdata, "declarations", "legacy.json"),
			},
		}), []string{"esso:", "AppStoreID 1234567890, but ITunesStoreID is 987654321"}},

		{"signing key not matching the certificate", signWith(signing.certFile, other.keyFile),
			[]string{"profile signing identity: the private key does not match the signing certificate"}},
		{"signing certificate expired", signWith(expired.certFile, expired.keyFile),
			[]string{"profile signing identity:", "expired"}},
		{"signing key file missing", signWith(signing.certFile, missing),
			[]string{"profile signing:", "no such file or directory"}},
		{"signing certificate file missing", signWith(missing, signing.keyFile),
			[]string{"profile signing:", "no such file or directory"}},
		{"signing files swapped", signWith(signing.keyFile, signing.certFile),
			[]string{"profile signing identity:", `no PEM "CERTIFICATE" block`}},

		{"discovery unknown 404 with a message", func(h map[string]any) {
			h["discovery"].(map[string]any)["unknown"] = "404"
			h["discovery"].(map[string]any)["unknown_message"] = "Ask Apple."
		}, []string{"discovery unknown: a message goes with 403 only"}},
		{"discovery unknown other status", func(h map[string]any) { h["discovery"].(map[string]any)["unknown"] = "403 Forbidden" },
			[]string{`discovery unknown: want 403 or 404, got "403 Forbidden"`}},

		{"oidc without issuer", func(h map[string]any) { delete(h["oidc"].(map[string]any), "issuer") },
			[]string{"oidc:", "issuer and client_id are required"}},
		{"oidc without client_id", func(h map[string]any) { delete(h["oidc"].(map[string]any), "client_id") },
			[]string{"oidc:", "issuer and client_id are required"}},
		{"unknown JSON field", func(h map[string]any) { h["protekt"] = []string{"/mdm/ad"} },
			[]string{`unknown field "protekt"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "store")
			h := validHandler(profile)
			tt.change(h)
			err := caddy.Validate(testConfig(t, store, h))
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "http.handlers.mdm_auth") {
				t.Errorf("error %q does not name the module", err)
			}
			openReleased(t, store)
		})
	}
}

// TestStoreSharedWhileValidating checks the reference counting of the
// shared store: while one config holds it, another config on the same
// directory provisions without a lock error, and its cleanup leaves the
// store open for the first; the last user closes it.
func TestStoreSharedWhileValidating(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	profile := copyProfile(t, dir)

	ctx, err := caddy.ProvisionContext(testConfig(t, store, validHandler(profile)))
	if err != nil {
		t.Fatalf("provisioning the first config: %v", err)
	}
	appIface, err := ctx.App("mdm_auth")
	if err != nil {
		t.Fatal(err)
	}
	app := appIface.(*App)
	released := false
	t.Cleanup(func() {
		if !released {
			_ = app.Cleanup()
		}
	})
	key1, err := app.Store().Secret(context.Background(), "signin-flow-hmac", func() ([]byte, error) { return nil, errNoSecret })
	if err != nil {
		t.Fatalf("signing key after the first provisioning: %v", err)
	}

	second := validHandler(profile)
	second["discovery"].(map[string]any)["domains"] = []string{"example.org"}
	if err := caddy.Validate(testConfig(t, store, second)); err != nil {
		t.Fatalf("a second config on the held store: %v", err)
	}

	key2, err := app.Store().Secret(context.Background(), "signin-flow-hmac", func() ([]byte, error) { return nil, errNoSecret })
	if err != nil {
		t.Fatalf("the first config's store after the second config's cleanup: %v", err)
	}
	if string(key1) != string(key2) {
		t.Error("the signing key changed")
	}
	if err := app.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	released = true
	if !openReleased(t, store) {
		t.Error("the signing key is gone")
	}
}
