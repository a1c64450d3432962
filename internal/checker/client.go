package checker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

const (
	userAgent    = "DeviceManagementClient/1.0"
	maxRedirects = 10
	limitSmall   = 64 << 10 // discovery and 401 answers
	limitLarge   = 1 << 20  // Enrollment SSO documents
)

// NewClient returns an HTTP client for Check that trusts roots (nil: the
// system roots) and accepts TLS 1.0 and 1.1, so that a server stuck on them
// is reported as such instead of failing with a handshake error. Proxy
// settings come from the environment.
func NewClient(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10}
	return &http.Client{Transport: t}
}

// fetch sends req and reads at most limit bytes of the answer. A transport
// error becomes a fatal finding at step (or StepTLS) and ok is false.
func (w *walker) fetch(ctx context.Context, step string, req *http.Request, limit int64) (resp *http.Response, body []byte, ok bool) {
	req = req.WithContext(ctx)
	req.Header.Set("User-Agent", userAgent)
	resp, err := w.client.Do(req)
	if err != nil {
		if !w.stopped() {
			w.connectProblem(ctx, step, req.URL, err)
		}
		return nil, nil, false
	}
	defer resp.Body.Close()
	w.inspectTLS(req.URL, resp.TLS)
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if !w.stopped() {
			w.fatalf(step, "make sure the server sends complete answers (check proxies and timeouts in front of it)",
				"reading the answer of %s failed: %v", redact(req.URL), err)
		}
		return nil, nil, false
	}
	if int64(len(body)) > limit {
		w.fatalf(step, "answer with the small document the protocol defines",
			"%s answered more than %d bytes", redact(req.URL), limit)
		return nil, nil, false
	}
	return resp, body, true
}

// connectProblem turns a transport error into a finding with a fix.
func (w *walker) connectProblem(ctx context.Context, step string, u *url.URL, err error) {
	host := u.Host
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is in the message already
	}
	var (
		unknown   x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		dnsErr    *net.DNSError
		opErr     *net.OpError
		trustHint = "serve a certificate from a publicly trusted CA together with its intermediates; a device trusts only its system roots (for a private test CA, give the checker that root)"
	)
	switch {
	case errors.As(err, &unknown):
		w.fatalf(StepTLS, trustHint, "the certificate of %s is not trusted: %v", host, unknown)
	case errors.As(err, &hostname):
		w.fatalf(StepTLS, "get a certificate whose subjectAltName covers "+u.Hostname(),
			"the certificate of %s does not name %s: %v", host, u.Hostname(), hostname)
	case errors.As(err, &invalid):
		fix := "replace the certificate with a valid one"
		if invalid.Reason == x509.Expired {
			fix = "renew the certificate (and check that automatic renewal works)"
		}
		w.fatalf(StepTLS, fix, "the certificate of %s is invalid: %v", host, invalid)
	case errors.As(err, &verify):
		w.fatalf(StepTLS, trustHint, "the certificate of %s does not verify: %v", host, verify.Err)
	case errors.As(err, &record), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		w.fatalf(StepTLS, "serve HTTPS (TLS 1.2 or later) on this port",
			"%s does not speak TLS: %v", host, err)
	case strings.Contains(err.Error(), "protocol version"):
		w.fatalf(StepTLS, "enable TLS 1.2 and 1.3 on the server",
			"%s offers no TLS version a device accepts (TLS 1.2 or later): %v", host, err)
	case strings.Contains(err.Error(), "tls: "):
		w.fatalf(StepTLS, "fix the server's TLS configuration: TLS 1.2 or later with modern cipher suites and a valid certificate",
			"TLS handshake with %s failed: %v", host, err)
	case errors.As(err, &dnsErr):
		w.fatalf(step, "publish DNS records (A/AAAA) for "+u.Hostname(),
			"%s does not resolve: %v", u.Hostname(), dnsErr)
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		w.fatalf(step, "make the server answer quickly; a device gives up on slow answers",
			"%s did not answer within %s", redact(u), w.o.Timeout)
	case errors.As(err, &opErr):
		w.fatalf(step, "make sure "+host+" accepts HTTPS connections from the internet (DNS, firewall, port)",
			"cannot connect to %s: %v", host, opErr)
	default:
		w.fatalf(step, "make sure "+host+" accepts HTTPS connections from the internet",
			"the request to %s failed: %v", redact(u), err)
	}
}

// inspectTLS checks the connection state of the first answer from each
// host: the TLS version and the certificate (see certificateProblems).
func (w *walker) inspectTLS(u *url.URL, cs *tls.ConnectionState) {
	if cs == nil || w.tlsSeen[u.Host] {
		return
	}
	w.tlsSeen[u.Host] = true
	if cs.Version < tls.VersionTLS12 {
		w.fatalf(StepTLS, "enable TLS 1.2 and 1.3 on the server (and disable older versions)",
			"%s negotiated %s: devices require TLS 1.2 or later", u.Host, tls.VersionName(cs.Version))
	}
	if len(cs.PeerCertificates) == 0 {
		return
	}
	if len(cs.VerifiedChains) == 0 {
		// The client skipped verification: verify as a device would.
		opts := x509.VerifyOptions{Roots: w.roots(), DNSName: u.Hostname(), CurrentTime: w.o.Now(), Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			w.fatalf(StepTLS, "serve a certificate from a publicly trusted CA, valid for "+u.Hostname()+", with its intermediates",
				"the certificate of %s does not verify: %v", u.Host, err)
		}
	}
	w.rep.Findings = append(w.rep.Findings, certificateProblems(u.Host, cs.PeerCertificates[0], w.o.Now())...)
}

// roots returns the RootCAs of the client's transport (nil: system roots).
func (w *walker) roots() *x509.CertPool {
	if t, ok := w.client.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
		return t.TLSClientConfig.RootCAs
	}
	return nil
}

// redact renders u without its query, for messages.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment, c.User = "", "", nil
	return c.String()
}

func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// absoluteURL parses raw as an absolute http(s) URL with a host.
func absoluteURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("not an absolute http(s) URL")
	}
	return u, nil
}
