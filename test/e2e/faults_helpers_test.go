package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/inventory"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/token"
)

// startFaultLab starts a lab with o and dumps every part's log when the
// test fails.
func startFaultLab(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	bin, err := caddyBinary() // linked once, not once per lab
	if err != nil {
		t.Fatal(err)
	}
	o.CaddyBinary = bin
	l, err := lab.Start(t, o)
	if err != nil {
		t.Fatalf("starting the lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy log:\n%s", tail(l.Caddy.Logs(), 80))
			t.Logf("nanomdm log:\n%s", tail(l.NanoMDM.Logs(), 20))
			t.Logf("oidc log:\n%s", tail(l.OIDC.Logs(), 20))
		}
	})
	return l
}

// adminCall sends method path (under the admin API's prefix) to the lab's
// Caddy admin endpoint, decodes a 2xx JSON answer into v (when not nil)
// and returns the status.
func adminCall(t *testing.T, l *lab.Lab, method, path string, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, l.AdminURL+admin.DefaultPrefix+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	if v != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("admin %s %s: %v\n%s", method, path, err, body)
		}
	}
	return resp.StatusCode
}

// tokenID is the admin API's name of an access token.
func tokenID(tok string) string { return token.HashOf(tok).ID() }

// tokenView reads an access token through the admin API.
func tokenView(t *testing.T, l *lab.Lab, tok string) admin.Token {
	t.Helper()
	var d admin.TokenDetail
	if st := adminCall(t, l, http.MethodGet, "tokens/"+tokenID(tok), &d); st != http.StatusOK {
		t.Fatalf("admin: token %s: status %d", tokenID(tok), st)
	}
	return d.Token
}

// enrollmentView reads an enrollment through the admin API; ok is false
// when the store has none of that id.
func enrollmentView(t *testing.T, l *lab.Lab, id string) (admin.Enrollment, bool) {
	t.Helper()
	var d admin.EnrollmentDetail
	switch st := adminCall(t, l, http.MethodGet, "enrollments/"+id, &d); st {
	case http.StatusOK:
		return d.Enrollment, true
	case http.StatusNotFound:
		return admin.Enrollment{}, false
	default:
		t.Fatalf("admin: enrollment %s: status %d", id, st)
	}
	return admin.Enrollment{}, false
}

// stats reads the store's counts through the admin API.
func stats(t *testing.T, l *lab.Lab) inventory.Stats {
	t.Helper()
	var s inventory.Stats
	if st := adminCall(t, l, http.MethodGet, "stats", &s); st != http.StatusOK {
		t.Fatalf("admin: stats: status %d", st)
	}
	return s
}

// browserFunc is a device.Browser made of a function.
type browserFunc func(ctx context.Context, signInURL string) (string, error)

func (f browserFunc) SignIn(ctx context.Context, signInURL string) (string, error) {
	return f(ctx, signInURL)
}

// hookTransport calls before(r) ahead of every request it carries: a way
// to break something at an exact step of a browser's sign-in.
type hookTransport struct {
	base   http.RoundTripper
	before func(r *http.Request)
}

func (h *hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h.before(r)
	return h.base.RoundTrip(r)
}

// beforeCallbackBrowser is the lab's form browser for username, which
// runs hook once, just before it follows the provider's redirect to the
// gateway's OIDC callback (after the user signed in at the provider).
func beforeCallbackBrowser(l *lab.Lab, username string, hook func()) *device.FormBrowser {
	var once sync.Once
	client := *l.HTTPClient
	client.Transport = &hookTransport{base: l.HTTPClient.Transport, before: func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/oidc/callback") {
			once.Do(hook)
		}
	}}
	return &device.FormBrowser{Client: &client, Username: username, Password: lab.Password}
}

// requireSignInUnavailable requires err to be the gateway's "sign-in is
// temporarily unavailable" page: a 503 HTML page shown in the device's
// browser.
func requireSignInUnavailable(t *testing.T, err error) {
	t.Helper()
	var se *device.SignInError
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable ||
		!strings.Contains(se.URL, "/mdmauth/") || !strings.Contains(se.Snippet, "temporarily unavailable") {
		t.Fatalf("sign-in with the identity provider down: %s; want the gateway's 503 page", withoutQueries(fmt.Sprint(err)))
	}
}

// withoutQueries drops the query strings of the URLs in s: they may carry
// an authorization code.
func withoutQueries(s string) string {
	return queryRE.ReplaceAllString(s, "?…")
}

var queryRE = regexp.MustCompile(`\?[^\s"]*`)

// resumeEnrollment finishes the enrollment of d, which received tok at the
// end of its sign-in but never got its profile: the second enrollment POST
// with tok as the bearer, then the profile installed.
func resumeEnrollment(t *testing.T, c context.Context, l *lab.Lab, d *device.Device, tok string) {
	t.Helper()
	version, base, err := d.Discover(c)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	body, err := d.EnrollmentRequest()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(c, http.MethodPost, base, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/pkcs7-signature")
	req.Header.Set("User-Agent", "DeviceManagementClient/1.0")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := l.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("enrollment POST with the token: %v", err)
	}
	defer resp.Body.Close()
	profile, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || mt != device.ProfileContentType {
		t.Fatalf("enrollment POST with the token: %d %s: %s", resp.StatusCode, mt, tail(string(profile), 5))
	}
	p, err := device.ParseProfile(profile, version)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Install(p); err != nil {
		t.Fatal(err)
	}
	d.SetToken(tok)
}

// siteBlock returns the site block of addr in a Caddyfile: from the line
// "<addr> {" to its closing brace at the start of a line.
func siteBlock(caddyfile, addr string) (string, error) {
	start := strings.Index(caddyfile, "\n"+addr+" {\n")
	if start < 0 {
		return "", fmt.Errorf("no site block %q in the Caddyfile", addr)
	}
	start++
	end := strings.Index(caddyfile[start:], "\n}\n")
	if end < 0 {
		return "", fmt.Errorf("site block %q does not end", addr)
	}
	return caddyfile[start : start+end+3], nil
}

// silentServer accepts TCP connections and never answers: a server that
// hangs.
type silentServer struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

// listenSilently takes addr and holds every connection made to it,
// unanswered, until Close.
func listenSilently(addr string) (*silentServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &silentServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.accepted++
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// Accepted returns how many connections were made.
func (s *silentServer) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Close frees the address and drops the connections held.
func (s *silentServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}
