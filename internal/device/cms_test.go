package device_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

func TestEnrollmentRequestIsSignedPlist(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	_, _, builtIn := identities(t)
	d, _ := newDevice(t, srv, func(c *device.Config) { c.Language, c.Product, c.OSVersion = "de-CH", "iPad16,3", "23A341" })
	der, err := d.EnrollmentRequest()
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatalf("pkcs7.Parse: %v", err)
	}
	if err := p7.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !p7.GetOnlySigner().Equal(builtIn.Cert) {
		t.Error("signer is not the built-in identity")
	}
	var content map[string]any
	if err := plist.NewXMLDecoder(bytes.NewReader(p7.Content)).Decode(&content); err != nil {
		t.Fatalf("content is not an XML plist: %v", err)
	}
	want := map[string]any{"LANGUAGE": "de-CH", "PRODUCT": "iPad16,3", "VERSION": "23A341"}
	if len(content) != len(want) {
		t.Errorf("content = %v, want %v", content, want)
	}
	for k, v := range want {
		if content[k] != v {
			t.Errorf("%s = %v, want %v", k, content[k], v)
		}
	}
}

func TestMdmSignatureIsDetachedCMS(t *testing.T) {
	var sig string
	var body []byte
	srv := devicetest.New(devicetest.Options{Hook: func(stage string, w http.ResponseWriter, r *http.Request) bool {
		if stage != devicetest.StageMDM {
			return false
		}
		sig = r.Header.Get("Mdm-Signature")
		body = make([]byte, r.ContentLength)
		r.Body.Read(body)
		return true
	}})
	defer srv.Close()
	_, mdmID, _ := identities(t)
	d, _ := newDevice(t, srv, nil)
	if _, err := d.Enroll(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := d.Authenticate(testContext(t), device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		t.Fatalf("Mdm-Signature is not standard base64: %v", err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Content) != 0 {
		t.Error("signature is not detached")
	}
	p7.Content = body
	if err := p7.Verify(); err != nil {
		t.Fatalf("signature does not verify over the body: %v", err)
	}
	if !p7.GetOnlySigner().Equal(mdmID.Cert) {
		t.Error("signer is not the MDM identity")
	}
	p7.Content = append(body, ' ')
	if err := p7.Verify(); err == nil {
		t.Error("signature verifies over a changed body")
	}
}
