package esso_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/esso"
)

const storeID = 1234567890

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// declaration loads testdata/declarations/name.json, lets edit change it,
// and encodes it again (edit nil: the file's bytes as they are).
func declaration(t *testing.T, name string, edit func(d map[string]any)) []byte {
	t.Helper()
	raw := fixture(t, filepath.Join("declarations", name+".json"))
	if edit == nil {
		return raw
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	edit(d)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func payload(d map[string]any) map[string]any { return d["Payload"].(map[string]any) }

// validConfig is a standard (non-test) configuration using every field.
func validConfig(t *testing.T) esso.Config {
	return esso.Config{
		ITunesStoreID:        storeID,
		AssociatedDomains:    []string{"authsrv:login.example.com"},
		ConfigurationProfile: fixture(t, "redirect.mobileconfig"),
		Declarations: [][]byte{
			declaration(t, "activation", nil),
			declaration(t, "app", nil),
			declaration(t, "asset", nil),
			declaration(t, "legacy", nil),
		},
	}
}

func TestBuildDocument(t *testing.T) {
	c := validConfig(t)
	got, err := esso.Build(c)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	b64 := base64.StdEncoding.EncodeToString
	var want strings.Builder
	want.WriteString(`{"iTunesStoreID":1234567890,"AssociatedDomains":["authsrv:login.example.com"],"ConfigurationProfile":"`)
	want.WriteString(b64(c.ConfigurationProfile) + `","Declarations":[`)
	for i, d := range c.Declarations {
		if i > 0 {
			want.WriteString(",")
		}
		want.WriteString(`"` + b64(d) + `"`)
	}
	want.WriteString("]}")
	if string(got) != want.String() {
		t.Errorf("document =\n%s\nwant\n%s", got, want.String())
	}

	// The keys, their JSON types, and the payloads round-trip.
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	if string(doc["iTunesStoreID"]) != "1234567890" {
		t.Errorf("iTunesStoreID = %s, want a JSON integer", doc["iTunesStoreID"])
	}
	var profile []byte
	if err := json.Unmarshal(doc["ConfigurationProfile"], &profile); err != nil || !bytes.Equal(profile, c.ConfigurationProfile) {
		t.Errorf("ConfigurationProfile does not decode to the profile bytes (%v)", err)
	}
	var decls [][]byte
	if err := json.Unmarshal(doc["Declarations"], &decls); err != nil || len(decls) != 4 || !bytes.Equal(decls[1], c.Declarations[1]) {
		t.Errorf("Declarations do not decode to the declarations (%v)", err)
	}
}

func TestBuildKeys(t *testing.T) {
	profile := fixture(t, "redirect.mobileconfig")
	tests := []struct {
		name string
		c    esso.Config
		keys []string
	}{
		{"profile only", esso.Config{ITunesStoreID: storeID, ConfigurationProfile: profile},
			[]string{"iTunesStoreID", "ConfigurationProfile"}},
		{"declarations only", esso.Config{ITunesStoreID: storeID, Declarations: [][]byte{
			declaration(t, "activation", func(d map[string]any) {
				payload(d)["StandardConfigurations"] = []string{"com.example.esso.app"}
			}),
			declaration(t, "app", nil), declaration(t, "asset", nil),
		}}, []string{"iTunesStoreID", "Declarations"}},
		{"direct downloads", esso.Config{ITunesStoreID: storeID, ConfigurationProfile: profile,
			AssociatedDomains: []string{"authsrv:sso.corp.example"}, DirectDownloads: true},
			[]string{"iTunesStoreID", "AssociatedDomains", "AssociatedDomainsEnableDirectDownloads", "ConfigurationProfile"}},
		{"test mode", esso.Config{TestMode: true, AppIDs: []string{"ABCDE12345.com.example.sso"}, ConfigurationProfile: profile},
			[]string{"AppIDs", "ConfigurationProfile"}},
		{"test mode with a store id", esso.Config{TestMode: true, ITunesStoreID: storeID, AppIDs: []string{"ABCDE12345.com.example.sso"}, ConfigurationProfile: profile},
			[]string{"iTunesStoreID", "AppIDs", "ConfigurationProfile"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := esso.Build(tc.c)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if keys := topKeys(t, got); strings.Join(keys, ",") != strings.Join(tc.keys, ",") {
				t.Errorf("keys = %v, want %v", keys, tc.keys)
			}
		})
	}
}

func TestBuildTestModeAppIDs(t *testing.T) {
	profile := fixture(t, "redirect.mobileconfig")
	ids := []string{"ABCDE12345.com.example.sso", "ABCDE12345.com.example.sso-beta"}
	got, err := esso.Build(esso.Config{TestMode: true, AppIDs: ids, ConfigurationProfile: profile})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ AppIDs []string }
	if err := json.Unmarshal(got, &doc); err != nil || strings.Join(doc.AppIDs, " ") != strings.Join(ids, " ") {
		t.Errorf("AppIDs = %v (%v), want %v", doc.AppIDs, err, ids)
	}
	// The same apps outside test mode are refused rather than dropped.
	_, err = esso.Build(esso.Config{ITunesStoreID: storeID, AppIDs: ids, ConfigurationProfile: profile})
	wantProblem(t, err, "AppIDs are for test mode only")
	// Outside test mode the document never has the key.
	got, err = esso.Build(esso.Config{ITunesStoreID: storeID, ConfigurationProfile: profile})
	if err != nil || bytes.Contains(got, []byte("AppIDs")) {
		t.Errorf("standard document %s (%v) mentions AppIDs", got, err)
	}
}

func TestBuildAcceptsVariants(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, c *esso.Config)
	}{
		{"credential profile", func(t *testing.T, c *esso.Config) {
			c.ConfigurationProfile = fixture(t, "credential.mobileconfig")
		}},
		{"AppStoreID as a JSON number", func(t *testing.T, c *esso.Config) {
			c.Declarations[1] = declaration(t, "app", func(d map[string]any) { payload(d)["AppStoreID"] = storeID })
		}},
		{"declarations without ServerToken", func(t *testing.T, c *esso.Config) {
			c.Declarations[3] = declaration(t, "legacy", func(d map[string]any) { delete(d, "ServerToken") })
		}},
		{"legacy without ProfileURL", func(t *testing.T, c *esso.Config) {
			c.Declarations[3] = declaration(t, "legacy", func(d map[string]any) { d["Payload"] = map[string]any{} })
		}},
		{"associated domain forms", func(t *testing.T, c *esso.Config) {
			c.AssociatedDomains = []string{"login.example.com", "authsrv:*.example.com", "applinks:example.com?mode=developer",
				"webcredentials:example.com:8443", "sso.example.com:8443", "authsrv:intranet?mode=managed"}
		}},
		{"test mode declarations", func(t *testing.T, c *esso.Config) {
			c.TestMode, c.ITunesStoreID, c.AppIDs = true, 0, []string{"ABCDE12345.com.example.sso"}
			c.Declarations[1] = declaration(t, "app-bundle", nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.edit(t, &c)
			if _, err := esso.Build(c); err != nil {
				t.Fatalf("Build: %v", err)
			}
		})
	}
}

func TestBuildRejects(t *testing.T) {
	type edit = func(t *testing.T, c *esso.Config)
	profile := func(name string) edit {
		return func(t *testing.T, c *esso.Config) { c.ConfigurationProfile = fixture(t, name) }
	}
	rawProfile := func(b []byte) edit {
		return func(_ *testing.T, c *esso.Config) { c.ConfigurationProfile = b }
	}
	editProfile := func(old, new string) edit {
		return func(t *testing.T, c *esso.Config) {
			c.ConfigurationProfile = bytes.Replace(fixture(t, "redirect.mobileconfig"), []byte(old), []byte(new), 1)
		}
	}
	decl := func(i int, name string, fn func(map[string]any)) edit {
		return func(t *testing.T, c *esso.Config) { c.Declarations[i] = declaration(t, name, fn) }
	}
	rawDecl := func(i int, s string) edit {
		return func(_ *testing.T, c *esso.Config) { c.Declarations[i] = []byte(s) }
	}
	addDecl := func(name string, fn func(map[string]any)) edit {
		return func(t *testing.T, c *esso.Config) { c.Declarations = append(c.Declarations, declaration(t, name, fn)) }
	}
	testMode := func(appIDs ...string) func(c *esso.Config) {
		return func(c *esso.Config) { c.TestMode, c.ITunesStoreID, c.AppIDs = true, 0, appIDs }
	}
	tests := []struct {
		name string
		edit edit
		want string
	}{
		// iTunesStoreID and AppIDs.
		{"no store id", func(_ *testing.T, c *esso.Config) { c.ITunesStoreID = 0 }, "ITunesStoreID is required"},
		{"negative store id in test mode", func(_ *testing.T, c *esso.Config) {
			testMode("ABCDE12345.com.example.sso")(c)
			c.ITunesStoreID = -1
		}, "ITunesStoreID -1 is negative"},
		{"AppIDs outside test mode", func(_ *testing.T, c *esso.Config) { c.AppIDs = []string{"ABCDE12345.com.example.sso"} }, "AppIDs are for test mode only"},
		{"test mode without AppIDs", func(_ *testing.T, c *esso.Config) { testMode()(c); c.ITunesStoreID = storeID }, "test mode needs at least one AppID"},
		{"AppID lower-case team", func(_ *testing.T, c *esso.Config) { testMode("abcde12345.com.example.sso")(c) }, `AppID "abcde12345.com.example.sso" is not TEAMID.bundle.id`},
		{"AppID short team", func(_ *testing.T, c *esso.Config) { testMode("ABCDE.com.example.sso")(c) }, `AppID "ABCDE.com.example.sso" is not TEAMID.bundle.id`},
		{"AppID without bundle", func(_ *testing.T, c *esso.Config) { testMode("ABCDE12345.")(c) }, `AppID "ABCDE12345." is not TEAMID.bundle.id`},
		{"AppID empty label", func(_ *testing.T, c *esso.Config) { testMode("ABCDE12345.com..sso")(c) }, `is not TEAMID.bundle.id`},
		{"AppID with a space", func(_ *testing.T, c *esso.Config) { testMode("ABCDE12345.com.example sso")(c) }, `is not TEAMID.bundle.id`},
		{"AppID twice", func(_ *testing.T, c *esso.Config) {
			testMode("ABCDE12345.com.example.sso", "ABCDE12345.com.example.sso")(c)
		}, "listed twice"},

		// Associated domains.
		{"domain with scheme", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains = []string{"https://login.example.com"} }, "has a URL scheme"},
		{"domain as https:host", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains = []string{"https:login.example.com"} }, "has a URL scheme"},
		{"domain with path", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains = []string{"authsrv:login.example.com/sso"} }, "no path"},
		{"empty domain", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains = []string{""} }, "empty associated domain"},
		{"service without host", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains = []string{"authsrv:"} }, `"" is not a host name`},
		{"invalid host", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains = []string{"authsrv:login_sso.example.com"} }, "is not a host name"},
		{"unknown mode", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains = []string{"authsrv:example.com?mode=test"} }, "?mode=developer"},
		{"bad port", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains = []string{"example.com:99999"} }, `invalid port "99999"`},
		{"domain twice", func(_ *testing.T, c *esso.Config) {
			c.AssociatedDomains = []string{"authsrv:login.example.com", "authsrv:login.example.com"}
		}, "listed twice"},
		{"direct downloads without domains", func(_ *testing.T, c *esso.Config) { c.AssociatedDomains, c.DirectDownloads = nil, true }, "DirectDownloads"},

		// Neither payload.
		{"no profile and no declarations", func(_ *testing.T, c *esso.Config) { c.ConfigurationProfile, c.Declarations = nil, nil }, "at least one of them"},

		// Configuration profile.
		{"binary profile", rawProfile([]byte("bplist00\xd1\x01\x02")), "binary property list"},
		{"signed profile", rawProfile([]byte{0x30, 0x82, 0x01, 0x00}), "looks signed (CMS)"},
		{"not a plist", rawProfile([]byte("PayloadType: Configuration")), "not an XML property list"},
		{"broken XML", rawProfile([]byte("<plist><dict><key>PayloadType</key>")), "not an XML property list dictionary"},
		{"profile too large", rawProfile(bytes.Repeat([]byte(" "), esso.MaxProfileSize+1)), "limit is 1048576"},
		{"forbidden payload", profile("wifi.mobileconfig"), "(com.example.esso.wifi) has PayloadType com.apple.wifi.managed; the Enrollment SSO profile may hold only com.apple.extensiblesso and certificate payloads"},
		{"no SSO payload", profile("no-sso.mobileconfig"), "no com.apple.extensiblesso payload"},
		{"top-level not Configuration", profile("not-configuration.mobileconfig"), `top-level PayloadType "com.apple.extensiblesso", want Configuration`},
		{"SSO Type", profile("bad-sso-type.mobileconfig"), "Type Kerberos, want Redirect or Credential"},
		{"Redirect without URLs", profile("redirect-no-urls.mobileconfig"), "Redirect extension without URLs"},
		{"duplicate PayloadUUID", profile("duplicate-uuid.mobileconfig"), "repeats PayloadUUID"},
		{"PayloadVersion 2", profile("payload-version.mobileconfig"), "PayloadVersion 2, want the integer 1"},
		{"missing PayloadUUID", editProfile("<key>PayloadUUID</key>\n\t\t\t<string>9F1B2C3D-4E5F-4A6B-8C7D-0E1F2A3B4C5D</string>", ""), "payload 0 has no string PayloadUUID"},
		{"missing ExtensionIdentifier", editProfile("<key>ExtensionIdentifier</key>", "<key>Extension</key>"), "no ExtensionIdentifier"},
		{"URL with query", editProfile("https://login.example.com/", "https://login.example.com/?x=1"), "without query or fragment"},
		{"Credential without Hosts", func(t *testing.T, c *esso.Config) {
			c.ConfigurationProfile = bytes.Replace(fixture(t, "credential.mobileconfig"), []byte("<key>Hosts</key>"), []byte("<key>Domains</key>"), 1)
		}, "Credential extension without Hosts"},

		// Declarations, one by one.
		{"declaration not JSON", rawDecl(1, "Type: x"), "declaration 1: invalid JSON"},
		{"declaration is an array", rawDecl(1, "[]"), "declaration 1: not a JSON object"},
		{"declaration trailing data", rawDecl(1, `{"Type":"com.apple.asset.data","Identifier":"x","Payload":{}} {}`), "data after the JSON object"},
		{"declaration duplicate key", rawDecl(1, `{"Type":"com.apple.asset.data","Type":"com.apple.asset.data","Identifier":"x","Payload":{}}`), `duplicate key "Type"`},
		{"declaration unknown key", decl(1, "app", func(d map[string]any) { d["Name"] = "SSO" }), `unknown key "Name"`},
		{"declaration without Type", decl(1, "app", func(d map[string]any) { delete(d, "Type") }), "needs a non-empty string Type"},
		{"declaration numeric Identifier", decl(1, "app", func(d map[string]any) { d["Identifier"] = 7 }), "needs a non-empty string Identifier"},
		{"declaration without Payload", decl(1, "app", func(d map[string]any) { delete(d, "Payload") }), "has no Payload"},
		{"declaration Payload not an object", decl(1, "app", func(d map[string]any) { d["Payload"] = "x" }), "Payload: not a JSON object"},
		{"ServerToken not a string", decl(1, "app", func(d map[string]any) { d["ServerToken"] = 1 }), "ServerToken is not a string"},
		{"duplicate Identifier", decl(2, "asset", func(d map[string]any) { d["Identifier"] = "com.example.esso.app" }), `Identifier "com.example.esso.app" is used twice`},
		{"declaration too large", rawDecl(2, strings.Repeat(" ", esso.MaxProfileSize+1)), "declaration 2: 1048577 bytes"},

		// The declaration set.
		{"other declaration type", addDecl("passcode", nil), "declaration \"com.example.esso.passcode\" has Type com.apple.configuration.passcode.settings; only"},
		{"legacy interactive", decl(3, "legacy", func(d map[string]any) { d["Type"] = "com.apple.configuration.legacy.interactive" }), "has Type com.apple.configuration.legacy.interactive"},
		{"no activation", func(t *testing.T, c *esso.Config) { c.Declarations = c.Declarations[1:] }, "exactly one com.apple.activation.simple, found 0"},
		{"two activations", addDecl("activation", func(d map[string]any) { d["Identifier"] = "second" }), "exactly one com.apple.activation.simple, found 2"},
		{"activation misses a configuration", decl(0, "activation", func(d map[string]any) {
			payload(d)["StandardConfigurations"] = []string{"com.example.esso.app"}
		}), `does not reference configuration "com.example.esso.legacy"`},
		{"activation references an asset", decl(0, "activation", func(d map[string]any) {
			payload(d)["StandardConfigurations"] = []string{"com.example.esso.app", "com.example.esso.legacy", "com.example.esso.appconfig"}
		}), `references "com.example.esso.appconfig", which is not a configuration`},
		{"activation without StandardConfigurations", decl(0, "activation", func(d map[string]any) { d["Payload"] = map[string]any{} }), "needs Payload.StandardConfigurations"},
		{"no app configuration", func(t *testing.T, c *esso.Config) {
			c.Declarations = [][]byte{declaration(t, "activation", func(d map[string]any) {
				payload(d)["StandardConfigurations"] = []string{"com.example.esso.legacy"}
			}), c.Declarations[3]}
		}, "exactly one com.apple.configuration.app.managed (the SSO app), found 0"},
		{"two app configurations", func(t *testing.T, c *esso.Config) {
			c.Declarations = append(c.Declarations, declaration(t, "app", func(d map[string]any) { d["Identifier"] = "com.example.other" }))
			c.Declarations[0] = declaration(t, "activation", func(d map[string]any) {
				payload(d)["StandardConfigurations"] = []string{"com.example.esso.app", "com.example.esso.legacy", "com.example.other"}
			})
		}, "found 2"},
		{"AppStoreID differs", decl(1, "app", func(d map[string]any) { payload(d)["AppStoreID"] = "987654321" }), "has AppStoreID 987654321, but ITunesStoreID is 1234567890"},
		{"AppStoreID missing", decl(1, "app", func(d map[string]any) { delete(payload(d), "AppStoreID") }), "has no AppStoreID"},
		{"AppStoreID not numeric", decl(1, "app", func(d map[string]any) { payload(d)["AppStoreID"] = "id1234567890" }), "is not a number or numeric string"},
		{"AppStoreID signed", decl(1, "app", func(d map[string]any) { payload(d)["AppStoreID"] = "+1234567890" }), "is not a number or numeric string"},
		{"AppStoreID fractional", decl(1, "app", func(d map[string]any) { payload(d)["AppStoreID"] = 1234567890.5 }), "is not a number or numeric string"},
		{"legacy ProfileURL http", decl(3, "legacy", func(d map[string]any) { payload(d)["ProfileURL"] = "http://mdm.example.com/p" }), "must be an https URL"},

		// Test mode declarations.
		{"test mode app without BundleID", func(t *testing.T, c *esso.Config) {
			testMode("ABCDE12345.com.example.sso")(c)
		}, "needs a BundleID"},
		{"test mode BundleID of no AppID", func(t *testing.T, c *esso.Config) {
			testMode("ABCDE12345.com.example.other")(c)
			c.Declarations[1] = declaration(t, "app-bundle", nil)
		}, `BundleID "com.example.sso", which is not the bundle id of any AppID`},
		{"test mode AppID without app configuration", func(t *testing.T, c *esso.Config) {
			testMode("ABCDE12345.com.example.sso", "ABCDE12345.com.example.beta")(c)
			c.Declarations[1] = declaration(t, "app-bundle", nil)
		}, `no com.apple.configuration.app.managed with BundleID "com.example.beta"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.edit(t, &c)
			doc, err := esso.Build(c)
			if doc != nil {
				t.Errorf("Build returned a document with the error")
			}
			wantProblem(t, err, tc.want)
		})
	}
}

func TestHeaderName(t *testing.T) {
	if esso.HeaderName(false) != "X-Apple-MDM-ESSO" || esso.HeaderName(true) != "X-Apple-MDM-ESSO-Developer" {
		t.Errorf("HeaderName = %q, %q", esso.HeaderName(false), esso.HeaderName(true))
	}
}

func wantProblem(t *testing.T, err error, want string) {
	t.Helper()
	var ce *esso.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *esso.ConfigError containing %q", err, err, want)
	}
	if !strings.HasPrefix(err.Error(), "esso: ") || !strings.Contains(ce.Problem, want) {
		t.Fatalf("error = %q, want it to contain %q", err, want)
	}
}

// topKeys returns a JSON object's keys in document order.
func topKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("document %s is not a JSON object", doc)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}
