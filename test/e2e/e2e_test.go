// Package e2e runs mdmauth end to end with real processes: Caddy built from
// this repository, NanoMDM v0.9.0, a real OpenID provider with a login form,
// Badger on disk, and the device emulator.
package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/testenv"
	"github.com/mdmauth/mdmauth/internal/token"
)

func startLab(t *testing.T) *lab.Lab {
	t.Helper()
	l, err := lab.Start(t, lab.Options{})
	if err != nil {
		t.Fatalf("starting the lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy log:\n%s", tail(l.Caddy.Logs(), 60))
			t.Logf("nanomdm log:\n%s", tail(l.NanoMDM.Logs(), 30))
		}
	})
	return l
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// enrollmentOf reads an enrollment from the lab's store (Caddy is stopped
// meanwhile: Badger locks its directory).
func enrollmentOf(t *testing.T, l *lab.Lab, id string) *store.Enrollment {
	t.Helper()
	var e *store.Enrollment
	if err := l.WithStore(func(_ *token.Manager, s store.Store) error {
		var err error
		e, err = s.Enrollment(context.Background(), id)
		return err
	}); err != nil {
		t.Fatalf("enrollment %s: %v", id, err)
	}
	return e
}

func newDevice(t *testing.T, l *lab.Lab, family, product, identifier, username string) *device.Device {
	t.Helper()
	d, err := l.NewDevice(family, product, identifier, username, func(step, msg string) { t.Logf("[%s] %s: %s", identifier, step, msg) })
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newDeviceWith is newDevice with the lab's configuration adjusted by edit.
func newDeviceWith(t *testing.T, l *lab.Lab, family, product, identifier, username string, edit func(*device.Config)) *device.Device {
	t.Helper()
	cfg, err := l.DeviceConfig(family, product, identifier, username)
	if err != nil {
		t.Fatal(err)
	}
	edit(&cfg)
	d, err := device.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// enrollAndCheckIn enrolls d and sends Authenticate and TokenUpdate on the
// device channel.
func enrollAndCheckIn(t *testing.T, c context.Context, d *device.Device) *device.Profile {
	t.Helper()
	p, err := d.Enroll(c)
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if err := d.Authenticate(c, device.DeviceChannel); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if err := d.TokenUpdate(c, device.DeviceChannel); err != nil {
		t.Fatalf("TokenUpdate: %v", err)
	}
	return p
}

// runCommand enqueues a command at NanoMDM, polls it through the gateway and
// acknowledges it.
func runCommand(t *testing.T, c context.Context, l *lab.Lab, d *device.Device, ch device.Channel, id string, cmd []byte, wantUUID string) {
	t.Helper()
	got, err := l.NanoMDM.Enqueue(id, cmd)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if got != wantUUID {
		t.Fatalf("enqueued %s, want %s", got, wantUUID)
	}
	polled, err := d.Poll(c, ch)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	if polled == nil || polled.UUID != wantUUID {
		t.Fatalf("polled %+v, want command %s", polled, wantUUID)
	}
	next, err := d.Acknowledge(c, ch, polled)
	if err != nil {
		t.Fatalf("acknowledge: %v", err)
	}
	if next != nil {
		t.Fatalf("unexpected next command %s", next.UUID)
	}
}

func TestBYODiPhoneEnrollCommandAndReauth(t *testing.T) {
	l := startLab(t)
	c := ctx(t)
	d := newDevice(t, l, "iPhone", "iPhone17,2", "alice@example.com", "alice")
	p := enrollAndCheckIn(t, c, d)
	if p.EnrollmentMode != "BYOD" || p.AssignedManagedAppleID != "alice@example.com" {
		t.Fatalf("profile mode %q, Managed Apple ID %q", p.EnrollmentMode, p.AssignedManagedAppleID)
	}
	if d.IDs().EnrollmentID == "" || d.IDs().UDID != "" {
		t.Fatalf("user enrollment ids: %+v", d.IDs())
	}
	uuid, cmd := testenv.DeviceInformationCommand("DeviceName")
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
	if d.Prompts() != 0 {
		t.Fatalf("prompts = %d before reauth", d.Prompts())
	}

	// The operator forces a new sign-in.
	oldToken := d.Token()
	if err := l.WithStore(func(m *token.Manager, s store.Store) error {
		e, err := s.Enrollment(c, d.EnrollmentKey())
		if err != nil {
			return err
		}
		if e.State != store.StateActive || e.Subject != "u-alice" || e.ManagedAppleID != "alice@example.com" || e.Mode != "byod" {
			t.Errorf("enrollment after binding: %+v", e)
		}
		_, err = m.SetState(c, d.EnrollmentKey(), store.StateReauth, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Next request: 401 + challenge, the same user signs in, the retry passes.
	uuid, cmd = testenv.ProfileListCommand()
	runCommand(t, c, l, d, device.DeviceChannel, d.EnrollmentKey(), cmd, uuid)
	if d.Prompts() != 1 {
		t.Fatalf("prompts = %d, want 1", d.Prompts())
	}
	if d.Token() == oldToken {
		t.Fatal("token unchanged after re-authentication")
	}
	// The old token stays dead.
	newToken := d.Token()
	d.SetToken(oldToken)
	resp, _, err := d.Send(c, p.ServerURL, idleBody(d), device.SendOptions{Bearer: oldToken})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || len(resp.Header.Values("WWW-Authenticate")) != 1 {
		t.Fatalf("old token: status %d, challenges %q", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	d.SetToken(newToken)
	if _, err := d.Poll(c, device.DeviceChannel); err != nil {
		t.Fatalf("poll with the new token: %v", err)
	}
	if d.Prompts() != 1 {
		t.Fatalf("prompts = %d after the new token, want 1", d.Prompts())
	}
}

// idleBody is a command-poll body naming d's enrollment.
func idleBody(d *device.Device) []byte {
	ids := d.IDs()
	key, val := "EnrollmentID", ids.EnrollmentID
	if val == "" {
		key, val = "UDID", ids.UDID
	}
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict><key>` + key + `</key><string>` + val + `</string><key>Status</key><string>Idle</string></dict></plist>
`)
}
