package checker

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"
)

// Apple's rules for TLS server certificates (iOS 13 / macOS 10.15 and
// later), which Go's verification does not apply.
var (
	// appleRulesSince: certificates issued from then on are limited to
	// maxValidity.
	appleRulesSince = time.Date(2019, time.July, 1, 0, 0, 0, 0, time.UTC)
	maxValidity     = 825 * 24 * time.Hour
	// publicRulesSince: publicly trusted certificates issued from then on
	// are limited to maxPublicValidity.
	publicRulesSince  = time.Date(2020, time.September, 1, 0, 0, 0, 0, time.UTC)
	maxPublicValidity = 398 * 24 * time.Hour
)

// ExpiryWarning is how close to its end a certificate's validity draws a
// warning.
const ExpiryWarning = 14 * 24 * time.Hour

// certificateProblems checks a TLS server certificate against the rules a
// device applies beyond chain and name verification: RSA keys of at least
// 2048 bits, no SHA-1 signature, an extended key usage with serverAuth, at
// most 825 days of validity (398 days for a public CA, a warning), and
// warns when it expires within ExpiryWarning.
func certificateProblems(host string, leaf *x509.Certificate, now time.Time) []Finding {
	var out []Finding
	add := func(fatal bool, fix, format string, args ...any) {
		out = append(out, Finding{Step: StepTLS, Problem: fmt.Sprintf(format, args...), Fix: fix, Fatal: fatal})
	}
	if k, ok := leaf.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
		add(true, "use an RSA key of at least 2048 bits or an ECDSA P-256 key",
			"the certificate of %s has a %d-bit RSA key: devices require at least 2048 bits", host, k.N.BitLen())
	}
	switch leaf.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA:
		add(true, "get a certificate signed with SHA-256 or better",
			"the certificate of %s is signed with %v, which devices do not trust", host, leaf.SignatureAlgorithm)
	}
	if !hasServerAuth(leaf) {
		add(true, "get a certificate whose extended key usage includes serverAuth (every public CA issues such)",
			"the certificate of %s has no extended key usage serverAuth, which devices require", host)
	}
	validity := leaf.NotAfter.Sub(leaf.NotBefore)
	switch {
	case !leaf.NotBefore.Before(appleRulesSince) && validity > maxValidity:
		add(true, "get a certificate valid for at most 398 days (public CAs issue 90-day ones)",
			"the certificate of %s is valid for %d days: devices reject more than 825", host, days(validity))
	case !leaf.NotBefore.Before(publicRulesSince) && validity > maxPublicValidity:
		add(false, "get a certificate valid for at most 398 days",
			"the certificate of %s is valid for %d days: devices reject publicly trusted certificates valid for more than 398", host, days(validity))
	}
	if left := leaf.NotAfter.Sub(now); left > 0 && left < ExpiryWarning {
		add(false, "renew the certificate now and make sure automatic renewal works",
			"the certificate of %s expires on %s (in %d days)", host, leaf.NotAfter.UTC().Format(time.DateOnly), days(left))
	}
	return out
}

func hasServerAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth {
			return true
		}
	}
	return false
}

func days(d time.Duration) int { return int(d / (24 * time.Hour)) }
