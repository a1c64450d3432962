package bench

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/token"
)

func TestTokensAreDerivedAndWellFormed(t *testing.T) {
	a, b := NewTokens([]byte("seed one")), NewTokens([]byte("seed two"))
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok := a.Token(i)
		if !token.WellFormed(tok) {
			t.Fatalf("token %d %q is not well-formed", i, tok)
		}
		if seen[tok] {
			t.Fatalf("token %d repeats", i)
		}
		seen[tok] = true
	}
	if a.Token(42) != a.Token(42) || a.Token(42) == b.Token(42) {
		t.Error("tokens are not a function of seed and index")
	}
	if SyntheticID(255) != "BE4C0000-0000-4000-8000-0000000000FF" {
		t.Errorf("SyntheticID(255) = %s", SyntheticID(255))
	}
}

func TestSyntheticFleetRequests(t *testing.T) {
	tokens := NewTokens([]byte("s"))
	f, err := NewSyntheticFleet(1_000_000, tokens, "127.0.0.1:8443", MDMPath, "c2lnbmF0dXJl")
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != 1_000_000 {
		t.Errorf("Len = %d", f.Len())
	}
	buf := make([]byte, 0, 4096)
	for _, tc := range []struct {
		i      int
		result bool
		status string
	}{{0, false, "Idle"}, {999_999, true, "Acknowledged"}} {
		wire := f.Request(buf, tc.i, tc.result)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			t.Fatalf("request %d does not parse: %v\n%s", tc.i, err, wire)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case req.Method != http.MethodPut || req.URL.Path != MDMPath || req.Host != "127.0.0.1:8443":
			t.Errorf("%d: %s %s host %s", tc.i, req.Method, req.URL, req.Host)
		case req.Header.Get("Authorization") != "Bearer "+tokens.Token(tc.i) || req.Header.Get("Mdm-Signature") != "c2lnbmF0dXJl" ||
			req.Header.Get("Content-Type") != "application/x-apple-aspen-mdm" || req.Header.Get("User-Agent") != "MDM/1.0":
			t.Errorf("%d: headers %v", tc.i, req.Header)
		case int64(len(body)) != req.ContentLength:
			t.Errorf("%d: body %d bytes, Content-Length %d", tc.i, len(body), req.ContentLength)
		case !strings.Contains(string(body), "<string>"+SyntheticID(tc.i)+"</string>") || !strings.Contains(string(body), "<string>"+tc.status+"</string>"):
			t.Errorf("%d: body %s", tc.i, body)
		}
		if &wire[0] != &buf[:1][0] {
			t.Errorf("%d: the request was not built in the caller's buffer", tc.i)
		}
	}
	if _, err := NewSyntheticFleet(0, tokens, "h", "/", "s"); err == nil {
		t.Error("an empty synthetic fleet was accepted")
	}
}

func TestPreparedFleet(t *testing.T) {
	f := &PreparedFleet{Idle: [][]byte{[]byte("i0"), []byte("i1")}, Results: [][]byte{[]byte("r0"), nil}}
	if f.Len() != 2 || string(f.Request(nil, 0, true)) != "r0" || string(f.Request(nil, 1, true)) != "i1" || string(f.Request(nil, 1, false)) != "i1" {
		t.Errorf("prepared fleet answers wrongly")
	}
}

func TestPreloadedTokensPassWithoutCommit(t *testing.T) {
	s, err := badger.Open(badger.Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	tokens := NewTokens([]byte("preload"))
	now := time.Now()
	o := PreloadOptions{Issuer: "https://idp.example.com/", Now: now, TTL: time.Hour, Workers: 4}
	at := func(i int) Binding { return SyntheticBinding(tokens, i) }
	if err := Preload(ctx, s, 0, 10, at, o); err != nil {
		t.Fatal(err)
	}
	if err := Preload(ctx, s, 10, 25, at, o); err != nil { // steps add up
		t.Fatal(err)
	}
	m := &token.Manager{Store: s, Lifetime: token.Lifetime{TTL: time.Hour, Floor: time.Hour}}
	for _, i := range []int{0, 9, 10, 24} {
		d, err := m.Authorize(ctx, token.Request{Bearer: tokens.Token(i), EnrollmentID: SyntheticID(i)})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allow || d.Reason != token.ReasonOK || d.Pending() {
			t.Errorf("binding %d: allow %v reason %s pending %v; want allowed with nothing to commit", i, d.Allow, d.Reason, d.Pending())
		}
		if d.Enrollment == nil || d.Enrollment.Subject != at(i).Subject || d.Token.EnrollmentID != SyntheticID(i) {
			t.Errorf("binding %d: enrollment %+v token %+v", i, d.Enrollment, d.Token)
		}
	}
	d, err := m.Authorize(ctx, token.Request{Bearer: tokens.Token(25), EnrollmentID: SyntheticID(25)})
	if err != nil || d.Allow {
		t.Errorf("token 25 was not preloaded but allowed: %+v %v", d, err)
	}
	if err := Preload(ctx, s, 5, 6, at, o); err == nil {
		t.Error("preloading an existing binding again succeeded")
	}
	if err := Preload(ctx, s, 30, 31, at, PreloadOptions{}); err == nil {
		t.Error("a preload without TTL succeeded")
	}
}

func TestUpstreamHandler(t *testing.T) {
	srv := httptest.NewServer(UpstreamHandler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/mdm", "application/x-apple-aspen-mdm", strings.NewReader("<plist/>"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(upstreamAnswer)) || !bytes.Equal(body, upstreamAnswer) ||
		resp.Header.Get("Content-Type") != "application/xml" {
		t.Errorf("answer %d, length %d, type %q", resp.StatusCode, resp.ContentLength, resp.Header.Get("Content-Type"))
	}
	resp, err = http.Get(srv.URL + UpstreamHealthPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("health: %d", resp.StatusCode)
	}
}

func TestCaddyfiles(t *testing.T) {
	d := caddyfileData{Admin: 1, HTTP: 2, HTTPS: 3, Storage: "/s", Cert: "/c", Key: "/k", Issuer: "http://idp/", ClientID: "web",
		Template: "/t", Upstream: "127.0.0.1:9", TTL: "90d"}
	a, err := renderCaddyfile(d)
	if err != nil {
		t.Fatal(err)
	}
	d.Gateway = true
	b, err := renderCaddyfile(d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(a, "mdm_auth") || strings.Count(b, "mdm_auth {") != 2 || !strings.Contains(b, "protect /mdm/ad") ||
		!strings.Contains(b, "storage_dir /s") {
		t.Errorf("A must have no mdm_auth, B both blocks:\nA:\n%s\nB:\n%s", a, b)
	}
	// Apart from the mdm_auth blocks, A and B are the same file.
	strip := func(s string) string {
		var out []string
		skip := 0
		for _, l := range strings.Split(s, "\n") {
			switch {
			case skip > 0:
				skip += strings.Count(l, "{") - strings.Count(l, "}")
			case strings.TrimSpace(l) == "mdm_auth {":
				skip = 1
			default:
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	if strip(b) != a {
		t.Errorf("B without its mdm_auth blocks differs from A:\n%s\n---\n%s", strip(b), a)
	}
	for _, want := range []string{"reverse_proxy 127.0.0.1:9", "rewrite @accountDriven /mdm", "tls /c /k", "admin 127.0.0.1:1"} {
		if !strings.Contains(a, want) {
			t.Errorf("A lacks %q", want)
		}
	}
}
