package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"slices"
	"testing"
)

func TestServerCertificateVerifies(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		hosts   []string
		verify  string
		wantErr bool
	}{
		{"default IPv4", nil, "127.0.0.1", false},
		{"default IPv6", nil, "::1", false},
		{"default localhost", nil, "localhost", false},
		{"explicit DNS", []string{"mdm.example.test"}, "mdm.example.test", false},
		{"other host refused", []string{"mdm.example.test"}, "127.0.0.1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := ca.IssueServer(tc.hosts...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = leaf.Cert.Verify(x509.VerifyOptions{
				DNSName:   tc.verify,
				Roots:     ca.Pool(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Verify(%s) error = %v, want error %v", tc.verify, err, tc.wantErr)
			}
		})
	}
}

func TestServerCertificateRejectedByOtherCA(t *testing.T) {
	ca, err := NewCA("right")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: other.Pool()}); err == nil {
		t.Fatal("certificate verified against a foreign CA")
	}
}

func TestClientCertificate(t *testing.T) {
	ca, err := NewCA("device CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueClient("device-1")
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Cert.Subject.CommonName != "device-1" {
		t.Errorf("CN = %q", leaf.Cert.Subject.CommonName)
	}
	if !slices.Equal(leaf.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want client auth only", leaf.Cert.ExtKeyUsage)
	}
	if leaf.Cert.IsCA {
		t.Error("leaf is a CA")
	}
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Cert.Verify(opts); err != nil {
		t.Errorf("client verify: %v", err)
	}
	opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if _, err := leaf.Cert.Verify(opts); err == nil {
		t.Error("client certificate verified for server auth")
	}
}

func TestWritePEMRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("round trip")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := leaf.WritePEM(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "server.crt") || keyPath != filepath.Join(dir, "server.key") {
		t.Errorf("paths = %s, %s", certPath, keyPath)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	if !pair.Leaf.Equal(leaf.Cert) {
		t.Error("loaded certificate differs")
	}

	caPath, err := ca.WritePEM(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("second")
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := WriteBundle(dir, "bundle", ca, other)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want int
	}{{caPath, 1}, {bundle, 2}} {
		certs := readCerts(t, tc.path)
		if len(certs) != tc.want {
			t.Fatalf("%s: %d certificates, want %d", tc.path, len(certs), tc.want)
		}
		if !certs[0].Equal(ca.Cert) {
			t.Errorf("%s: first certificate is not the CA", tc.path)
		}
	}

	// The pair serves TLS that a client trusting only the CA accepts.
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	conn.Close()
}
