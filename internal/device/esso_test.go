package device_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/smallstep/pkcs7"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

// essoDoc returns the sample Enrollment SSO document after edit.
func essoDoc(developer bool, edit func(m map[string]any)) []byte {
	m := devicetest.ESSOFields(developer)
	if edit != nil {
		edit(m)
	}
	return devicetest.ESSODocument(m)
}

// editDecls edits the sample declarations and re-encodes them.
func editDecls(developer bool, edit func(ds []map[string]any) []map[string]any) func(m map[string]any) {
	return func(m map[string]any) {
		m["Declarations"] = devicetest.EncodeDeclarations(edit(devicetest.ESSODeclarations(developer)))
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// stageRecorder records the order in which the server saw the stages.
type stageRecorder struct {
	mu     sync.Mutex
	stages []string
}

func (r *stageRecorder) hook(stage string, _ http.ResponseWriter, _ *http.Request) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.stages); n == 0 || r.stages[n-1] != stage {
		r.stages = append(r.stages, stage)
	}
	return false
}

func TestEnrollmentSSO(t *testing.T) {
	signedProfile := func(t *testing.T) []byte {
		_, _, builtIn := identities(t)
		sd, err := pkcs7.NewSignedData(devicetest.ESSOProfile())
		if err != nil {
			t.Fatal(err)
		}
		if err := sd.AddSigner(builtIn.Cert, builtIn.Key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
		der, err := sd.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	tests := []struct {
		name   string
		opts   func(t *testing.T) devicetest.Options
		config func(*device.Config)
		check  func(t *testing.T, doc *device.ESSODocument)
	}{
		{name: "standard document",
			opts: func(*testing.T) devicetest.Options { return devicetest.Options{ESSO: essoDoc(false, nil)} },
			check: func(t *testing.T, doc *device.ESSODocument) {
				if doc.Developer || doc.ITunesStoreID != devicetest.ESSOStoreID || doc.AppIDs != nil ||
					strings.Join(doc.AssociatedDomains, ",") != "authsrv:login.example.com" || doc.AssociatedDomainsEnableDirectDownloads ||
					string(doc.ConfigurationProfile) != string(devicetest.ESSOProfile()) || doc.ProfileSigned ||
					strings.Join(doc.ProfilePayloadTypes, ",") != "com.apple.extensiblesso,com.apple.security.root" {
					t.Errorf("document = %+v", doc)
				}
				var types []string
				for _, d := range doc.Declarations {
					types = append(types, d.Type)
				}
				if strings.Join(types, ",") != "com.apple.activation.simple,com.apple.configuration.app.managed,com.apple.asset.data,com.apple.configuration.legacy" ||
					doc.Declarations[1].Identifier != "com.example.esso.app" || !strings.Contains(string(doc.Declarations[1].Raw), `"AppStoreID":"1234567890"`) {
					t.Errorf("declarations = %+v", doc.Declarations)
				}
			}},
		{name: "developer document on a test device",
			opts: func(*testing.T) devicetest.Options {
				return devicetest.Options{ESSO: essoDoc(true, nil), ESSODeveloper: true}
			},
			config: func(c *device.Config) { c.DeveloperESSO = true },
			check: func(t *testing.T, doc *device.ESSODocument) {
				if !doc.Developer || doc.ITunesStoreID != 0 || strings.Join(doc.AppIDs, ",") != devicetest.ESSOAppID {
					t.Errorf("document = %+v", doc)
				}
			}},
		{name: "test device with the standard header",
			opts:   func(*testing.T) devicetest.Options { return devicetest.Options{ESSO: essoDoc(false, nil)} },
			config: func(c *device.Config) { c.DeveloperESSO = true },
			check: func(t *testing.T, doc *device.ESSODocument) {
				if doc.Developer || doc.ITunesStoreID != devicetest.ESSOStoreID {
					t.Errorf("document = %+v", doc)
				}
			}},
		{name: "OAuth 2 on an iPad",
			opts: func(*testing.T) devicetest.Options {
				return devicetest.Options{ESSO: essoDoc(false, nil), OAuth2: true}
			},
			config: func(c *device.Config) { c.Family, c.Product = "iPad", "iPad16,3" }},
		{name: "profile only, direct downloads",
			opts: func(*testing.T) devicetest.Options {
				return devicetest.Options{ESSO: essoDoc(false, func(m map[string]any) {
					delete(m, "Declarations")
					m["AssociatedDomainsEnableDirectDownloads"] = true
				})}
			},
			check: func(t *testing.T, doc *device.ESSODocument) {
				if doc.Declarations != nil || doc.ConfigurationProfile == nil || !doc.AssociatedDomainsEnableDirectDownloads {
					t.Errorf("document = %+v", doc)
				}
			}},
		{name: "declarations only, AppStoreID as a number",
			opts: func(*testing.T) devicetest.Options {
				return devicetest.Options{ESSO: essoDoc(false, func(m map[string]any) {
					delete(m, "ConfigurationProfile")
					editDecls(false, func(ds []map[string]any) []map[string]any {
						ds[1]["Payload"] = map[string]any{"AppStoreID": devicetest.ESSOStoreID}
						return ds
					})(m)
				})}
			},
			check: func(t *testing.T, doc *device.ESSODocument) {
				if doc.ConfigurationProfile != nil || len(doc.Declarations) != 4 {
					t.Errorf("document = %+v", doc)
				}
			}},
		{name: "signed profile",
			opts: func(t *testing.T) devicetest.Options {
				der := signedProfile(t)
				return devicetest.Options{ESSO: essoDoc(false, func(m map[string]any) {
					m["ConfigurationProfile"] = base64.StdEncoding.EncodeToString(der)
				})}
			},
			check: func(t *testing.T, doc *device.ESSODocument) {
				if !doc.ProfileSigned || string(doc.ConfigurationProfile) != string(devicetest.ESSOProfile()) {
					t.Errorf("signed profile not unwrapped: signed %t", doc.ProfileSigned)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &stageRecorder{}
			opts := tc.opts(t)
			opts.Hook = rec.hook
			srv := devicetest.New(opts)
			defer srv.Close()
			d, logs := newDevice(t, srv, tc.config)
			if _, err := d.Enroll(testContext(t)); err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			doc := d.ESSO()
			if doc == nil {
				t.Fatal("ESSO() = nil after an enrollment 401 naming a document")
			}
			if doc.URL != srv.ESSOURL() {
				t.Errorf("URL = %q, want %q", doc.URL, srv.ESSOURL())
			}
			reqs := srv.ESSORequests()
			if len(reqs) != 1 || reqs[0].UserAgent != "DeviceManagementClient/1.0" || reqs[0].HasAuthorization || reqs[0].HasCookie {
				t.Errorf("document requests = %+v, want one GET with DeviceManagementClient/1.0, no Authorization, no cookies", reqs)
			}
			// The document is fetched after the 401 and before the sign-in,
			// which then runs unchanged.
			signIn := devicetest.StageSignIn
			if opts.OAuth2 {
				signIn = devicetest.StageAuthorize
			}
			want := strings.Join([]string{devicetest.StageDiscovery, devicetest.StageEnroll, devicetest.StageESSO, signIn}, ",")
			if got := strings.Join(rec.stages, ","); !strings.HasPrefix(got, want) {
				t.Errorf("stages = %s, want them to start with %s", got, want)
			}
			if e := srv.Enrollments(); len(e) != 2 || !e[1].HasBearer {
				t.Errorf("enrollment POSTs = %+v", e)
			}
			if tc.check != nil {
				tc.check(t, doc)
			}
			for _, l := range *logs {
				if strings.Contains(l, d.Token()) {
					t.Errorf("log line leaks the token: %q", l)
				}
			}
		})
	}
}

func TestEnrollmentSSOIgnored(t *testing.T) {
	t.Run("no header", func(t *testing.T) {
		srv := devicetest.New(devicetest.Options{})
		defer srv.Close()
		d, _ := newDevice(t, srv, nil)
		if _, err := d.Enroll(testContext(t)); err != nil {
			t.Fatal(err)
		}
		if d.ESSO() != nil || len(srv.ESSORequests()) != 0 {
			t.Errorf("ESSO() = %+v, %d requests; want none", d.ESSO(), len(srv.ESSORequests()))
		}
	})
	t.Run("developer header on a device without test mode", func(t *testing.T) {
		srv := devicetest.New(devicetest.Options{ESSO: essoDoc(true, nil), ESSODeveloper: true})
		defer srv.Close()
		d, logs := newDevice(t, srv, nil)
		if _, err := d.Enroll(testContext(t)); err != nil {
			t.Fatal(err)
		}
		if d.ESSO() != nil || len(srv.ESSORequests()) != 0 {
			t.Errorf("ESSO() = %+v, %d requests; want the developer header ignored", d.ESSO(), len(srv.ESSORequests()))
		}
		if !strings.Contains(strings.Join(*logs, "\n"), "X-Apple-MDM-ESSO-Developer ignored") {
			t.Error("ignoring the developer header was not logged")
		}
	})
	t.Run("header on an MDM 401", func(t *testing.T) {
		srv := devicetest.New(devicetest.Options{ESSO: essoDoc(false, nil), ESSOOnMDM: true})
		defer srv.Close()
		d, logs := newDevice(t, srv, nil)
		ctx := testContext(t)
		if _, err := d.Enroll(ctx); err != nil {
			t.Fatal(err)
		}
		srv.RevokeAll()
		if _, err := d.Poll(ctx, device.DeviceChannel); err != nil {
			t.Fatalf("Poll after revocation: %v", err)
		}
		if d.Prompts() != 1 || len(srv.ESSORequests()) != 1 {
			t.Errorf("prompts %d, document requests %d; want a plain sign-in and only the enrollment's document request",
				d.Prompts(), len(srv.ESSORequests()))
		}
		if !strings.Contains(strings.Join(*logs, "\n"), "Enrollment SSO header on an MDM 401 ignored") {
			t.Error("ignoring the header on an MDM 401 was not logged")
		}
	})
}

func TestEnrollmentSSODeviations(t *testing.T) {
	std := func(edit func(m map[string]any)) devicetest.Options {
		return devicetest.Options{ESSO: essoDoc(false, edit)}
	}
	dev := func(edit func(m map[string]any)) devicetest.Options {
		return devicetest.Options{ESSO: essoDoc(true, edit), ESSODeveloper: true}
	}
	developer := func(c *device.Config) { c.DeveloperESSO = true }
	set := func(k string, v any) func(m map[string]any) { return func(m map[string]any) { m[k] = v } }
	del := func(keys ...string) func(m map[string]any) {
		return func(m map[string]any) {
			for _, k := range keys {
				delete(m, k)
			}
		}
	}
	profile := func(p string) func(m map[string]any) { return set("ConfigurationProfile", b64(p)) }
	sample := string(devicetest.ESSOProfile())
	essoAnswer := func(contentType, body string) func(*devicetest.Server) devicetest.Options {
		return on(devicetest.StageESSO, nil, func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", contentType)
			io.WriteString(w, body)
		})
	}
	essoHeaders := func(values ...string) func(*devicetest.Server) devicetest.Options {
		return on(devicetest.StageEnroll, firstPOST, func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("WWW-Authenticate", s.Challenge())
			for _, v := range values {
				w.Header().Add("X-Apple-MDM-ESSO", strings.ReplaceAll(v, "SRV", s.URL))
			}
			w.WriteHeader(http.StatusUnauthorized)
		})
	}
	tests := []struct {
		name   string
		base   devicetest.Options
		server func(*devicetest.Server) devicetest.Options
		config func(*device.Config)
		want   string
	}{
		// Who gets the header, and where it points.
		{name: "header to a Mac", base: devicetest.Options{ESSO: essoDoc(false, nil), MacDevice: true},
			config: func(c *device.Config) { c.Family, c.Product = "Mac", "Mac14,2" },
			want:   "enrollment 401 for a Mac carries X-Apple-MDM-ESSO: Enrollment SSO does not exist on macOS"},
		{name: "developer header to a test Mac", base: devicetest.Options{ESSO: essoDoc(true, nil), ESSODeveloper: true, MacDevice: true},
			config: func(c *device.Config) { c.Family, c.Product, c.DeveloperESSO = "Mac", "Mac14,2", true },
			want:   "enrollment 401 for a Mac carries X-Apple-MDM-ESSO-Developer"},
		{name: "plain http URL", server: essoHeaders("http://127.0.0.1:1/esso"),
			want: `X-Apple-MDM-ESSO URL "http://127.0.0.1:1/esso" must use https`},
		{name: "relative URL", server: essoHeaders("/mdmauth/esso"),
			want: `X-Apple-MDM-ESSO URL "/mdmauth/esso" is not an absolute URL`},
		{name: "two headers", server: essoHeaders("SRV/mdmauth/esso", "SRV/mdmauth/esso"),
			want: "2 X-Apple-MDM-ESSO headers; send exactly one URL"},

		// The answer.
		{name: "document 404", server: essoHeaders("SRV/mdmauth/esso"),
			want: "Enrollment SSO document answered HTTP 404; the device needs 200"},
		{name: "content type", base: std(nil), server: essoAnswer("text/plain", string(essoDoc(false, nil))),
			want: `Content-Type "text/plain", want application/json`},
		{name: "not an object", base: std(nil), server: essoAnswer("application/json", `[]`),
			want: "Enrollment SSO document is not a JSON object"},
		{name: "duplicate key", base: std(nil), server: essoAnswer("application/json", `{"iTunesStoreID":1,"iTunesStoreID":1,"ConfigurationProfile":"`+b64(sample)+`"}`),
			want: `duplicate JSON key "iTunesStoreID"`},
		{name: "unknown key", base: std(set("Name", "Example SSO")),
			want: `unexpected key "Name" in the Enrollment SSO document`},
		{name: "lower-case key", base: std(func(m map[string]any) { m["itunesStoreID"] = m["iTunesStoreID"]; delete(m, "iTunesStoreID") }),
			want: `unexpected key "itunesStoreID"`},

		// iTunesStoreID and AppIDs.
		{name: "iTunesStoreID as a string", base: std(set("iTunesStoreID", "1234567890")),
			want: `iTunesStoreID "1234567890" is not a JSON integer`},
		{name: "iTunesStoreID with a fraction", base: std(set("iTunesStoreID", 1234567890.5)),
			want: "iTunesStoreID 1234567890.5 is not a JSON integer"},
		{name: "iTunesStoreID zero", base: std(set("iTunesStoreID", 0)),
			want: "iTunesStoreID 0 is not an App Store id"},
		{name: "iTunesStoreID missing", base: std(del("iTunesStoreID")),
			want: "no iTunesStoreID: a document named by X-Apple-MDM-ESSO must give the App Store id"},
		{name: "AppIDs in a standard document", base: std(set("AppIDs", []string{devicetest.ESSOAppID})),
			want: "AppIDs in a document named by X-Apple-MDM-ESSO: only X-Apple-MDM-ESSO-Developer documents"},
		{name: "developer document without AppIDs", base: dev(del("AppIDs")), config: developer,
			want: "no AppIDs: a document named by X-Apple-MDM-ESSO-Developer needs at least one"},
		{name: "empty AppIDs", base: dev(set("AppIDs", []string{})), config: developer,
			want: "AppIDs must be a non-empty array of strings"},
		{name: "malformed AppID", base: dev(set("AppIDs", []string{"com.example.sso"})), config: developer,
			want: `AppID "com.example.sso" is not TEAMID.bundle.id`},

		// Associated domains.
		{name: "AssociatedDomains a string", base: std(set("AssociatedDomains", "authsrv:login.example.com")),
			want: "AssociatedDomains must be an array of strings"},
		{name: "AssociatedDomains with a null", base: std(set("AssociatedDomains", []any{nil})),
			want: "AssociatedDomains must be an array of strings"},
		{name: "associated domain URL", base: std(set("AssociatedDomains", []string{"https://login.example.com"})),
			want: `associated domain "https://login.example.com" is not service:host`},
		{name: "direct downloads a string", base: std(set("AssociatedDomainsEnableDirectDownloads", "true")),
			want: `AssociatedDomainsEnableDirectDownloads "true" is not a JSON boolean`},

		// The configuration profile.
		{name: "neither profile nor declarations", base: std(del("ConfigurationProfile", "Declarations")),
			want: "neither ConfigurationProfile nor Declarations"},
		{name: "profile not base64", base: std(set("ConfigurationProfile", "<plist>")),
			want: "ConfigurationProfile is not a base64 string"},
		{name: "profile as raw data", base: std(set("ConfigurationProfile", 42)),
			want: "ConfigurationProfile is not a base64 string: not a JSON string"},
		{name: "binary profile", base: std(profile("bplist00\xd1\x01\x02")),
			want: "binary property list ConfigurationProfile"},
		{name: "profile not a plist", base: std(profile("<html></html>")),
			want: "ConfigurationProfile is not a valid XML property list dictionary"},
		{name: "forbidden payload", base: std(profile(string(devicetest.ESSOProfile(`<dict>
			<key>PayloadType</key><string>com.apple.wifi.managed</string>
			<key>PayloadIdentifier</key><string>com.example.wifi</string>
			<key>PayloadUUID</key><string>6A7B8C9D-0E1F-4A2B-8C3D-4E5F6A7B8C9D</string>
			<key>PayloadVersion</key><integer>1</integer>
		</dict>`)))),
			want: "PayloadContent[2] has PayloadType com.apple.wifi.managed: the Enrollment SSO profile may hold only com.apple.extensiblesso and certificate payloads"},
		{name: "no extensiblesso payload", base: std(profile(strings.Replace(sample, "com.apple.extensiblesso", "com.apple.security.pem", 1))),
			want: "ConfigurationProfile has no com.apple.extensiblesso payload"},
		{name: "profile not a Configuration", base: std(profile(strings.Replace(sample, "<string>Configuration</string>", "<string>com.apple.extensiblesso</string>", 1))),
			want: "ConfigurationProfile top-level PayloadType com.apple.extensiblesso, want Configuration"},
		{name: "SSO payload without ExtensionIdentifier", base: std(profile(strings.Replace(sample, "ExtensionIdentifier", "Extension", 1))),
			want: "has no ExtensionIdentifier"},
		{name: "SSO payload without PayloadUUID", base: std(profile(strings.Replace(sample, "<key>PayloadUUID</key><string>9F1B2C3D-4E5F-4A6B-8C7D-0E1F2A3B4C5D</string>", "", 1))),
			want: "ConfigurationProfile PayloadContent[0] has no string PayloadUUID"},

		// Declarations.
		{name: "Declarations not an array", base: std(set("Declarations", "x")),
			want: "Declarations is not an array"},
		{name: "Declarations empty", base: std(set("Declarations", []string{})),
			want: "Declarations is empty"},
		{name: "declaration not base64", base: std(set("Declarations", []string{"{}"})),
			want: "Declarations[0] is not a base64 string"},
		{name: "declaration not an object", base: std(set("Declarations", []string{b64(`"x"`)})),
			want: "Declarations[0] is not a JSON object"},
		{name: "declaration unknown key", base: std(editDecls(false, func(ds []map[string]any) []map[string]any {
			ds[2]["Name"] = "x"
			return ds
		})), want: `Declarations[2] has unexpected key "Name"`},
		{name: "declaration without Payload", base: std(editDecls(false, func(ds []map[string]any) []map[string]any {
			delete(ds[3], "Payload")
			return ds
		})), want: `declaration "com.example.esso.legacy" has no Payload`},
		{name: "forbidden declaration type", base: std(editDecls(false, func(ds []map[string]any) []map[string]any {
			return append(ds, map[string]any{"Type": "com.apple.configuration.passcode.settings", "Identifier": "pc", "Payload": map[string]any{}})
		})), want: `declaration "pc" has Type com.apple.configuration.passcode.settings: only`},
		{name: "no activation", base: std(editDecls(false, func(ds []map[string]any) []map[string]any { return ds[1:] })),
			want: "Declarations have no com.apple.activation.simple"},
		{name: "two activations", base: std(editDecls(false, func(ds []map[string]any) []map[string]any {
			second := map[string]any{"Type": ds[0]["Type"], "Identifier": "second", "Payload": ds[0]["Payload"]}
			return append(ds, second)
		})), want: "more than one com.apple.activation.simple declaration"},
		{name: "activation misses a configuration", base: std(editDecls(false, func(ds []map[string]any) []map[string]any {
			ds[0]["Payload"] = map[string]any{"StandardConfigurations": []string{"com.example.esso.app"}}
			return ds
		})), want: `com.apple.activation.simple does not reference configuration "com.example.esso.legacy"`},
		{name: "activation references an unknown configuration", base: std(editDecls(false, func(ds []map[string]any) []map[string]any {
			ds[0]["Payload"] = map[string]any{"StandardConfigurations": []string{"com.example.esso.app", "com.example.esso.legacy", "gone"}}
			return ds
		})), want: `references "gone", which is not a configuration`},
		{name: "AppStoreID differs", base: std(editDecls(false, func(ds []map[string]any) []map[string]any {
			ds[1]["Payload"] = map[string]any{"AppStoreID": "42"}
			return ds
		})), want: "AppStoreID 42 differs from iTunesStoreID 1234567890"},
		{name: "app configuration without AppStoreID", base: std(editDecls(false, func(ds []map[string]any) []map[string]any {
			ds[1]["Payload"] = map[string]any{"BundleID": "com.example.sso"}
			return ds
		})), want: "com.apple.configuration.app.managed needs an AppStoreID"},
		{name: "developer BundleID of no AppID", config: developer, base: dev(editDecls(true, func(ds []map[string]any) []map[string]any {
			ds[1]["Payload"] = map[string]any{"BundleID": "com.example.other"}
			return ds
		})), want: `needs a BundleID of one of the AppIDs (got "com.example.other")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(tc.base, tc.server)
			defer srv.Close()
			d, _ := newDevice(t, srv, tc.config)
			_, err := d.Enroll(testContext(t))
			if err == nil {
				t.Fatal("Enroll succeeded, want an error")
			}
			wantDeviation(t, err, tc.want)
			if !strings.HasPrefix(err.Error(), device.StepESSO+": protocol deviation: ") {
				t.Errorf("error %q does not name the esso step", err)
			}
			if d.ESSO() != nil || d.Profile() != nil || len(srv.SignInQueries()) != 0 || len(srv.AuthorizeQueries()) != 0 {
				t.Error("the enrollment went on after the Enrollment SSO deviation")
			}
		})
	}
}

func TestEnrollmentSSORedirect(t *testing.T) {
	srv := newServer(devicetest.Options{ESSO: essoDoc(false, nil)},
		on(devicetest.StageESSO, func(r *http.Request) bool { return r.URL.RawQuery == "" },
			func(s *devicetest.Server, w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, s.ESSOURL()+"?moved=1", http.StatusFound)
			}))
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	if _, err := d.Enroll(testContext(t)); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if doc := d.ESSO(); doc == nil || doc.URL != srv.ESSOURL()+"?moved=1" {
		t.Fatalf("ESSO() = %+v, want the document from the redirect target", doc)
	}
	// The hook answered the first request; the server recorded the second.
	if reqs := srv.ESSORequests(); len(reqs) != 1 || reqs[0].UserAgent != "DeviceManagementClient/1.0" {
		t.Errorf("document requests = %+v", reqs)
	}
}
