package device_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

// fixture holds identities shared by the tests (key generation is the slow part).
var fixture struct {
	once     sync.Once
	ca       *device.Identity
	identity *device.Identity
	builtIn  *device.Identity
	err      error
}

func identities(t *testing.T) (ca, mdmID, builtIn *device.Identity) {
	t.Helper()
	fixture.once.Do(func() {
		if fixture.ca, fixture.err = device.NewCA("Test MDM CA"); fixture.err != nil {
			return
		}
		if fixture.identity, fixture.err = device.NewIssued(fixture.ca, "test device"); fixture.err != nil {
			return
		}
		fixture.builtIn, fixture.err = device.NewSelfSigned("test built-in")
	})
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
	return fixture.ca, fixture.identity, fixture.builtIn
}

// newDevice returns an iPhone (or what edit makes of it) pointed at srv,
// signing in as alice/secret.
func newDevice(t *testing.T, srv *devicetest.Server, edit func(*device.Config)) (*device.Device, *[]string) {
	t.Helper()
	_, id, builtIn := identities(t)
	var mu sync.Mutex
	var logs []string
	cfg := device.Config{
		Family:         "iPhone",
		Product:        "iPhone17,2",
		OSVersion:      "23A300",
		Language:       "en-US",
		UserIdentifier: "alice@example.com",
		DiscoveryBase:  srv.URL,
		HTTPClient:     srv.Client(),
		BuiltIn:        builtIn,
		Identity:       id,
		Browser:        &device.FormBrowser{Client: srv.Client(), Username: "alice", Password: "secret"},
		Log: func(step, msg string) {
			mu.Lock()
			logs = append(logs, step+": "+msg)
			mu.Unlock()
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	d, err := device.New(cfg)
	if err != nil {
		t.Fatalf("device.New: %v", err)
	}
	return d, &logs
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantDeviation fails unless err is a *device.ProtocolError whose message
// contains want.
func wantDeviation(t *testing.T, err error, want string) {
	t.Helper()
	var pe *device.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v (%T), want a *device.ProtocolError containing %q", err, err, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %q, want it to contain %q", err, want)
	}
}
