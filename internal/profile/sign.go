package profile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// MinRSABits is the smallest RSA signing key NewSigner accepts.
const MinRSABits = 2048

// Signer signs rendered profiles as CMS SignedData with the profile attached, a SHA-256 digest
// and the signer's certificate chain included. It is immutable and safe for concurrent use.
type Signer struct {
	leaf    *x509.Certificate
	parents []*x509.Certificate // intermediates, in issuing order (leaf's issuer first)
	key     crypto.Signer
}

// NewSigner loads a signing identity from PEM data.
//
// certPEM holds the signing certificate followed by the intermediates that lead to its root, each
// certificate issued by the one after it; PEM blocks of other types are ignored. keyPEM holds an
// unencrypted PKCS #8, PKCS #1 (RSA) or SEC 1 (EC) private key; blocks before it of other types,
// such as "EC PARAMETERS", are skipped. The key must be an ECDSA key or an RSA key of at least
// MinRSABits bits and must match the signing certificate, which must be valid now and, if it has
// a key usage extension, allow digitalSignature.
//
// Errors are of type *SignerError.
func NewSigner(certPEM, keyPEM []byte) (*Signer, error) {
	return newSigner(certPEM, keyPEM, time.Now())
}

// newSigner is NewSigner with the validity check done at now.
func newSigner(certPEM, keyPEM []byte, now time.Time) (*Signer, error) {
	chain, err := parseCertificates(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if err := checkLeaf(leaf, key, now); err != nil {
		return nil, err
	}
	for i := 1; i < len(chain); i++ {
		if err := chain[i-1].CheckSignatureFrom(chain[i]); err != nil {
			return nil, &SignerError{
				Problem: fmt.Sprintf("certificate %d (%s) was not issued by certificate %d (%s); "+
					"list the signing certificate first, then each issuer in order",
					i-1, certName(chain[i-1]), i, certName(chain[i])),
				Err: err,
			}
		}
	}
	return &Signer{leaf: leaf, parents: chain[1:], key: key}, nil
}

// Leaf returns the signing certificate. The caller must not modify it.
func (s *Signer) Leaf() *x509.Certificate { return s.leaf }

// Sign returns DER-encoded CMS SignedData over plist, with plist as the attached content, a
// SHA-256 digest, signed attributes (content type, message digest, signing time) and the signing
// certificate and its intermediates in the certificates field.
func (s *Signer) Sign(plist []byte) ([]byte, error) {
	if len(plist) == 0 {
		return nil, errors.New("profile: nothing to sign")
	}
	sd, err := pkcs7.NewSignedData(plist)
	if err != nil {
		return nil, fmt.Errorf("profile: signing: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(s.leaf, s.key, s.parents, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("profile: signing: %w", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("profile: signing: %w", err)
	}
	return der, nil
}

// parseCertificates returns the CERTIFICATE blocks of data in order.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &SignerError{
				Problem: fmt.Sprintf("certificate %d cannot be parsed", len(chain)),
				Err:     err,
			}
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, &SignerError{Problem: `no PEM "CERTIFICATE" block in the certificate file`}
	}
	return chain, nil
}

// parsePrivateKey returns the first private key block of data.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, &SignerError{Problem: "no PEM private key block in the key file"}
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
			return nil, &SignerError{Problem: "the private key is encrypted; provide it unencrypted"}
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			return nil, &SignerError{Problem: fmt.Sprintf(
				`unsupported private key block %q; use "PRIVATE KEY", "RSA PRIVATE KEY" or "EC PRIVATE KEY"`,
				block.Type)}
		}
		if err != nil {
			return nil, &SignerError{Problem: fmt.Sprintf("%s block cannot be parsed", block.Type), Err: err}
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			if bits := k.N.BitLen(); bits < MinRSABits {
				return nil, &SignerError{Problem: fmt.Sprintf(
					"the RSA key has %d bits; at least %d are required", bits, MinRSABits)}
			}
			return k, nil
		case ed25519.PrivateKey:
			return nil, &SignerError{Problem: "Ed25519 keys are not supported for profile signing; use an ECDSA or RSA key"}
		default:
			return nil, &SignerError{Problem: fmt.Sprintf("unsupported private key type %T; use an ECDSA or RSA key", key)}
		}
	}
}

// checkLeaf checks that the signing certificate fits key and is usable at now.
func checkLeaf(leaf *x509.Certificate, key crypto.Signer, now time.Time) error {
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return &SignerError{Problem: fmt.Sprintf(
			"the private key does not match the signing certificate (%s), the first one in the certificate file",
			certName(leaf))}
	}
	if now.Before(leaf.NotBefore) {
		return &SignerError{Problem: fmt.Sprintf("the signing certificate (%s) is not valid before %s",
			certName(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))}
	}
	if now.After(leaf.NotAfter) {
		return &SignerError{Problem: fmt.Sprintf("the signing certificate (%s) expired at %s",
			certName(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return &SignerError{Problem: fmt.Sprintf(
			"the signing certificate (%s) has a key usage extension without digitalSignature", certName(leaf))}
	}
	return nil
}

// certName names a certificate for error messages.
func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return "CN=" + c.Subject.CommonName
	case len(c.RawSubject) > 2: // more than an empty SEQUENCE
		return c.Subject.String()
	default:
		return "serial " + c.SerialNumber.String()
	}
}
