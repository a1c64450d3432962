package testenv

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
)

// readCerts parses every certificate in a PEM file.
func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return certs
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
}

// writeFile writes s to path.
func writeFile(path, s string) error {
	return os.WriteFile(path, []byte(s), 0o600)
}
