package device

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Identity is a certificate and its private key: the device's built-in
// identity that signs the enrollment request, or its MDM identity (the one
// SCEP or ACME would issue) that signs Mdm-Signature.
type Identity struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// identityLifetime is how long generated certificates are valid.
const identityLifetime = 365 * 24 * time.Hour

// NewSelfSigned makes a throwaway self-signed identity (ECDSA P-256) with
// the given common name, standing in for the device's built-in identity
// that signs the enrollment POST body.
func NewSelfSigned(cn string) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := leafTemplate(cn)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: cert, Key: key}, nil
}

// NewCA makes a throwaway self-signed CA identity, for tests and demos that
// stand in for the SCEP CA.
func NewCA(cn string) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(identityLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: cert, Key: key}, nil
}

// NewIssued makes an MDM identity (ECDSA P-256, client-auth EKU) issued by
// ca, standing in for what SCEP would issue to the device. NanoMDM verifies
// Mdm-Signature certificates against its -ca with the client-auth usage.
func NewIssued(ca *Identity, cn string) (*Identity, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("device: NewIssued: nil CA identity")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := leafTemplate(cn)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("device: issuing identity: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: cert, Key: key}, nil
}

func leafTemplate(cn string) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(identityLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func (id *Identity) valid() error {
	if id == nil || id.Cert == nil || id.Key == nil {
		return errors.New("identity has no certificate or key")
	}
	return nil
}
