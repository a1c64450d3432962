package checker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/checker"
)

func poolOf(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

func TestCheckTLS(t *testing.T) {
	t.Run("certificate not trusted", func(t *testing.T) {
		d := newDeployment(t, &deployment{})
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: d.URL, HTTPClient: checker.NewClient(x509.NewCertPool())})
		if err != nil {
			t.Fatal(err)
		}
		expectFindings(t, rep, []string{"✗ tls: the certificate of " + d.Listener.Addr().String() + " is not trusted"})
		if len(d.Requests()) != 0 {
			t.Errorf("requests sent over an untrusted connection: %+v", d.Requests())
		}
	})
	t.Run("wrong host name", func(t *testing.T) {
		d := newDeployment(t, &deployment{})
		// The test certificate names 127.0.0.1 and example.com, not localhost.
		base := strings.Replace(d.URL, "127.0.0.1", "localhost", 1)
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: base, HTTPClient: d.Client()})
		if err != nil {
			t.Fatal(err)
		}
		expectFindings(t, rep, []string{"✗ tls: does not name localhost"})
	})
	tls11 := func(t *testing.T) *deployment {
		d := &deployment{}
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		d.Server = httptest.NewUnstartedServer(mux)
		d.Config.ErrorLog = quietLog
		d.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		d.StartTLS()
		t.Cleanup(d.Close)
		return d
	}
	t.Run("TLS 1.1 negotiated", func(t *testing.T) {
		d := tls11(t)
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: d.URL, HTTPClient: checker.NewClient(poolOf(d.Server))})
		if err != nil {
			t.Fatal(err)
		}
		expectFindings(t, rep, []string{"✗ tls: negotiated TLS 1.1: devices require TLS 1.2 or later", "✗ discovery: answered 404"})
	})
	t.Run("TLS 1.1 refused by the client", func(t *testing.T) {
		d := tls11(t)
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: d.URL, HTTPClient: d.Client()})
		if err != nil {
			t.Fatal(err)
		}
		expectFindings(t, rep, []string{"✗ tls: offers no TLS version a device accepts"})
	})
	t.Run("expires soon", func(t *testing.T) {
		d := newDeployment(t, &deployment{})
		end := d.Certificate().NotAfter
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: d.URL, HTTPClient: d.Client(),
			Now: func() time.Time { return end.Add(-5 * 24 * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		expectFindings(t, rep, []string{"tls: expires on " + end.UTC().Format(time.DateOnly) + " (in 5 days)"})
	})
	t.Run("verification skipped by the client", func(t *testing.T) {
		d := newDeployment(t, &deployment{})
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, RootCAs: x509.NewCertPool()}}}
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: d.URL, HTTPClient: c})
		if err != nil {
			t.Fatal(err)
		}
		// The connection is inspected once per host: one finding.
		expectFindings(t, rep, []string{"✗ tls: the certificate of " + d.Listener.Addr().String() + " does not verify"})
	})
}

func TestCheckUnreachable(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		d := newDeployment(t, &deployment{})
		url := d.URL
		d.Close()
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: url, HTTPClient: d.Client()})
		if err != nil {
			t.Fatal(err)
		}
		expectFindings(t, rep, []string{"✗ discovery: cannot connect to"})
	})
	t.Run("plain HTTP on the port", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		defer srv.Close()
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: strings.Replace(srv.URL, "http:", "https:", 1)})
		if err != nil {
			t.Fatal(err)
		}
		expectFindings(t, rep, []string{"✗ tls: does not speak TLS"})
	})
	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		d := &deployment{Hook: func(stage string, w http.ResponseWriter, r *http.Request) bool {
			if stage == stageEnroll {
				<-release
			}
			return false
		}}
		newDeployment(t, d)
		defer close(release)
		rep, err := checker.Check(ctx(t), checker.Options{Identifier: "alice@example.com", DiscoveryBase: d.URL, HTTPClient: d.Client(), Timeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		expectFindings(t, rep, []string{"✗ enroll: did not answer within 300ms"})
		if rep.Version != "mdm-byod" {
			t.Errorf("discovery was not reported: %+v", rep)
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		c, cancel := context.WithCancel(context.Background())
		d := &deployment{Hook: func(stage string, w http.ResponseWriter, r *http.Request) bool {
			cancel()
			<-r.Context().Done()
			return true
		}}
		newDeployment(t, d)
		_, err := checker.Check(c, checker.Options{Identifier: "alice@example.com", DiscoveryBase: d.URL, HTTPClient: d.Client()})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestCheckOptions(t *testing.T) {
	for _, o := range []checker.Options{
		{Identifier: "alice"},
		{Identifier: "a@b@example.com"},
		{Identifier: "@example.com"},
		{Identifier: "alice@example.com", ModelFamily: "iphone"},
		{Identifier: "alice@example.com", DiscoveryBase: "http://example.com"},
		{Identifier: "alice@example.com", DiscoveryBase: "https://example.com/path"},
		{Identifier: "alice@example.com", DiscoveryBase: "example.com"},
	} {
		if _, err := checker.Check(context.Background(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// Without DiscoveryBase the device's URL is https://<domain>.
func TestCheckDefaultDiscoveryBase(t *testing.T) {
	var asked string
	c := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		asked = r.URL.String()
		return nil, errors.New("offline")
	})}
	rep, err := checker.Check(context.Background(), checker.Options{Identifier: "a+b@example.org", HTTPClient: c})
	if err != nil {
		t.Fatal(err)
	}
	want := "https://example.org/.well-known/com.apple.remotemanagement?user-identifier=a+b@example.org&model-family=iPhone"
	if asked != want || rep.DiscoveryURL != want {
		t.Errorf("asked %q, report %q, want %q", asked, rep.DiscoveryURL, want)
	}
	expectFindings(t, rep, []string{"✗ discovery: the request to https://example.org/.well-known/com.apple.remotemanagement failed"})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
