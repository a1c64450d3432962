package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/testenv"
	"github.com/mdmauth/mdmauth/internal/token"
)

func startOAuthLab(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	o.Handler = "\t\tsign_in oauth2\n" + o.Handler
	l, err := lab.Start(t, o)
	if err != nil {
		t.Fatalf("starting the lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy log:\n%s", tail(l.Caddy.Logs(), 80))
		}
	})
	return l
}

// expireAccessToken makes the device's current access token expire, as an
// access-token lifetime passing would.
func expireAccessToken(t *testing.T, l *lab.Lab, d *device.Device) {
	t.Helper()
	c := ctx(t)
	if err := l.WithStore(func(_ *token.Manager, s store.Store) error {
		_, err := s.UpdateToken(c, token.HashOf(d.Token()), func(tk *store.Token) error {
			tk.ExpiresAt = time.Now().Add(-time.Second)
			return nil
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestOAuth2EnrollAndSilentRefresh(t *testing.T) {
	l := startOAuthLab(t, lab.Options{})
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	if d.RefreshToken() == "" {
		t.Fatal("no refresh token after the OAuth 2 sign-in")
	}
	uuid, cmd := testenv.DeviceInformationCommand("DeviceName")
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)

	first := d.Token()
	expireAccessToken(t, l, d)
	uuid, cmd = testenv.ProfileListCommand()
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
	if d.Prompts() != 0 || d.Refreshes() != 1 || d.Token() == first {
		t.Fatalf("prompts %d refreshes %d (token changed: %v)", d.Prompts(), d.Refreshes(), d.Token() != first)
	}
}

type tokenAnswer struct {
	Status       int
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

// refreshRaw sends a refresh request exactly as a device does and returns
// the answer: the response a device could lose on a mobile network.
func refreshRaw(t *testing.T, l *lab.Lab, refresh string) tokenAnswer {
	t.Helper()
	body := "grant_type=refresh_token&refresh_token=" + refresh + "&client_id=mdmauth"
	req, err := http.NewRequest(http.MethodPost, l.BaseURL+"/mdmauth/oauth2/token", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "DeviceManagementClient/1.0")
	resp, err := l.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a tokenAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	a.Status = resp.StatusCode
	return a
}

// A refresh response lost on the way is retried with the same refresh
// token within the grace window: the device gets the same pair and carries
// on without a prompt.
func TestOAuth2LostRefreshResponseRetriedWithinGrace(t *testing.T) {
	l := startOAuthLab(t, lab.Options{})
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	lost := refreshRaw(t, l, d.RefreshToken()) // the device never sees this answer
	if lost.Status != http.StatusOK || lost.AccessToken == "" || lost.RefreshToken == d.RefreshToken() {
		t.Fatalf("first refresh: %+v", lost.Status)
	}
	expireAccessToken(t, l, d)
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatalf("poll after the lost refresh: %v", err)
	}
	if d.Prompts() != 0 || d.Refreshes() != 1 {
		t.Fatalf("prompts %d refreshes %d", d.Prompts(), d.Refreshes())
	}
	if d.Token() != lost.AccessToken || d.RefreshToken() != lost.RefreshToken {
		t.Fatal("the retry within the grace window did not get the same successor pair")
	}
}

// Presenting an already-rotated refresh token after the grace window kills
// the whole family: the device must sign in again.
func TestOAuth2RefreshReuseAfterGraceKillsTheFamily(t *testing.T) {
	l := startOAuthLab(t, lab.Options{Handler: "\t\toauth2 {\n\t\t\trefresh_grace 1s\n\t\t}\n"})
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	p := enrollAndCheckIn(t, c, d)
	stolen := refreshRaw(t, l, d.RefreshToken()) // e.g. a thief's refresh
	if stolen.Status != http.StatusOK {
		t.Fatalf("first refresh: %d %s", stolen.Status, stolen.Error)
	}
	time.Sleep(1500 * time.Millisecond) // past the grace window
	expireAccessToken(t, l, d)
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if d.Prompts() != 1 {
		t.Fatalf("prompts %d, want 1 (the family was killed, the user signs in again)", d.Prompts())
	}
	// Everything of the old family is dead.
	if a := refreshRaw(t, l, stolen.RefreshToken); a.Status != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Fatalf("the thief's refresh token: %d %q", a.Status, a.Error)
	}
	resp, _, err := d.Send(c, p.ServerURL, idleBody(d), device.SendOptions{Bearer: stolen.AccessToken})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the thief's access token: %d", resp.StatusCode)
	}
	if _, err := d.Poll(c, device.DeviceChannel); err != nil || d.Prompts() != 1 {
		t.Fatalf("the device after signing in again: %v, prompts %d", err, d.Prompts())
	}
}

// An operator's reauth cannot be answered by a silent refresh.
func TestOAuth2ReauthNeedsInteractiveSignIn(t *testing.T) {
	l := startOAuthLab(t, lab.Options{})
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	if err := l.WithStore(func(m *token.Manager, _ store.Store) error {
		_, err := m.SetState(c, d.EnrollmentKey(), store.StateReauth, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if d.Prompts() != 1 {
		t.Fatalf("prompts %d, want 1", d.Prompts())
	}
	if _, err := d.Poll(c, device.DeviceChannel); err != nil || d.Prompts() != 1 {
		t.Fatalf("after the sign-in: %v, prompts %d", err, d.Prompts())
	}
}

// With re-validation on, a user in good standing refreshes without a
// prompt; once the user is disabled at the identity provider, the next
// request after one access-token lifetime cuts the device off.
func TestOAuth2IdPRevalidationCutsOffADisabledUser(t *testing.T) {
	l := startOAuthLab(t, lab.Options{OIDC: "\t\t\trevalidate_on_refresh 1s\n"})
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	enrollAndCheckIn(t, c, d)
	time.Sleep(1100 * time.Millisecond) // the family's check is due
	expireAccessToken(t, l, d)
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if d.Prompts() != 0 || d.Refreshes() != 1 {
		t.Fatalf("in good standing: prompts %d refreshes %d", d.Prompts(), d.Refreshes())
	}
	if !strings.Contains(l.Caddy.Logs(), "identity provider re-validated the user") {
		t.Fatal("the refresh did not re-validate at the identity provider")
	}

	// Alice leaves: the provider no longer knows her.
	if err := l.OIDC.SetUsers(lab.DefaultUsers[1:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	expireAccessToken(t, l, d)
	_, err := d.Poll(c, device.DeviceChannel)
	var se *device.SignInError
	if !errors.As(err, &se) {
		t.Fatalf("a disabled user's device: %v (want the interactive sign-in to fail)", err)
	}
	if d.Prompts() != 1 {
		t.Fatalf("prompts %d", d.Prompts())
	}
	if e := enrollmentOf(t, l, d.EnrollmentKey()); e.State != store.StateReauth {
		t.Errorf("enrollment state %s, want reauth", e.State)
	}
	if !strings.Contains(l.Caddy.Logs(), "identity provider refused the user") {
		t.Error("no audit entry for the provider's refusal")
	}
}
