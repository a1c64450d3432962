package device_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

// on answers one stage with h (when also returns true for the request).
func on(stage string, when func(*http.Request) bool, h func(s *devicetest.Server, w http.ResponseWriter, r *http.Request)) func(*devicetest.Server) devicetest.Options {
	return func(s *devicetest.Server) devicetest.Options {
		return devicetest.Options{Hook: func(st string, w http.ResponseWriter, r *http.Request) bool {
			if st != stage || (when != nil && !when(r)) {
				return false
			}
			h(s, w, r)
			return true
		}}
	}
}

func firstPOST(r *http.Request) bool  { return r.Header.Get("Authorization") == "" }
func secondPOST(r *http.Request) bool { return r.Header.Get("Authorization") != "" }

func jsonAnswer(status int, body string) func(*devicetest.Server, http.ResponseWriter, *http.Request) {
	return func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func discoveryJSON(body func(s *devicetest.Server) string) func(*devicetest.Server, http.ResponseWriter, *http.Request) {
	return func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body(s))
	}
}

func challenge(values ...string) func(*devicetest.Server, http.ResponseWriter, *http.Request) {
	return func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
		for _, v := range values {
			w.Header().Add("WWW-Authenticate", strings.ReplaceAll(v, "SRV", s.URL))
		}
		w.WriteHeader(http.StatusUnauthorized)
	}
}

func redirect(status int, location string) func(*devicetest.Server, http.ResponseWriter, *http.Request) {
	return func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", location)
		w.WriteHeader(status)
	}
}

func editProfile(fn func(top, mdm map[string]any)) func(*devicetest.Server) devicetest.Options {
	return func(*devicetest.Server) devicetest.Options { return devicetest.Options{EditProfile: fn} }
}

// newServer starts a devicetest server whose options may refer to itself.
func newServer(base devicetest.Options, mk func(*devicetest.Server) devicetest.Options) *devicetest.Server {
	var srv *devicetest.Server
	opts := base
	if mk != nil {
		var extra devicetest.Options
		hook := func(stage string, w http.ResponseWriter, r *http.Request) bool {
			return extra.Hook != nil && extra.Hook(stage, w, r)
		}
		edit := func(top, mdm map[string]any) {
			if extra.EditProfile != nil {
				extra.EditProfile(top, mdm)
			}
		}
		opts.Hook, opts.EditProfile = hook, edit
		srv = devicetest.New(opts)
		extra = mk(srv)
		return srv
	}
	return devicetest.New(opts)
}

func TestEnrollRejectsDeviations(t *testing.T) {
	goodServers := func(s *devicetest.Server) string {
		return `{"Servers":[{"Version":"mdm-byod","BaseURL":"` + s.BaseURL() + `"}]}`
	}
	tests := []struct {
		name   string
		base   devicetest.Options
		server func(*devicetest.Server) devicetest.Options
		config func(*device.Config)
		check  func(t *testing.T, err error)
	}{
		// Discovery.
		{name: "discovery extra top-level key",
			server: on(devicetest.StageDiscovery, nil, discoveryJSON(func(s *devicetest.Server) string {
				return `{"Servers":[{"Version":"mdm-byod","BaseURL":"` + s.BaseURL() + `"}],"Name":"x"}`
			})),
			check: deviationWith(`unexpected top-level key "Name"`)},
		{name: "discovery extra server key",
			server: on(devicetest.StageDiscovery, nil, discoveryJSON(func(s *devicetest.Server) string {
				return `{"Servers":[{"Version":"mdm-byod","BaseURL":"` + s.BaseURL() + `","Name":"x"}]}`
			})),
			check: deviationWith(`unexpected payload key "Name"`)},
		{name: "discovery two servers",
			server: on(devicetest.StageDiscovery, nil, discoveryJSON(func(s *devicetest.Server) string {
				return `{"Servers":[{"Version":"mdm-byod","BaseURL":"` + s.BaseURL() + `"},{"Version":"mdm-adde","BaseURL":"` + s.BaseURL() + `"}]}`
			})),
			check: deviationWith(`has 2 entries`)},
		{name: "discovery duplicate key",
			server: on(devicetest.StageDiscovery, nil, discoveryJSON(func(s *devicetest.Server) string {
				return `{"Servers":[{"Version":"mdm-byod","Version":"mdm-byod","BaseURL":"` + s.BaseURL() + `"}]}`
			})),
			check: deviationWith(`duplicate JSON key "Version"`)},
		{name: "discovery unknown Version",
			server: on(devicetest.StageDiscovery, nil, discoveryJSON(func(s *devicetest.Server) string {
				return strings.Replace(goodServers(s), "mdm-byod", "mdm-user", 1)
			})),
			check: deviationWith(`Version "mdm-user"`)},
		{name: "discovery wrong content type",
			server: on(devicetest.StageDiscovery, nil, func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, goodServers(s))
			}),
			check: deviationWith(`Content-Type "text/plain", want application/json`)},
		{name: "discovery plain http BaseURL",
			server: on(devicetest.StageDiscovery, nil, discoveryJSON(func(s *devicetest.Server) string {
				return strings.Replace(goodServers(s), "https://", "http://", 1)
			})),
			check: deviationWith(`must use https`)},
		{name: "discovery 404",
			server: on(devicetest.StageDiscovery, nil, func(_ *devicetest.Server, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }),
			check:  httpStatus(404)},
		{name: "discovery refusal",
			server: on(devicetest.StageDiscovery, nil, jsonAnswer(403, `{"code":"com.apple.well-known.failed","description":"no such user","message":"Ask IT to enable your account."}`)),
			check: func(t *testing.T, err error) {
				var re *device.RefusedError
				if !errors.As(err, &re) || re.Status != 403 || re.Code != device.WellKnownFailedCode || re.Message != "Ask IT to enable your account." || re.Description != "no such user" {
					t.Fatalf("error = %v, want a RefusedError with the message", err)
				}
			}},
		{name: "discovery refusal not JSON",
			server: on(devicetest.StageDiscovery, nil, func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
				http.Error(w, `{"code":"com.apple.well-known.failed"}`, http.StatusForbidden)
			}),
			check: deviationWith(`only reads 403 bodies sent as application/json`)},
		{name: "discovery refusal wrong code",
			server: on(devicetest.StageDiscovery, nil, jsonAnswer(403, `{"code":"com.apple.well-known.refused","message":"no"}`)),
			check:  deviationWith(`403 code "com.apple.well-known.refused"`)},

		// First enrollment POST and its challenge.
		{name: "first POST answered 200",
			server: on(devicetest.StageEnroll, firstPOST, func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
				b, _ := s.Profile("alice@example.com")
				w.Header().Set("Content-Type", "application/x-apple-aspen-config")
				w.Write(b)
			}),
			check: deviationWith(`requires a 401 challenge`)},
		{name: "first POST refused",
			server: on(devicetest.StageEnroll, firstPOST, jsonAnswer(403, `{"code":"com.example.not-allowed","message":"Personal devices are not allowed."}`)),
			check: func(t *testing.T, err error) {
				var re *device.RefusedError
				if !errors.As(err, &re) || re.Step != device.StepEnroll || re.Message != "Personal devices are not allowed." {
					t.Fatalf("error = %v, want an enrollment RefusedError", err)
				}
			}},
		{name: "first POST 400",
			server: on(devicetest.StageEnroll, firstPOST, func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "bad request", 400)
			}),
			check: httpStatus(400)},
		{name: "first POST redirected with 302",
			server: on(devicetest.StageEnroll, firstPOST, redirect(302, "/elsewhere")),
			check:  deviationWith(`redirected with 302, which drops the body`)},
		{name: "challenge missing",
			server: on(devicetest.StageEnroll, firstPOST, challenge()),
			check:  deviationWith(`401 without a WWW-Authenticate header`)},
		{name: "two WWW-Authenticate headers",
			server: on(devicetest.StageEnroll, firstPOST, challenge(`Bearer method="apple-as-web", url="SRV/mdmauth/sign-in/x"`, `Basic realm="mdm"`)),
			check:  deviationWith(`2 WWW-Authenticate headers`)},
		{name: "lower-case bearer",
			server: on(devicetest.StageEnroll, firstPOST, challenge(`bearer method="apple-as-web", url="SRV/mdmauth/sign-in/x"`)),
			check:  deviationWith(`compares "Bearer" case-sensitively`)},
		{name: "redirect-uri instead of redirect-url",
			server: on(devicetest.StageEnroll, firstPOST, challenge(`Bearer method="apple-oauth2", authorization-url="SRV/oauth/authorize", token-url="SRV/oauth/token", redirect-uri="apple-remotemanagement-user-login:/oauth2/redirection", client-id="mdm-device"`)),
			check:  deviationWith(`redirect-uri: the device reads redirect-url`)},
		{name: "unquoted challenge value",
			server: on(devicetest.StageEnroll, firstPOST, challenge(`Bearer method=apple-as-web, url="SRV/mdmauth/sign-in/x"`)),
			check:  deviationWith(`value of method is not quoted`)},
		{name: "undocumented method",
			server: on(devicetest.StageEnroll, firstPOST, challenge(`Bearer method="apple-maid", url="SRV/mdmauth/sign-in/x"`)),
			check:  deviationWith(`method "apple-maid"`)},
		{name: "plain http sign-in url",
			server: on(devicetest.StageEnroll, firstPOST, challenge(`Bearer method="apple-as-web", url="http://127.0.0.1:1/sign-in"`)),
			check:  deviationWith(`sign-in url "http://127.0.0.1:1/sign-in" must use https`)},

		// Web sign-in.
		{name: "final redirect is a 302",
			server: on(devicetest.StageCallback, nil, redirect(302, "apple-remotemanagement-user-login://authentication-results?access-token=abc")),
			check:  deviationWith(`is a 302; the device requires 308 Permanent Redirect`)},
		{name: "callback host wrong",
			server: on(devicetest.StageCallback, nil, redirect(308, "apple-remotemanagement-user-login://results?access-token=abc")),
			check:  deviationWith(`callback host "results", want "authentication-results"`)},
		{name: "callback without access-token",
			server: on(devicetest.StageCallback, nil, redirect(308, "apple-remotemanagement-user-login://authentication-results?token=abc")),
			check:  deviationWith(`without an access-token item`)},
		{name: "sign-in error page",
			server: on(devicetest.StageCallback, nil, func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(403)
				io.WriteString(w, "<html><body><h1>Access denied</h1><p>alice is not in the mdm-users group</p></body></html>")
			}),
			check: func(t *testing.T, err error) {
				var se *device.SignInError
				if !errors.As(err, &se) || se.Status != 403 || se.Snippet != "Access denied alice is not in the mdm-users group" {
					t.Fatalf("error = %#v, want a SignInError 403 with the page text", err)
				}
			}},
		{name: "wrong password",
			config: func(c *device.Config) {
				c.Browser = &device.FormBrowser{Client: c.HTTPClient, Username: "alice", Password: "wrong"}
			},
			check: func(t *testing.T, err error) {
				var se *device.SignInError
				if !errors.As(err, &se) || se.Status != 200 || !strings.Contains(se.Reason, "shown again") || !strings.Contains(se.Snippet, "username or password wrong") {
					t.Fatalf("error = %v, want a SignInError naming the rejected credentials", err)
				}
			}},
		{name: "CSP form-action blocks the callback scheme",
			base:  devicetest.Options{LoginCSP: "default-src 'self'; form-action 'self'"},
			check: deviationWith(`form-action of the login page blocks the redirect to apple-remotemanagement-user-login:`)},

		// Second enrollment POST and the profile.
		{name: "second POST 401",
			server: on(devicetest.StageEnroll, secondPOST, challenge(`Bearer method="apple-as-web", url="SRV/mdmauth/sign-in/x"`)),
			check: func(t *testing.T, err error) {
				var he *device.HTTPError
				if !errors.Is(err, device.ErrAccountInvalidated) || !errors.As(err, &he) || he.Status != 401 {
					t.Fatalf("error = %v, want ErrAccountInvalidated", err)
				}
			}},
		{name: "profile content type",
			server: on(devicetest.StageEnroll, secondPOST, func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
				b, _ := s.Profile("alice@example.com")
				w.Header().Set("Content-Type", "application/xml")
				w.Write(b)
			}),
			check: deviationWith(`Content-Type "application/xml", want application/x-apple-aspen-config`)},
		{name: "binary plist profile",
			server: on(devicetest.StageEnroll, secondPOST, func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/x-apple-aspen-config")
				io.WriteString(w, "bplist00\xd1\x01\x02")
			}),
			check: deviationWith(`binary property list`)},
		{name: "AccessRights in BYOD",
			server: editProfile(func(_, m map[string]any) { m["AccessRights"] = 8191 }),
			check:  deviationWith(`AccessRights, which must be absent when EnrollmentMode is BYOD`)},
		{name: "EnrollmentMode does not match Version",
			server: editProfile(func(_, m map[string]any) { m["EnrollmentMode"] = "ADDE" }),
			check:  deviationWith(`EnrollmentMode ADDE does not match the discovered Version mdm-byod`)},
		{name: "BYOD profile for an mdm-adde discovery",
			base: devicetest.Options{Version: device.VersionADDE},
			server: editProfile(func(_, m map[string]any) {
				m["EnrollmentMode"] = "BYOD"
				delete(m, "AccessRights")
			}),
			check: deviationWith(`EnrollmentMode BYOD does not match the discovered Version mdm-adde`)},
		{name: "EnrollmentMode missing",
			server: editProfile(func(_, m map[string]any) { delete(m, "EnrollmentMode") }),
			check:  deviationWith(`no EnrollmentMode`)},
		{name: "AssignedManagedAppleID missing",
			server: editProfile(func(_, m map[string]any) { delete(m, "AssignedManagedAppleID") }),
			check:  deviationWith(`no AssignedManagedAppleID`)},
		{name: "ManagedAppleID present",
			server: editProfile(func(_, m map[string]any) { m["ManagedAppleID"] = "alice@example.com" }),
			check:  deviationWith(`has ManagedAppleID`)},
		{name: "SignMessage false",
			server: editProfile(func(_, m map[string]any) { m["SignMessage"] = false }),
			check:  deviationWith(`SignMessage is not true`)},
		{name: "Topic prefix",
			server: editProfile(func(_, m map[string]any) { m["Topic"] = "com.example.mdm" }),
			check:  deviationWith(`Topic "com.example.mdm" must begin with com.apple.mgmt.`)},
		{name: "ServerURL plain http",
			server: editProfile(func(_, m map[string]any) { m["ServerURL"] = "http://mdm.example.com/mdm" }),
			check:  deviationWith(`ServerURL "http://mdm.example.com/mdm" must begin with https://`)},
		{name: "IdentityCertificateUUID dangling",
			server: editProfile(func(_, m map[string]any) { m["IdentityCertificateUUID"] = "00000000-0000-4000-8000-000000000000" }),
			check:  deviationWith(`does not name an identity payload`)},
		{name: "profile PayloadType",
			server: editProfile(func(top, _ map[string]any) { top["PayloadType"] = "com.apple.mdm" }),
			check:  deviationWith(`top-level PayloadType com.apple.mdm, want Configuration`)},
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
			tc.check(t, err)
			if d.Profile() != nil {
				t.Error("a profile was installed despite the error")
			}
		})
	}
}

func TestEnrollAcceptsVariants(t *testing.T) {
	tests := []struct {
		name   string
		base   devicetest.Options
		server func(*devicetest.Server) devicetest.Options
		check  func(t *testing.T, srv *devicetest.Server, p *device.Profile)
	}{
		{name: "signed profile", base: devicetest.Options{SignProfile: true},
			check: func(t *testing.T, _ *devicetest.Server, p *device.Profile) {
				if !p.Signed {
					t.Error("Profile.Signed = false")
				}
			}},
		{name: "CSP allowing the callback scheme",
			base: devicetest.Options{LoginCSP: "form-action 'self' apple-remotemanagement-user-login:"}},
		{name: "discovery redirect without the query",
			server: on(devicetest.StageDiscovery, func(r *http.Request) bool { return !strings.Contains(r.URL.RawQuery, "hop") },
				redirect(302, "/.well-known/com.apple.remotemanagement?hop=1")),
			check: func(t *testing.T, srv *devicetest.Server, _ *device.Profile) {
				// The first request was answered by the hook; the device
				// asked the Location exactly, without its own query.
				if got := srv.Discoveries(); len(got) != 1 || got[0] != "hop=1" {
					t.Errorf("followed discovery queries = %q, want [\"hop=1\"]", got)
				}
			}},
		{name: "discovery content type with charset",
			server: on(devicetest.StageDiscovery, nil, func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				io.WriteString(w, `{"Servers":[{"Version":"mdm-byod","BaseURL":"`+s.BaseURL()+`"}]}`)
			})},
		{name: "first POST redirected with 307",
			server: on(devicetest.StageEnroll, func(r *http.Request) bool { return r.URL.Query().Get("moved") == "" },
				func(s *devicetest.Server, w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Location", s.BaseURL()+"?moved=1")
					w.WriteHeader(http.StatusTemporaryRedirect)
				}),
			check: func(t *testing.T, srv *devicetest.Server, _ *device.Profile) {
				// Both POSTs were redirected; the server got each body intact.
				if e := srv.Enrollments(); len(e) != 2 || e[0].Err != "" || e[1].Err != "" {
					t.Errorf("redirected enrollment POSTs = %+v", e)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(tc.base, tc.server)
			defer srv.Close()
			d, _ := newDevice(t, srv, nil)
			p, err := d.Enroll(testContext(t))
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			if tc.check != nil {
				tc.check(t, srv, p)
			}
		})
	}
}

func deviationWith(want string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		wantDeviation(t, err, want)
	}
}

func httpStatus(status int) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var he *device.HTTPError
		if !errors.As(err, &he) || he.Status != status {
			t.Fatalf("error = %v, want an HTTPError %d", err, status)
		}
	}
}
