package e2e

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// The example provider has no groups claim: family_name stands in for one
// ("Admins" is the group allowed Device Enrollment on a Mac).
var policyUsers = []testenv.User{
	{ID: "u-alice", Username: "alice", Password: lab.Password, FirstName: "Alice", LastName: "Admins", Email: "alice@example.com", EmailVerified: true},
	{ID: "u-bob", Username: "bob", Password: lab.Password, FirstName: "Bob", LastName: "Builder", Email: "bob@example.com", EmailVerified: true},
	{ID: "u-dave", Username: "dave", Password: lab.Password, FirstName: "Dave", LastName: "Org", Email: "dave@example.org", EmailVerified: true},
}

const policyHandler = `		policy {
			rule mac-adde {
				families Mac
				claim family_name Admins
				mode adde
			}
			rule mac-deny {
				families Mac
				deny "Enrolling a Mac needs membership of the Admins group."
			}
			rule org-adde {
				domains example.org
				mode adde
			}
			rule com-byod {
				domains example.com
				mode byod
			}
		}
`

func TestPolicyDomainsModesAndClaims(t *testing.T) {
	l, err := lab.Start(t, lab.Options{Users: policyUsers, Handler: policyHandler, Discovery: "\t\t\tmode byod\n"})
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)

	// Two domains, two modes.
	alice := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	if p := enrollAndCheckIn(t, c, alice); p.EnrollmentMode != "BYOD" {
		t.Fatalf("example.com iPhone: %s", p.EnrollmentMode)
	}
	dave := newDevice(t, l, "iPhone", "iPhone16,1", "dave@example.org", "dave")
	if p := enrollAndCheckIn(t, c, dave); p.EnrollmentMode != "ADDE" {
		t.Fatalf("example.org iPhone: %s", p.EnrollmentMode)
	}

	// A Mac: the group decides, at sign-in.
	aliceMac := newDevice(t, l, "Mac", "Mac14,2", "alice@example.com", "alice")
	if p := enrollAndCheckIn(t, c, aliceMac); p.EnrollmentMode != "ADDE" {
		t.Fatalf("alice's Mac: %s", p.EnrollmentMode)
	}
	bobMac := newDevice(t, l, "Mac", "Mac14,2", "bob@example.com", "bob")
	version, _, err := bobMac.Discover(c)
	if err != nil || version != "mdm-adde" {
		t.Fatalf("bob's Mac discovery: %q %v (discovery cannot see claims: it answers the optimistic rule)", version, err)
	}
	_, err = bobMac.Enroll(c)
	var se *device.SignInError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden || !strings.Contains(se.Snippet, "Admins group") {
		t.Fatalf("bob's Mac: %v", err)
	}
	if bobMac.Token() != "" {
		t.Fatal("a refused sign-in handed out a token")
	}

	// Unknown domains are refused at discovery.
	mallory := newDevice(t, l, "iPhone", "iPhone17,2", "mallory@elsewhere.net", "alice")
	var re *device.RefusedError
	if _, _, err := mallory.Discover(c); !errors.As(err, &re) || re.Status != http.StatusForbidden {
		t.Fatalf("unknown domain: %v", err)
	}
}

// The organization's website hands discovery to the MDM host: the redirect
// carries user-identifier and model-family, which devices do not copy.
func TestDiscoveryRedirectFromTheWebsite(t *testing.T) {
	l, err := lab.Start(t, lab.Options{Website: `	mdm_discovery {
		redirect {{.Gateway}}
		domains example.com
		unknown 404
	}
	respond "the organization's website"`})
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	d := newDeviceWith(t, l, "iPhone", "iPhone17,2", "a+lice@example.com", "alice", func(c *device.Config) { c.DiscoveryBase = l.WebsiteURL })
	version, base, err := d.Discover(c)
	if err != nil || version != "mdm-byod" || !strings.HasPrefix(base, l.BaseURL+"/mdmauth/enroll/byod") {
		t.Fatalf("discovery through the website: %q %q %v", version, base, err)
	}
	// Unknown domains get 404 at the website, so Apple's fallback can run.
	resp, err := l.HTTPClient.Get(l.WebsiteURL + "/.well-known/com.apple.remotemanagement?user-identifier=eve@elsewhere.net&model-family=iPhone")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown domain at the website: %d", resp.StatusCode)
	}
	// The rest of the website is untouched.
	resp, err = l.HTTPClient.Get(l.WebsiteURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("website: %d", resp.StatusCode)
	}
}

// The Managed Apple ID can be built from claims with a template.
func TestManagedAppleIDTemplate(t *testing.T) {
	l, err := lab.Start(t, lab.Options{OIDC: "\t\t\tmanaged_apple_id_template \"{claim.preferred_username}@appleid.example.com\"\n"})
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	if p := enrollAndCheckIn(t, c, d); p.AssignedManagedAppleID != "alice@appleid.example.com" {
		t.Fatalf("AssignedManagedAppleID %q", p.AssignedManagedAppleID)
	}
}

// Enrollment SSO: the enrollment 401 carries X-Apple-MDM-ESSO for an
// iPhone (never for a Mac), and the emulator fetches and checks the
// document before signing in.
func TestEnrollmentSSO(t *testing.T) {
	sso, err := os.ReadFile("../../internal/esso/testdata/redirect.mobileconfig")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ssoPath := filepath.Join(dir, "sso.mobileconfig")
	if err := os.WriteFile(ssoPath, sso, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := lab.Start(t, lab.Options{Handler: "\t\tesso {\n\t\t\titunes_store_id 123456789\n\t\t\tassociated_domains authsrv:login.example.com\n\t\t\tconfiguration_profile " + ssoPath + "\n\t\t}\n"})
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	phone := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, phone)
	doc := phone.ESSO()
	if doc == nil || doc.ITunesStoreID != 123456789 || len(doc.AssociatedDomains) != 1 || len(doc.ConfigurationProfile) == 0 {
		t.Fatalf("ESSO document: %+v", doc)
	}
	// A Mac never gets the header (the emulator fails if it does).
	mac := newDevice(t, l, "Mac", "Mac14,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, mac)
	if mac.ESSO() != nil {
		t.Fatal("a Mac was offered Enrollment SSO")
	}
}

// Signed profiles: the emulator verifies the signature and the chain.
func TestSignedProfile(t *testing.T) {
	dir := t.TempDir()
	ca, err := testenv.NewCA("profile signing CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueClient("mdm.example.com profile signer")
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := leaf.WritePEM(dir, "signer")
	if err != nil {
		t.Fatal(err)
	}
	l, err := lab.Start(t, lab.Options{ProfileSignCert: certPath, ProfileSignKey: keyPath,
		Handler: "\t\tpolicy {\n\t\t\trule {\n\t\t\t\tdomains example.com\n\t\t\t\trequired_app_id 987654321\n\t\t\t}\n\t\t}\n"})
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	d := newDeviceWith(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice", func(c *device.Config) { c.ProfileRoots = ca.Pool() })
	p := enrollAndCheckIn(t, c, d)
	if !p.Signed || p.RequiredAppIDForMDM != 987654321 {
		t.Fatalf("signed %v, RequiredAppIDForMDM %d", p.Signed, p.RequiredAppIDForMDM)
	}
	// A device expecting another signer refuses the profile.
	other, err := testenv.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	d2 := newDeviceWith(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice", func(c *device.Config) { c.ProfileRoots = other.Pool() })
	if _, err := d2.Enroll(c); err == nil || !strings.Contains(err.Error(), "chain") {
		t.Fatalf("a profile from an unexpected signer: %v", err)
	}
}
