package e2e

import (
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
