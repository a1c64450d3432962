package device_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

func TestPreparedRequestsReachTheServerAsSent(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	if _, err := d.Enroll(testContext(t)); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	idle, err := d.PrepareIdle(device.DeviceChannel)
	if err != nil {
		t.Fatal(err)
	}
	result, err := d.PrepareReport(device.DeviceChannel, "5A0C4D2E-0000-4000-8000-000000000001", "Acknowledged")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []*device.Prepared{idle, idle, result} { // a prepared request is sent many times
		req, err := p.Request(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	got := srv.MDMRequests()
	if len(got) != 3 {
		t.Fatalf("server saw %d MDM requests, want 3", len(got))
	}
	for i, want := range []string{"Status Idle", "Status Idle", "Status Acknowledged"} {
		r := got[i]
		if r.Kind != want || r.Signer == nil || !r.TokenValid || r.ContentType != device.CommandContentType ||
			r.ChannelID != d.EnrollmentKey() {
			t.Errorf("request %d = %+v, want %s signed with a valid bearer on %s", i, r, want, d.EnrollmentKey())
		}
	}
	if got[2].Message["CommandUUID"] != "5A0C4D2E-0000-4000-8000-000000000001" {
		t.Errorf("CommandUUID = %v", got[2].Message["CommandUUID"])
	}
}

func TestPreparedWireForm(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	if _, err := d.Enroll(testContext(t)); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	p, err := d.PrepareIdle(device.DeviceChannel)
	if err != nil {
		t.Fatal(err)
	}
	wire := p.AppendWire([]byte("previous"))
	if !bytes.HasPrefix(wire, []byte("previousPUT ")) {
		t.Fatalf("AppendWire did not append: %q", wire[:20])
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire[len("previous"):])))
	if err != nil {
		t.Fatalf("wire form does not parse: %v", err)
	}
	body, _ := io.ReadAll(req.Body)
	switch {
	case req.Method != http.MethodPut, req.RequestURI != p.URL.RequestURI(), req.Host != p.URL.Host,
		req.ProtoMinor != 1, req.Close:
		t.Errorf("request line/host: %s %s %s host %s close %v", req.Method, req.RequestURI, req.Proto, req.Host, req.Close)
	case !bytes.Equal(body, p.Body), req.ContentLength != int64(len(p.Body)):
		t.Errorf("body %q (length %d), want %q", body, req.ContentLength, p.Body)
	case req.Header.Get("Authorization") != "Bearer "+d.Token(), req.Header.Get("Mdm-Signature") != p.Header.Get("Mdm-Signature"),
		req.Header.Get("User-Agent") != "MDM/1.0", req.Header.Get("Content-Type") != device.CommandContentType:
		t.Errorf("headers %v", req.Header)
	}
	if !strings.Contains(string(body), "<string>Idle</string>") {
		t.Errorf("body is not an Idle report: %s", body)
	}
}

func TestPrepareNeedsAnEnrollment(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	if _, err := d.PrepareIdle(device.DeviceChannel); err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Errorf("PrepareIdle before enrolling = %v", err)
	}
	if _, err := d.PrepareReport(device.DeviceChannel, "", "Acknowledged"); err == nil {
		t.Error("PrepareReport without a CommandUUID succeeded")
	}
}
