package profile

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// testPKI is a root CA and an intermediate CA that issues signing certificates.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	roots             *x509.CertPool
}

var (
	serial atomic.Int64

	// RSA key generation is slow (more so under -race); the tests share these keys.
	rsaKey      = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaKeyAlt   = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaKeySmall = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func newECKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	now := time.Now()
	p := &testPKI{rootKey: newECKey(t, elliptic.P256()), interKey: newECKey(t, elliptic.P384())}
	p.root = createCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Test Root CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, p.rootKey.Public(), p.rootKey)
	p.inter = createCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Test Intermediate CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, p.root, p.interKey.Public(), p.rootKey)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.root)
	return p
}

// leaf issues a signing certificate for pub from the intermediate, valid from an hour ago for a
// day unless edit changes the template.
func (p *testPKI) leaf(t testing.TB, pub crypto.PublicKey, edit func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "Profile Signing"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if edit != nil {
		edit(tmpl)
	}
	return createCert(t, tmpl, p.inter, pub, p.interKey)
}

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func certsPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// Private key encodings.
func pkcs8PEM(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func pkcs1PEM(key *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

func sec1PEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func renderFixture(t testing.TB, appleID string) []byte {
	t.Helper()
	tpl := mustParse(t, readFixture(t, "enroll.mobileconfig"))
	out, err := tpl.Render(Params{Mode: ModeBYOD, ManagedAppleID: appleID})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustSigner(t testing.TB, certPEM, keyPEM []byte) *Signer {
	t.Helper()
	s, err := NewSigner(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

// verifySigned parses signed, checks it carries plist signed with SHA-256 by the holder of
// want, and verifies want's chain to roots using only the certificates in the message. It
// returns the message's certificates.
func verifySigned(signed, plist []byte, want *x509.Certificate, roots *x509.CertPool) ([]*x509.Certificate, error) {
	p7, err := pkcs7.Parse(signed)
	if err != nil {
		return nil, fmt.Errorf("pkcs7.Parse: %v", err)
	}
	if !bytes.Equal(p7.Content, plist) {
		return nil, fmt.Errorf("content is %d bytes that differ from the %d byte plist", len(p7.Content), len(plist))
	}
	if err := p7.Verify(); err != nil {
		return nil, fmt.Errorf("Verify: %v", err)
	}
	if err := p7.VerifyWithChain(roots); err != nil {
		return nil, fmt.Errorf("VerifyWithChain: %v", err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("%d signers, want 1", len(p7.Signers))
	}
	if alg := p7.Signers[0].DigestAlgorithm.Algorithm; !alg.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
		return nil, fmt.Errorf("digest algorithm %v, want SHA-256 (%v)", alg, pkcs7.OIDDigestAlgorithmSHA256)
	}
	signer := p7.GetOnlySigner()
	if signer == nil || !signer.Equal(want) {
		return nil, fmt.Errorf("signer certificate is not the signing certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range p7.Certificates {
		if !c.Equal(signer) {
			inter.AddCert(c)
		}
	}
	chains, err := signer.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("chain verification: %v", err)
	}
	if len(chains) == 0 {
		return nil, errors.New("no verified chain")
	}
	return p7.Certificates, nil
}

func TestSignerSignAndVerify(t *testing.T) {
	pki := newTestPKI(t)
	ec256, ec384, ec521 := newECKey(t, elliptic.P256()), newECKey(t, elliptic.P384()), newECKey(t, elliptic.P521())
	tests := []struct {
		name   string
		key    crypto.Signer
		keyPEM func(t testing.TB) []byte
	}{
		{"ECDSA P-256 SEC 1", ec256, func(t testing.TB) []byte { return sec1PEM(t, ec256) }},
		{"ECDSA P-384 PKCS 8", ec384, func(t testing.TB) []byte { return pkcs8PEM(t, ec384) }},
		{"ECDSA P-521 SEC 1", ec521, func(t testing.TB) []byte { return sec1PEM(t, ec521) }},
		{"RSA PKCS 1", rsaKey(), func(testing.TB) []byte { return pkcs1PEM(rsaKey()) }},
		{"RSA PKCS 8", rsaKeyAlt(), func(t testing.TB) []byte { return pkcs8PEM(t, rsaKeyAlt()) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := pki.leaf(t, tc.key.Public(), nil)
			s := mustSigner(t, certsPEM(leaf, pki.inter), tc.keyPEM(t))
			if !s.Leaf().Equal(leaf) {
				t.Errorf("Leaf() = %s, want the signing certificate", s.Leaf().Subject)
			}
			plist := renderFixture(t, "alice@example.org")
			signed, err := s.Sign(plist)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			certs, err := verifySigned(signed, plist, leaf, pki.roots)
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 2 || !certs[0].Equal(leaf) || !certs[1].Equal(pki.inter) {
				t.Errorf("certificates in the message: %d, want the leaf then the intermediate", len(certs))
			}

			// The content is the rendered profile, ready for the device.
			p7, _ := pkcs7.Parse(signed)
			mdm := payloads(t, decodeProfile(t, p7.Content))[idxMDM]
			if mdm["AssignedManagedAppleID"] != "alice@example.org" || mdm["EnrollmentMode"] != "BYOD" {
				t.Errorf("signed content mdm payload = %v", mdm)
			}
		})
	}
}

func TestSignerChainVariants(t *testing.T) {
	pki := newTestPKI(t)
	key := newECKey(t, elliptic.P256())
	keyPEM := sec1PEM(t, key)
	interLeaf := pki.leaf(t, key.Public(), nil)
	rootLeaf := createCert(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "Issued by the root"},
		NotBefore: time.Now().Add(-time.Hour),
		NotAfter:  time.Now().Add(time.Hour),
	}, pki.root, key.Public(), pki.rootKey)

	tests := []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"leaf, intermediate and root", []*x509.Certificate{interLeaf, pki.inter, pki.root}},
		{"leaf issued by the root, alone", []*x509.Certificate{rootLeaf}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSigner(t, certsPEM(tc.chain...), keyPEM)
			plist := renderFixture(t, "bob@example.org")
			signed, err := s.Sign(plist)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			certs, err := verifySigned(signed, plist, tc.chain[0], pki.roots)
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != len(tc.chain) {
				t.Fatalf("%d certificates in the message, want %d", len(certs), len(tc.chain))
			}
			for i := range certs {
				if !certs[i].Equal(tc.chain[i]) {
					t.Errorf("certificate %d is %s, want %s", i, certs[i].Subject, tc.chain[i].Subject)
				}
			}
		})
	}

	// Without the intermediate in the message, the chain does not reach the root.
	t.Run("intermediate left out", func(t *testing.T) {
		s := mustSigner(t, certsPEM(interLeaf), keyPEM)
		plist := renderFixture(t, "bob@example.org")
		signed, err := s.Sign(plist)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifySigned(signed, plist, interLeaf, pki.roots); err == nil {
			t.Error("chain verified without the intermediate")
		}
	})
}

func TestSignTamperedContentFailsVerification(t *testing.T) {
	pki := newTestPKI(t)
	key := newECKey(t, elliptic.P256())
	s := mustSigner(t, certsPEM(pki.leaf(t, key.Public(), nil), pki.inter), sec1PEM(t, key))
	plist := renderFixture(t, "alice@example.org")
	signed, err := s.Sign(plist)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(signed, []byte("alice@example.org"))
	if i < 0 {
		t.Fatal("signed message does not carry the plist in clear")
	}
	tampered := bytes.Clone(signed)
	tampered[i] = 'm' // now mlice@example.org
	p7, err := pkcs7.Parse(tampered)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !bytes.Contains(p7.Content, []byte("mlice@example.org")) {
		t.Fatal("tampering did not reach the content")
	}
	var mismatch *pkcs7.MessageDigestMismatchError
	if err := p7.Verify(); !errors.As(err, &mismatch) {
		t.Errorf("Verify of tampered content = %v, want a message digest mismatch", err)
	}
}

func TestSignEmpty(t *testing.T) {
	pki := newTestPKI(t)
	key := newECKey(t, elliptic.P256())
	s := mustSigner(t, certsPEM(pki.leaf(t, key.Public(), nil), pki.inter), sec1PEM(t, key))
	if out, err := s.Sign(nil); err == nil {
		t.Errorf("Sign(nil) = %d bytes, want an error", len(out))
	}
}

func TestSignConcurrent(t *testing.T) {
	pki := newTestPKI(t)
	key := newECKey(t, elliptic.P256())
	leaf := pki.leaf(t, key.Public(), nil)
	s := mustSigner(t, certsPEM(leaf, pki.inter), sec1PEM(t, key))
	tpl := mustParse(t, readFixture(t, "enroll.mobileconfig"))

	const workers = 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			plist, err := tpl.Render(Params{Mode: ModeADDE, ManagedAppleID: fmt.Sprintf("user%d@example.org", w)})
			if err != nil {
				errs <- err
				return
			}
			signed, err := s.Sign(plist)
			if err != nil {
				errs <- err
				return
			}
			if _, err := verifySigned(signed, plist, leaf, pki.roots); err != nil {
				errs <- fmt.Errorf("worker %d: %v", w, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewSignerAcceptsCommonFileLayouts(t *testing.T) {
	pki := newTestPKI(t)
	key := newECKey(t, elliptic.P256())
	noKeyUsage := pki.leaf(t, key.Public(), func(c *x509.Certificate) { c.KeyUsage = 0 })
	leaf := pki.leaf(t, key.Public(), nil)
	keyPEM := sec1PEM(t, key)
	// openssl ecparam -genkey writes the curve parameters before the key.
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})

	tests := []struct {
		name            string
		certPEM, keyPEM []byte
		leaf            *x509.Certificate
	}{
		{"EC PARAMETERS before the key", certsPEM(leaf, pki.inter), append(ecParams, keyPEM...), leaf},
		{"key and certificates in one file", append(bytes.Clone(keyPEM), certsPEM(leaf, pki.inter)...),
			append(bytes.Clone(keyPEM), certsPEM(leaf, pki.inter)...), leaf},
		{"text around the blocks", append([]byte("subject=CN = Profile Signing\n"), certsPEM(leaf, pki.inter)...),
			append([]byte("# signing key\n"), keyPEM...), leaf},
		{"no key usage extension", certsPEM(noKeyUsage, pki.inter), keyPEM, noKeyUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSigner(t, tc.certPEM, tc.keyPEM)
			if !s.Leaf().Equal(tc.leaf) {
				t.Errorf("Leaf() = serial %v, want serial %v", s.Leaf().SerialNumber, tc.leaf.SerialNumber)
			}
			plist := renderFixture(t, "alice@example.org")
			signed, err := s.Sign(plist)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verifySigned(signed, plist, tc.leaf, pki.roots); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewSignerErrors(t *testing.T) {
	pki := newTestPKI(t)
	key := newECKey(t, elliptic.P256())
	keyPEM := sec1PEM(t, key)
	leaf := pki.leaf(t, key.Public(), nil)
	chainPEM := certsPEM(leaf, pki.inter)
	now := time.Now()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edLeaf := pki.leaf(t, edKey.Public(), nil)
	smallLeaf := pki.leaf(t, rsaKeySmall().Public(), nil)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{
		"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: []byte{1, 2, 3}})

	tests := []struct {
		name            string
		certPEM, keyPEM []byte
		want            string // substring of SignerError.Problem
	}{
		{"garbage certificate PEM", []byte("-----BEGIN CERTIFICATE-----\nnot base64!\n"), keyPEM,
			`no PEM "CERTIFICATE" block`},
		{"empty certificate file", nil, keyPEM, `no PEM "CERTIFICATE" block`},
		{"key where the certificate should be", keyPEM, keyPEM, `no PEM "CERTIFICATE" block`},
		{"certificate block of junk", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), chainPEM...),
			keyPEM, "certificate 0 cannot be parsed"},
		{"garbage key PEM", chainPEM, []byte("this is not a key"), "no PEM private key block"},
		{"certificate where the key should be", chainPEM, chainPEM, "no PEM private key block"},
		{"key block of junk", chainPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("junk")}),
			"EC PRIVATE KEY block cannot be parsed"},
		{"PKCS 8 block of junk", chainPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}),
			"PRIVATE KEY block cannot be parsed"},
		{"RSA key in an EC block", chainPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey())}),
			"EC PRIVATE KEY block cannot be parsed"},
		{"encrypted PKCS 8 key", chainPEM, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}),
			"encrypted"},
		{"encrypted legacy key", chainPEM, encrypted, "encrypted"},
		{"DSA key", chainPEM, pem.EncodeToMemory(&pem.Block{Type: "DSA PRIVATE KEY", Bytes: []byte{1}}),
			`unsupported private key block "DSA PRIVATE KEY"`},
		{"Ed25519 key", certsPEM(edLeaf, pki.inter), pkcs8PEM(t, edKey), "Ed25519 keys are not supported"},
		{"RSA key too small", certsPEM(smallLeaf, pki.inter), pkcs1PEM(rsaKeySmall()), "the RSA key has 1024 bits"},
		{"key of another certificate", chainPEM, sec1PEM(t, newECKey(t, elliptic.P256())),
			"does not match the signing certificate (CN=Profile Signing)"},
		{"RSA key for an EC certificate", chainPEM, pkcs1PEM(rsaKey()), "does not match the signing certificate"},
		{"intermediate first", certsPEM(pki.inter, leaf), keyPEM, "does not match the signing certificate (CN=Test Intermediate CA)"},
		{"expired", certsPEM(pki.leaf(t, key.Public(), func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour)
		}), pki.inter), keyPEM, "expired at"},
		{"not yet valid", certsPEM(pki.leaf(t, key.Public(), func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(time.Hour), now.Add(48*time.Hour)
		}), pki.inter), keyPEM, "is not valid before"},
		{"key usage without digitalSignature", certsPEM(pki.leaf(t, key.Public(), func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
		}), pki.inter), keyPEM, "key usage extension without digitalSignature"},
		{"chain skips the intermediate", certsPEM(leaf, pki.root), keyPEM,
			"certificate 0 (CN=Profile Signing) was not issued by certificate 1 (CN=Test Root CA)"},
		{"chain out of order", certsPEM(leaf, pki.root, pki.inter), keyPEM,
			"certificate 0 (CN=Profile Signing) was not issued by certificate 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSigner(tc.certPEM, tc.keyPEM)
			if err == nil {
				t.Fatalf("NewSigner succeeded (leaf %s), want error containing %q", s.Leaf().Subject, tc.want)
			}
			var se *SignerError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *SignerError", err, err)
			}
			if !strings.Contains(se.Problem, tc.want) {
				t.Errorf("Problem = %q, want it to contain %q", se.Problem, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "profile signing identity: ") {
				t.Errorf("Error() = %q, want the signer prefix", err.Error())
			}
			if s != nil {
				t.Error("NewSigner returned a Signer with an error")
			}
		})
	}
}

func TestNewSignerValidityWindow(t *testing.T) {
	pki := newTestPKI(t)
	key := newECKey(t, elliptic.P256())
	notBefore := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := pki.leaf(t, key.Public(), func(c *x509.Certificate) { c.NotBefore, c.NotAfter = notBefore, notAfter })
	certPEM, keyPEM := certsPEM(leaf, pki.inter), sec1PEM(t, key)

	tests := []struct {
		now  time.Time
		want string // "" = accepted
	}{
		{notBefore.Add(-time.Second), "is not valid before 2030-01-01T00:00:00Z"},
		{notBefore, ""},
		{notBefore.Add(180 * 24 * time.Hour), ""},
		{notAfter, ""},
		{notAfter.Add(time.Second), "expired at 2031-01-01T00:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.now.Format(time.RFC3339), func(t *testing.T) {
			s, err := newSigner(certPEM, keyPEM, tc.now)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("newSigner at %v: %v", tc.now, err)
			case tc.want == "" && !s.Leaf().Equal(leaf):
				t.Error("Leaf() is not the signing certificate")
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("newSigner at %v = %v, want an error containing %q", tc.now, err, tc.want)
			}
		})
	}
}

func TestSignerErrorUnwrap(t *testing.T) {
	_, err := NewSigner(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), nil)
	var se *SignerError
	if !errors.As(err, &se) || se.Err == nil {
		t.Fatalf("error = %v, want a *SignerError with an underlying error", err)
	}
	if !errors.Is(err, se.Err) || !strings.HasSuffix(err.Error(), ": "+se.Err.Error()) {
		t.Errorf("Error() = %q does not wrap %v", err.Error(), se.Err)
	}
}

func BenchmarkSign(b *testing.B) {
	pki := newTestPKI(b)
	plist := renderFixture(b, "alice@example.org")
	ec := newECKey(b, elliptic.P256())
	keys := []struct {
		name   string
		key    crypto.Signer
		keyPEM []byte
	}{
		{"ECDSA-P256", ec, sec1PEM(b, ec)},
		{"RSA-2048", rsaKey(), pkcs1PEM(rsaKey())},
	}
	for _, k := range keys {
		b.Run(k.name, func(b *testing.B) {
			s := mustSigner(b, certsPEM(pki.leaf(b, k.key.Public(), nil), pki.inter), k.keyPEM)
			b.SetBytes(int64(len(plist)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(plist); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
