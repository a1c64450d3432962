package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// essoTestdata is the esso package's fixtures: SSO profiles and
// declarations.
const essoTestdata = "../internal/esso/testdata"

// signingIdentity is a self-signed profile signing certificate and its
// key, written as PEM files.
type signingIdentity struct {
	cert     *x509.Certificate
	certFile string
	keyFile  string
}

// writeSigningIdentity creates a signing identity valid from notBefore to
// notAfter and writes name.pem and name.key into dir.
func writeSigningIdentity(t *testing.T, dir, name string, notBefore, notAfter time.Time) *signingIdentity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "Profile Signing " + name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	id := &signingIdentity{cert: cert, certFile: filepath.Join(dir, name+".pem"), keyFile: filepath.Join(dir, name+".key")}
	if err := os.WriteFile(id.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(id.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}

// currentSigningIdentity is a signing identity valid now.
func currentSigningIdentity(t *testing.T, dir, name string) *signingIdentity {
	t.Helper()
	now := time.Now()
	return writeSigningIdentity(t, dir, name, now.Add(-time.Hour), now.Add(24*time.Hour))
}

// writeKioskProfile writes the example enrollment profile pointed at
// /mdm/kiosk into dir, so that a served profile tells its template.
func writeKioskProfile(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(exampleProfile)
	if err != nil {
		t.Fatal(err)
	}
	const from, to = "https://mdm.example.com/mdm/ad", "https://mdm.example.com/mdm/kiosk"
	out := strings.ReplaceAll(string(data), from, to)
	if out == string(data) {
		t.Fatalf("%s has no %s", exampleProfile, from)
	}
	path := filepath.Join(dir, "kiosk.mobileconfig")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
