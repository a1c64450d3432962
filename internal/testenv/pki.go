package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity of the certificates the test CA issues. The back-dating absorbs clock skew.
const (
	certBackdate = time.Hour
	caValidity   = 10 * 24 * time.Hour
	leafValidity = 7 * 24 * time.Hour
)

// CA is a throw-away certificate authority (ECDSA P-256).
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// Leaf is a certificate issued by a CA, with its private key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte // PKCS #8
}

// NewCA returns a new self-signed CA called cn.
func NewCA(cn string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testenv: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"mdmauth test"}},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testenv: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testenv: CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der)}, nil
}

// Pool returns a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueServer issues a TLS server certificate for hosts: IP addresses become IP SANs, anything
// else a DNS SAN. Without hosts it covers 127.0.0.1, ::1 and localhost.
func (ca *CA) IssueServer(hosts ...string) (*Leaf, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl)
}

// IssueClient issues a client-authentication certificate with common name cn, such as a
// device's MDM identity.
func (ca *CA) IssueClient(cn string) (*Leaf, error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// issue fills in serial, validity and key and signs tmpl.
func (ca *CA) issue(tmpl *x509.Certificate) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testenv: key: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = newSerial()
	tmpl.NotBefore = now.Add(-certBackdate)
	tmpl.NotAfter = now.Add(leafValidity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("testenv: issuing %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testenv: issuing %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testenv: key: %w", err)
	}
	return &Leaf{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: pemBlock("PRIVATE KEY", keyDER)}, nil
}

// TLSCertificate returns the leaf as a tls.Certificate (leaf only, no chain).
func (l *Leaf) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
}

// WritePEM writes the CA certificate to dir/<name>.pem and returns the path.
func (ca *CA) WritePEM(dir, name string) (string, error) {
	p := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(p, ca.CertPEM, 0o644); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	return p, nil
}

// WritePEM writes the certificate to dir/<name>.crt and the key to dir/<name>.key (mode 0600)
// and returns both paths.
func (l *Leaf) WritePEM(dir, name string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, name+".crt")
	keyPath = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, l.CertPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("testenv: %w", err)
	}
	if err := os.WriteFile(keyPath, l.KeyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("testenv: %w", err)
	}
	return certPath, keyPath, nil
}

// WriteBundle writes the PEM certificates of cas, in order, to dir/<name>.pem and returns the
// path; NanoMDM's -ca flag and Caddy's trusted_ca_cert_file take such a bundle.
func WriteBundle(dir, name string, cas ...*CA) (string, error) {
	var b []byte
	for _, ca := range cas {
		b = append(b, ca.CertPEM...)
	}
	p := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	return p, nil
}

// newSerial returns a random 128-bit serial number.
func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// pemBlock encodes der as a PEM block of type typ.
func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// LoopbackTLS is a new CA and a server certificate it issued for 127.0.0.1
// and localhost, written to dir as ca.pem, server.pem and server-key.pem
// (WritePEM's names): what a loopback deployment serves.
type LoopbackTLS struct {
	CA                        *CA
	CAPath, CertPath, KeyPath string
}

// NewLoopbackTLS creates a LoopbackTLS whose CA is named cn.
func NewLoopbackTLS(dir, cn string) (*LoopbackTLS, error) {
	ca, err := NewCA(cn)
	if err != nil {
		return nil, err
	}
	t := &LoopbackTLS{CA: ca}
	if t.CAPath, err = ca.WritePEM(dir, "ca"); err != nil {
		return nil, err
	}
	srv, err := ca.IssueServer("127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	if t.CertPath, t.KeyPath, err = srv.WritePEM(dir, "server"); err != nil {
		return nil, err
	}
	return t, nil
}
