package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/mdmauth/mdmauth/internal/profile"
)

// identity is a self-signed ECDSA certificate and its key.
type identity struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newIdentity creates a self-signed identity valid around the wall clock
// (profile.NewSigner checks validity against it).
func newIdentity(tb testing.TB, cn string) *identity {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &identity{cert: cert, key: key}
}

// signer returns a profile signer using the identity.
func (id *identity) signer(tb testing.TB) *profile.Signer {
	tb.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(id.key)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := profile.NewSigner(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// sign wraps content in CMS SignedData, as a device signs its first
// enrollment request.
func (id *identity) sign(tb testing.TB, content []byte) []byte {
	tb.Helper()
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		tb.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(id.cert, id.key, pkcs7.SignerInfoConfig{}); err != nil {
		tb.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// enrollPlist is the content of a first enrollment request from product.
func enrollPlist(product string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>LANGUAGE</key>
	<string>en-US</string>
	<key>PRODUCT</key>
	<string>` + product + `</string>
	<key>VERSION</key>
	<string>25A354</string>
</dict>
</plist>
`)
}
