package gateway_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/profile"
)

// kioskTemplate is the example template pointed at another MDM path, so
// that a served profile tells which template it came from.
func kioskTemplate(tb testing.TB) *profile.Template {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "enroll.mobileconfig"))
	if err != nil {
		tb.Fatal(err)
	}
	src := strings.ReplaceAll(string(data), "https://mdm.example.com/mdm/ad", "https://mdm.example.com/mdm/kiosk")
	if src == string(data) {
		tb.Fatal("the example template has no https://mdm.example.com/mdm/ad to replace")
	}
	tpl, err := profile.ParseTemplate([]byte(src))
	if err != nil {
		tb.Fatal(err)
	}
	return tpl
}

// withKiosk adds the named template "kiosk".
func withKiosk(tb testing.TB) func(*gateway.Config) {
	tpl := kioskTemplate(tb)
	return func(c *gateway.Config) { c.Templates = map[string]*profile.Template{"kiosk": tpl} }
}

func TestEnrollNamedProfile(t *testing.T) {
	e := newEnv(t, withKiosk(t))
	tests := []struct {
		name          string
		profile       string
		requiredAppID int64
		mode          string
		serverURL     string
		wantAppID     string // RequiredAppIDForMDM, "" when absent
	}{
		{"default template", "", 0, "byod", "https://mdm.example.com/mdm/ad", ""},
		{"default template with a required app", "", 1234567890, "byod", "https://mdm.example.com/mdm/ad", "1234567890"},
		{"named template", "kiosk", 0, "adde", "https://mdm.example.com/mdm/kiosk", ""},
		{"named template with a required app", "kiosk", 987654321, "byod", "https://mdm.example.com/mdm/kiosk", "987654321"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := grant(tt.mode)
			g.Profile, g.RequiredAppID = tt.profile, tt.requiredAppID
			raw, _ := e.issue(g)
			w := e.mustServe(enrollRequest(tt.mode, "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %q", w.Code, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != "application/x-apple-aspen-config" {
				t.Errorf("Content-Type %q, want application/x-apple-aspen-config", got)
			}
			mdm := profilePayload(t, w.Body.Bytes())
			if mdm["ServerURL"] != tt.serverURL || mdm["CheckInURL"] != tt.serverURL {
				t.Errorf("ServerURL %v CheckInURL %v, want %s (the template the token names)", mdm["ServerURL"], mdm["CheckInURL"], tt.serverURL)
			}
			if mdm["EnrollmentMode"] != strings.ToUpper(tt.mode) || mdm["AssignedManagedAppleID"] != "alice@example.com" {
				t.Errorf("EnrollmentMode %v AssignedManagedAppleID %v", mdm["EnrollmentMode"], mdm["AssignedManagedAppleID"])
			}
			v, ok := mdm["RequiredAppIDForMDM"]
			switch {
			case tt.wantAppID == "" && ok:
				t.Errorf("RequiredAppIDForMDM %v, want none", v)
			case tt.wantAppID != "" && fmt.Sprint(v) != tt.wantAppID:
				t.Errorf("RequiredAppIDForMDM %v (%T), want the integer %s", v, v, tt.wantAppID)
			}
			if tt.wantAppID != "" && !regexp.MustCompile(`<key>RequiredAppIDForMDM</key>\s*<integer>`+tt.wantAppID+`</integer>`).Match(w.Body.Bytes()) {
				t.Errorf("RequiredAppIDForMDM is not the plist integer %s:\n%s", tt.wantAppID, w.Body)
			}
		})
	}
}

func TestEnrollUnknownProfile(t *testing.T) {
	e := newEnv(t, withKiosk(t))
	g := grant("byod")
	g.Profile = "retired"
	raw, _ := e.issue(g)
	e.logs.TakeAll()
	w := e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
	assertRefused(t, w, "com.apple.mdmauth.profile-unavailable")
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	logged := e.logs.FilterMessage("the token names an enrollment profile that is no longer configured").All()
	if len(logged) != 1 || logged[0].ContextMap()["profile"] != "retired" {
		t.Errorf("log entries %v, want one naming the profile", logged)
	}
	// Without any named template configured, too.
	e = newEnv(t)
	raw, _ = e.issue(g)
	w = e.mustServe(enrollRequest("byod", "", nil, raw), failNext(t))
	assertRefused(t, w, "com.apple.mdmauth.profile-unavailable")
}

func TestEnrollSignedProfile(t *testing.T) {
	id := newIdentity(t, "Profile Signing")
	signer := id.signer(t)
	e := newEnv(t, withKiosk(t), func(c *gateway.Config) { c.Signer = signer })
	for _, name := range []string{"", "kiosk"} {
		t.Run("template "+name, func(t *testing.T) {
			g := grant("byod")
			g.Profile, g.RequiredAppID = name, 42
			raw, _ := e.issue(g)
			w := e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %q", w.Code, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != "application/x-apple-aspen-config" {
				t.Errorf("Content-Type %q, want application/x-apple-aspen-config", got)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if bytes.HasPrefix(w.Body.Bytes(), []byte("<?xml")) {
				t.Fatal("the profile was served unsigned")
			}
			p7, err := pkcs7.Parse(w.Body.Bytes())
			if err != nil {
				t.Fatalf("pkcs7.Parse: %v", err)
			}
			if err := p7.Verify(); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if s := p7.GetOnlySigner(); s == nil || !s.Equal(id.cert) {
				t.Error("not signed by the configured certificate")
			}
			mdm := profilePayload(t, p7.Content)
			if fmt.Sprint(mdm["RequiredAppIDForMDM"]) != "42" || mdm["EnrollmentMode"] != "BYOD" {
				t.Errorf("signed content: RequiredAppIDForMDM %v EnrollmentMode %v", mdm["RequiredAppIDForMDM"], mdm["EnrollmentMode"])
			}
			if want := map[string]string{"": "https://mdm.example.com/mdm/ad", "kiosk": "https://mdm.example.com/mdm/kiosk"}[name]; mdm["ServerURL"] != want {
				t.Errorf("signed content: ServerURL %v, want %s", mdm["ServerURL"], want)
			}
		})
	}
}
