package device_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

func TestMDMRejectsDeviations(t *testing.T) {
	tests := []struct {
		name  string
		mac   bool
		mdm   func(s *devicetest.Server, w http.ResponseWriter, r *http.Request) bool
		run   func(t *testing.T, d *device.Device) error
		check func(t *testing.T, err error)
	}{
		{name: "401 without a challenge",
			mdm: func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) bool {
				w.WriteHeader(401)
				return true
			},
			check: deviationWith(`401 on Status Idle without a valid challenge: 401 without a WWW-Authenticate header`)},
		{name: "401 with a lower-case scheme",
			mdm: func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) bool {
				w.Header().Set("WWW-Authenticate", strings.Replace(s.Challenge(), "Bearer", "bearer", 1))
				w.WriteHeader(401)
				return true
			},
			check: deviationWith(`case-sensitively`)},
		{name: "401 on CheckOut",
			mdm: func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) bool {
				w.Header().Set("WWW-Authenticate", s.Challenge())
				w.WriteHeader(401)
				return true
			},
			run:   func(t *testing.T, d *device.Device) error { return d.CheckOut(testContext(t)) },
			check: deviationWith(`CheckOut answered 401`)},
		{name: "401 on a Mac device channel", mac: true,
			mdm: func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) bool {
				w.Header().Set("WWW-Authenticate", s.Challenge())
				w.WriteHeader(401)
				return true
			},
			check: deviationWith(`a Mac never sends the bearer token there`)},
		{name: "401 again after signing in",
			mdm: func(s *devicetest.Server, w http.ResponseWriter, _ *http.Request) bool {
				w.Header().Set("WWW-Authenticate", s.Challenge())
				w.WriteHeader(401)
				return true
			},
			check: func(t *testing.T, err error) {
				var he *device.HTTPError
				if !errors.As(err, &he) || he.Status != 401 || !strings.Contains(err.Error(), "401 again after a new sign-in") {
					t.Fatalf("error = %v", err)
				}
			}},
		{name: "500",
			mdm: func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) bool {
				http.Error(w, "boom", 500)
				return true
			},
			check: httpStatus(500)},
		{name: "malformed command",
			mdm: func(_ *devicetest.Server, w http.ResponseWriter, _ *http.Request) bool {
				io.WriteString(w, `<?xml version="1.0"?><plist version="1.0"><dict><key>CommandUUID</key><string>x</string></dict></plist>`)
				return true
			},
			check: deviationWith(`command without CommandUUID or Command.RequestType`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var armed atomic.Bool
			var srv *devicetest.Server
			srv = devicetest.New(devicetest.Options{MacDevice: tc.mac, Hook: func(stage string, w http.ResponseWriter, r *http.Request) bool {
				return stage == devicetest.StageMDM && armed.Load() && tc.mdm(srv, w, r)
			}})
			defer srv.Close()
			d, _ := newDevice(t, srv, func(c *device.Config) {
				if tc.mac {
					c.Family, c.Product = "Mac", "Mac14,2"
				}
			})
			if _, err := d.Enroll(testContext(t)); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			run := tc.run
			if run == nil {
				run = func(t *testing.T, d *device.Device) error {
					_, err := d.Poll(testContext(t), device.DeviceChannel)
					return err
				}
			}
			err := run(t, d)
			if err == nil {
				t.Fatal("no error")
			}
			tc.check(t, err)
		})
	}
}

func TestNotEnrolled(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	if err := d.Authenticate(testContext(t), device.DeviceChannel); err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Errorf("Authenticate before enrolling = %v", err)
	}
	if _, err := d.Poll(testContext(t), device.UserChannel); err == nil {
		t.Error("Poll on an iPhone user channel succeeded")
	}
}
