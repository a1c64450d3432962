package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/testenv"
	"github.com/mdmauth/mdmauth/internal/token"
)

// switchBrowser lets a test hand the device to another person.
type switchBrowser struct {
	mu sync.Mutex
	b  device.Browser
}

func (s *switchBrowser) SignIn(ctx context.Context, u string) (string, error) {
	s.mu.Lock()
	b := s.b
	s.mu.Unlock()
	return b.SignIn(ctx, u)
}

func (s *switchBrowser) set(b device.Browser) { s.mu.Lock(); s.b = b; s.mu.Unlock() }

func TestADDEMacDeviceAndUserChannel(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "Mac", "Mac14,2", "alice@example.com", "alice")
	version, _, err := d.Discover(c)
	if err != nil || version != "mdm-adde" {
		t.Fatalf("discovery: %q, %v", version, err)
	}
	p := enrollAndCheckIn(t, c, d) // the device channel sends no bearer
	if p.EnrollmentMode != "ADDE" {
		t.Fatalf("EnrollmentMode %q", p.EnrollmentMode)
	}
	ids := d.IDs()
	if ids.UDID == "" || ids.EnrollmentID != "" || ids.UserID == "" {
		t.Fatalf("device enrollment ids: %+v", ids)
	}
	// The user channel carries the bearer and binds the token.
	if err := d.TokenUpdate(c, device.UserChannel); err != nil {
		t.Fatalf("user channel TokenUpdate: %v", err)
	}
	uuid, cmd := testenv.DeviceInformationCommand("SerialNumber")
	runCommand(t, c, l, d, device.DeviceChannel, d.ChannelID(device.DeviceChannel), cmd, uuid)
	uuid, cmd = testenv.ProfileListCommand()
	runCommand(t, c, l, d, device.UserChannel, d.ChannelID(device.UserChannel), cmd, uuid)
	if d.Prompts() != 0 {
		t.Fatalf("prompts = %d", d.Prompts())
	}

	// A user-channel request without the bearer is challenged.
	body := idleBodyUser(d)
	resp, _, err := d.Send(c, p.ServerURL, body, device.SendOptions{NoBearer: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer method="apple-as-web", url="`) {
		t.Fatalf("user channel without bearer: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if e := enrollmentOf(t, l, ids.UDID); e.Platform != store.PlatformMac || e.Subject != "u-alice" || e.Mode != "adde" || e.State != store.StateActive {
		t.Errorf("enrollment: %+v", e)
	}
}

// An iPhone's device channel always carries the bearer: a bearer-less
// request, even one that claims to come from a Mac, is challenged.
func TestIPhoneNeverTurnsIntoAMac(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	p := enrollAndCheckIn(t, c, d)
	msg, err := d.AuthenticateMessage()
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(msg, []byte("iPhone17,2"), []byte("Mac14,2"), -1)
	resp, _, err := d.Send(c, p.ServerURL, forged, device.SendOptions{NoBearer: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bearer-less Mac Authenticate on an iPhone enrollment: %d", resp.StatusCode)
	}
}

func TestAnotherUserCannotSignInOnTheDevice(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	sb := &switchBrowser{b: &device.FormBrowser{Client: l.HTTPClient, Username: "alice", Password: lab.Password}}
	d := newDeviceWith(t, l, "iPhone", "iPhone16,1", "alice@example.com", "alice", func(c *device.Config) { c.Browser = sb })
	enrollAndCheckIn(t, c, d)
	if err := l.WithStore(func(m *token.Manager, _ store.Store) error {
		_, err := m.SetState(c, d.EnrollmentKey(), store.StateReauth, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Bob picks up Alice's phone and answers the sign-in prompt.
	sb.set(&device.FormBrowser{Client: l.HTTPClient, Username: "bob", Password: lab.Password})
	_, err := d.Poll(c, device.DeviceChannel)
	var se *device.SignInError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden || !strings.Contains(se.Snippet, "another user") {
		t.Fatalf("bob's sign-in on alice's device: %v", err)
	}
	// Alice signs in and the device continues.
	sb.set(&device.FormBrowser{Client: l.HTTPClient, Username: "alice", Password: lab.Password})
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatalf("alice after bob: %v", err)
	}
}

func TestStolenTokenRefusedOnAnotherEnrollment(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	alice := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, alice)
	bob := newDevice(t, l, "iPhone", "iPhone15,3", "bob@example.com", "bob")
	p := enrollAndCheckIn(t, c, bob)

	// Bob's device presents Alice's token.
	resp, _, err := bob.Send(c, p.ServerURL, idleBody(bob), device.SendOptions{Bearer: alice.Token()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Header.Values("WWW-Authenticate")) != 1 {
		t.Fatalf("stolen token: %d %q", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	// A new device enrolling with a stolen, still unbound token is refused
	// too once the owner's device used it: enroll a third device whose
	// Authenticate carries alice's token.
	eve := newDevice(t, l, "iPhone", "iPhone14,5", "alice@example.com", "alice")
	if _, err := eve.Enroll(c); err != nil {
		t.Fatal(err)
	}
	eve.SetToken(alice.Token())
	msg, err := eve.AuthenticateMessage()
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err = eve.Send(c, p.ServerURL, msg, device.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token of another enrollment on a new enrollment: %d", resp.StatusCode)
	}
	// Both owners keep working.
	if _, err := alice.Poll(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Poll(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if alice.Prompts()+bob.Prompts() != 0 {
		t.Fatalf("prompts: alice %d bob %d", alice.Prompts(), bob.Prompts())
	}
}

func TestOffboardingDeliversRemoveProfile(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	p := enrollAndCheckIn(t, c, d)
	// Alice leaves: her token is revoked and the enrollment is offboarded.
	if err := l.WithStore(func(m *token.Manager, s store.Store) error {
		if err := m.Revoke(c, token.HashOf(d.Token())); err != nil {
			return err
		}
		_, err := m.SetState(c, d.EnrollmentKey(), store.StateOffboarding, time.Now().Add(24*time.Hour))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	uuid, cmd := testenv.RemoveProfileCommand("com.example.mdm.enroll")
	if _, err := l.NanoMDM.Enqueue(d.EnrollmentKey(), cmd); err != nil {
		t.Fatal(err)
	}
	got, err := d.Poll(c, device.DeviceChannel)
	if err != nil {
		t.Fatalf("poll while offboarding: %v", err)
	}
	if got == nil || got.UUID != uuid || got.RequestType != "RemoveProfile" {
		t.Fatalf("got %+v, want RemoveProfile %s", got, uuid)
	}
	if _, err := d.Acknowledge(c, device.DeviceChannel, got); err != nil {
		t.Fatal(err)
	}
	if err := d.CheckOut(c); err != nil {
		t.Fatalf("CheckOut: %v", err)
	}
	if d.Prompts() != 0 {
		t.Fatalf("prompts = %d", d.Prompts())
	}
	// After CheckOut the enrollment is removed and its token stays refused.
	resp, _, err := d.Send(c, p.ServerURL, idleBody(d), device.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after CheckOut: %d", resp.StatusCode)
	}
	if e := enrollmentOf(t, l, d.EnrollmentKey()); e.State != store.StateRemoved {
		t.Errorf("state %s, want removed", e.State)
	}
}

// The gateway does not verify Mdm-Signature; NanoMDM does. A check-in it
// rejects must change nothing: here a forged Authenticate for another
// enrollment id, with a valid unbound token, must not bind that token.
func TestForgedCheckInChangesNoState(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	p, err := d.Enroll(c)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := d.AuthenticateMessage()
	if err != nil {
		t.Fatal(err)
	}
	forger, err := device.NewSelfSigned("forger")
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(msg, []byte(d.EnrollmentKey()), []byte("FORGED-ENROLLMENT-ID"), 1)
	if bytes.Equal(forged, msg) {
		t.Fatal("could not forge the body")
	}
	resp, _, err := d.Send(c, p.ServerURL, forged, device.SendOptions{Signer: forger})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode/100 == 2 {
		t.Fatalf("NanoMDM accepted a forged check-in: %d", resp.StatusCode)
	}
	// The real device now binds the same token without a prompt.
	if err := d.Authenticate(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if err := d.TokenUpdate(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if d.Prompts() != 0 {
		t.Fatalf("prompts = %d: the forged check-in bound the token", d.Prompts())
	}
	if err := l.WithStore(func(_ *token.Manager, s store.Store) error {
		if _, err := s.Enrollment(c, "FORGED-ENROLLMENT-ID"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("forged enrollment recorded: %v", err)
		}
		tok, err := s.Token(c, token.HashOf(d.Token()))
		if err != nil {
			return err
		}
		if tok.EnrollmentID != d.EnrollmentKey() {
			t.Errorf("token bound to %q", tok.EnrollmentID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A profile-based enrollment on the same NanoMDM keeps using the
// unprotected /mdm without a bearer, and is never sent a 401.
func TestProfileBasedDeviceUnprotected(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone13,2", "carol@example.com", "carol")
	if err := d.Install(&device.Profile{EnrollmentMode: device.ModeADDE, ServerURL: l.BaseURL + "/mdm", Topic: "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Authenticate(c, device.DeviceChannel); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if err := d.TokenUpdate(c, device.DeviceChannel); err != nil {
		t.Fatalf("TokenUpdate: %v", err)
	}
	uuid, cmd := testenv.DeviceInformationCommand("DeviceName")
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
	if d.Prompts() != 0 || d.Token() != "" {
		t.Fatalf("a profile-based device was challenged: prompts %d", d.Prompts())
	}
}

// An account-driven enrollment's device identity cannot reach NanoMDM on
// the unprotected /mdm, where no bearer is asked for: it would go around
// revocation, reauth and block. The refusal is a 403, never a 401.
func TestAccountDrivenIdentityRefusedOnUnprotectedPath(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	uuid, cmd := testenv.DeviceInformationCommand("DeviceName")
	if _, err := l.NanoMDM.Enqueue(d.EnrollmentKey(), cmd); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/mdm", "/MDM", "/mdm/"} {
		resp, body, err := d.Send(c, l.BaseURL+path, idleBody(d), device.SendOptions{NoBearer: true, ContentType: device.CommandContentType})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("WWW-Authenticate") != "" {
			t.Fatalf("%s: status %d %q: the device identity reached the MDM without a bearer", path, resp.StatusCode, body)
		}
		if bytes.Contains(body, []byte(uuid)) {
			t.Fatalf("%s: the queued command was delivered", path)
		}
	}
	// Its own, protected path still works: the command is there.
	polled, err := d.Poll(c, device.DeviceChannel)
	if err != nil {
		t.Fatal(err)
	}
	if polled == nil || polled.UUID != uuid {
		t.Fatalf("polled %+v on the protected path, want command %s", polled, uuid)
	}
	if d.Prompts() != 0 {
		t.Fatalf("prompts = %d", d.Prompts())
	}
	if !strings.Contains(l.Caddy.Logs(), `"event":"mdm.refused"`) {
		t.Error("no mdm.refused audit entry in Caddy's log")
	}
}

// Discovery refuses unknown domains and devices that cannot enroll
// account-driven, in the form the device shows.
func TestDiscoveryRefusals(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	for _, tc := range []struct{ family, product, id string }{
		{"iPhone", "iPhone17,2", "mallory@elsewhere.org"},
		{"Watch", "Watch7,1", "alice@example.com"},
	} {
		d := newDevice(t, l, tc.family, tc.product, tc.id, "alice")
		_, _, err := d.Discover(c)
		var re *device.RefusedError
		if !errors.As(err, &re) || re.Status != http.StatusForbidden || re.Code != "com.apple.well-known.failed" || re.Message == "" {
			t.Errorf("%s %s: %v", tc.family, tc.id, err)
		}
	}
}

// With the access log on, a full run leaves no token and no authorization
// code in any log.
func TestLogsHoldNoCredentials(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	first := d.Token()
	if err := l.WithStore(func(m *token.Manager, _ store.Store) error {
		_, err := m.SetState(c, d.EnrollmentKey(), store.StateReauth, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	access, err := os.ReadFile(l.AccessLog)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(access, []byte("/mdmauth/enroll/byod")) || !bytes.Contains(access, []byte("/mdm/ad")) {
		t.Fatalf("the access log does not record the run:\n%s", access)
	}
	logs := string(access) + l.Caddy.Logs()
	for name, secret := range map[string]string{"first token": first, "second token": d.Token()} {
		if strings.Contains(logs, secret) {
			t.Errorf("%s appears in the logs", name)
		}
	}
	for _, marker := range []string{"code=", "access-token=", "/mdmauth/oidc/callback", l.OIDC.ClientSecret} {
		if strings.Contains(logs, marker) {
			t.Errorf("logs contain %q", marker)
		}
	}
	if !strings.Contains(l.Caddy.Logs(), `"token issued"`) {
		t.Error("the audit log has no token-issued entry")
	}
	// The audit trail: stable event names, who and from where.
	for _, ev := range []string{"discovery.answered", "enrollment.challenged", "signin.started", "token.issued", "profile.served", "token.bound", "mdm.challenged"} {
		found := false
		for _, line := range strings.Split(l.Caddy.Logs(), "\n") {
			if strings.Contains(line, `"event":"`+ev+`"`) && strings.Contains(line, `"client_ip":"127.0.0.1"`) && strings.Contains(line, `"user_agent":"`) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no %s audit entry with client_ip and user_agent", ev)
		}
	}
}

// idleBodyUser is a user-channel command poll for a Mac.
func idleBodyUser(d *device.Device) []byte {
	ids := d.IDs()
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>UDID</key><string>` + ids.UDID + `</string><key>UserID</key><string>` + ids.UserID + `</string><key>Status</key><string>Idle</string></dict></plist>
`)
}

// Caddy's path matchers read /MDM/AD, /mdm//ad and /mdm/./ad as /mdm/ad: none
// of these spellings may reach NanoMDM without the bearer check.
func TestPathSpellingsCannotBypassTheCheck(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	for _, p := range []string{"/mdm/ad", "/MDM/AD", "/mdm//ad", "/mdm/./ad", "/mdm/x/../ad", "/Mdm/Ad/"} {
		resp, _, err := d.Send(c, l.BaseURL+p, idleBody(d), device.SendOptions{NoBearer: true})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a bearer: %d, want 401", p, resp.StatusCode)
		}
	}
}
