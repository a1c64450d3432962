package apple

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

const enrollPlist = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>LANGUAGE</key>
	<string>en-US</string>
	<key>PRODUCT</key>
	<string>iPhone17,2</string>
	<key>VERSION</key>
	<string>23B85</string>
</dict>
</plist>
`

// newSignedData prepares CMS SignedData over content, signed by a fresh
// self-signed device identity.
func newSignedData(t testing.TB, content []byte) *pkcs7.SignedData {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Device Identity"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	return sd
}

// signEnrollBody returns DER CMS SignedData with content attached.
func signEnrollBody(t testing.TB, content []byte) []byte {
	t.Helper()
	body, err := newSignedData(t, content).Finish()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// detachedEnrollBody returns DER CMS SignedData without the content.
func detachedEnrollBody(t testing.TB, content []byte) []byte {
	t.Helper()
	sd := newSignedData(t, content)
	sd.Detach()
	body, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestDecodeEnrollBody(t *testing.T) {
	want := EnrollInfo{Language: "en-US", Product: "iPhone17,2", Version: "23B85"}

	t.Run("CMS SignedData", func(t *testing.T) {
		got, err := DecodeEnrollBody(signEnrollBody(t, []byte(enrollPlist)))
		if err != nil {
			t.Fatal(err)
		}
		w := want
		w.Signed = true
		if got != w {
			t.Errorf("DecodeEnrollBody = %+v, want %+v", got, w)
		}
	})
	t.Run("bare plist", func(t *testing.T) {
		got, err := DecodeEnrollBody([]byte(enrollPlist))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("DecodeEnrollBody = %+v, want %+v", got, want)
		}
	})
	t.Run("committed fixture", func(t *testing.T) {
		got, err := DecodeEnrollBody(readTestdata(t, "enroll/iphone-signed.der"))
		if err != nil {
			t.Fatal(err)
		}
		w := want
		w.Signed = true
		if got != w {
			t.Errorf("DecodeEnrollBody = %+v, want %+v", got, w)
		}
	})
	t.Run("missing and non-string keys", func(t *testing.T) {
		body := `<plist><dict><key>PRODUCT</key><integer>3</integer><key>VERSION</key><string>22A</string><key>UDID</key><string>x</string></dict></plist>`
		got, err := DecodeEnrollBody(signEnrollBody(t, []byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		if w := (EnrollInfo{Version: "22A", Signed: true}); got != w {
			t.Errorf("DecodeEnrollBody = %+v, want %+v", got, w)
		}
	})
}

func TestDecodeEnrollBodyRefuses(t *testing.T) {
	deep := "<plist>" + strings.Repeat("<array>", 1000) + strings.Repeat("</array>", 1000) + "</plist>"
	signed := signEnrollBody(t, []byte(enrollPlist))
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"form body", []byte("LANGUAGE=en-US&PRODUCT=iPhone17,2")},
		{"JSON", []byte(`{"LANGUAGE":"en-US"}`)},
		{"binary plist", readTestdata(t, "malformed/binary.plist")},
		{"truncated CMS", signed[:len(signed)/2]},
		{"garbage DER", []byte{0x30, 0x03, 0x02, 0x01, 0x01}},
		{"CMS holding JSON", signEnrollBody(t, []byte(`{"LANGUAGE":"en-US"}`))},
		{"CMS holding an array plist", signEnrollBody(t, []byte(`<plist><array/></plist>`))},
		{"detached CMS", detachedEnrollBody(t, []byte(enrollPlist))},
		{"truncated plist", []byte(enrollPlist[:100])},
		{"deep nesting", []byte(deep)},
		{"unbalanced end tags", []byte(strings.Repeat("</array>", 100) + deep)},
		{"too large", append([]byte("<plist><dict>"), make([]byte, maxEnrollBody)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := DecodeEnrollBody(tt.body); err == nil {
				t.Errorf("DecodeEnrollBody = %+v, want error", got)
			}
		})
	}
}

func TestCheckNesting(t *testing.T) {
	tests := []struct {
		doc string
		ok  bool
	}{
		{enrollPlist, true},
		{strings.Repeat("<a>", 32) + strings.Repeat("</a>", 32), true},
		{strings.Repeat("<a>", 33), false},
		{strings.Repeat("<a/>", 100), true},
		{strings.Repeat(`<a x="/>">`, 33), false},
		{strings.Repeat(`<!-- <a> -->`, 100), true},
		{strings.Repeat(`<![CDATA[<a>]]>`, 100), true},
		{"</a>" + strings.Repeat("<a>", 33), false},
	}
	for _, tt := range tests {
		if err := checkNesting([]byte(tt.doc), 32); (err == nil) != tt.ok {
			t.Errorf("checkNesting(%.40q) = %v, want ok=%v", tt.doc, err, tt.ok)
		}
	}
}
