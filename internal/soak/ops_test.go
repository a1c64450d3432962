package soak

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
)

func TestTokenStateExpect(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	exact := tokenState{expLo: t0, expHi: t0}
	window := tokenState{expLo: t0, expHi: t0.Add(30 * time.Second)}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		name           string
		s              tokenState
		sent, received time.Time
		want           expectation
	}{
		{"well before the expiry", exact, at(-time.Minute), at(-time.Minute + 50*time.Millisecond), mustAccept},
		{"answered within the slack before the expiry", exact, at(-1500 * time.Millisecond), at(-900 * time.Millisecond), mayRefuse},
		{"sent at the expiry", exact, at(0), at(10 * time.Millisecond), mayRefuse},
		{"sent within the slack after", exact, at(900 * time.Millisecond), at(950 * time.Millisecond), mayRefuse},
		{"sent a slack after the expiry", exact, at(time.Second), at(time.Second + time.Millisecond), mustRefuse},
		{"inside a window", window, at(10 * time.Second), at(11 * time.Second), mayRefuse},
		{"after a window", window, at(31 * time.Second), at(32 * time.Second), mustRefuse},
		{"before a window", window, at(-2 * time.Second), at(-1500 * time.Millisecond), mustAccept},
		{"revoked, long before its expiry", tokenState{expLo: at(time.Hour), expHi: at(time.Hour), revoked: true}, t0, t0, mustRefuse},
	} {
		if got := tc.s.expect(tc.sent, tc.received); got != tc.want {
			t.Errorf("%s: expect = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestSiteWindow(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	end := start.Add(3 * time.Second)
	s := &site{ttl: oauth2TTL}
	w := s.window(start, end)
	// mdm_auth issues between start and end a token living TTL ± 10 %,
	// never below the floor, which for the soak's sites is the TTL.
	if !w.expLo.Equal(start.Add(oauth2TTL)) || !w.expHi.Equal(end.Add(oauth2TTL+oauth2TTL/10)) || w.revoked {
		t.Fatalf("window %v … %v", w.expLo, w.expHi)
	}
}

func TestClassify(t *testing.T) {
	for raw, want := range map[string]string{
		"https://127.0.0.1:8443/mdm/ad":                                      classMDM,
		"https://127.0.0.1:8443/mdmauth/oauth2/token":                        classToken,
		"https://127.0.0.1:8443/mdmauth/oauth2/authorize?flow=x":             classSignIn,
		"https://127.0.0.1:8443/mdmauth/sign-in/abc":                         classSignIn,
		"https://127.0.0.1:8443/mdmauth/oidc/callback?code=x":                classSignIn,
		"https://127.0.0.1:8443/mdmauth/enroll/byod":                         classEnroll,
		"https://127.0.0.1:8443/.well-known/com.apple.remotemanagement?x=y":  classDiscovery,
		"http://localhost:9999/login/username?authRequestID=1":               classProvider,
		"https://127.0.0.1:8443/elsewhere":                                   classOther,
		"https://127.0.0.1:8443/mdm/adx":                                     classOther,
		"https://127.0.0.1:8443/mdm/ad/sub":                                  classMDM,
		"http://localhost:9999/mdm/ad":                                       classProvider,
		"https://127.0.0.1:8443/.well-known/openid-configuration-elsewhere/": classDiscovery,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := classify(u, "localhost:9999"); got != want {
			t.Errorf("classify(%s) = %s, want %s", raw, got, want)
		}
	}
}

// TestObserverRecordsEveryFailure: a 5xx answer and a request without an
// answer are errors wherever they happen; other statuses are counted only.
func TestObserverRecordsEveryFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mdm/ad":
			w.WriteHeader(http.StatusUnauthorized)
		case "/mdmauth/oauth2/token":
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	obs := newObserver(http.DefaultTransport)
	c := &http.Client{Transport: obs}
	for _, p := range []string{"/mdm/ad", "/mdm/ad", "/mdmauth/oauth2/token", "/mdmauth/sign-in/x"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	srv.Close()
	if _, err := c.Get(srv.URL + "/mdm/ad"); err == nil {
		t.Fatal("a request to a closed server succeeded")
	}
	got := obs.responses()
	if got[classMDM]["401"] != 2 || got[classToken]["502"] != 1 || got[classSignIn]["200"] != 1 {
		t.Fatalf("responses %v", got)
	}
	f := obs.failures.summary()
	if f.Total != 2 || f.ByKind["token: 502"] != 1 || f.ByKind["mdm: transport error"] != 1 {
		t.Fatalf("failures %+v, want the 502 and the transport error", f)
	}
}

// countingTransport counts the requests it carries.
type countingTransport struct{ n int }

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n++
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: req}, nil
}

// TestObserverUsesTheWorkersTransport: a worker's requests, its browser's
// included, go through the worker's own transport.
func TestObserverUsesTheWorkersTransport(t *testing.T) {
	shared, w0, w1 := &countingTransport{}, &countingTransport{}, &countingTransport{}
	obs := newObserver(shared, w0, w1)
	c := &http.Client{Transport: obs}
	for _, ctx := range []context.Context{context.Background(), withWorker(context.Background(), 1),
		withWorker(context.Background(), 1), withWorker(context.Background(), 7)} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://127.0.0.1:1/mdm/ad", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if shared.n != 2 || w0.n != 0 || w1.n != 2 {
		t.Fatalf("shared %d, worker 0 %d, worker 1 %d: want 2 (no worker, unknown worker), 0, 2", shared.n, w0.n, w1.n)
	}
}

func TestTallyKeepsTheFirstExamples(t *testing.T) {
	tl := newTally()
	for i := range maxExamples + 5 {
		tl.add("k", "error %d %s", i, strings.Repeat("x", 500))
	}
	s := tl.summary()
	if s.Total != maxExamples+5 || s.ByKind["k"] != maxExamples+5 || len(s.Examples) != maxExamples {
		t.Fatalf("summary %d %v %d", s.Total, s.ByKind, len(s.Examples))
	}
	if !strings.HasPrefix(s.Examples[0], "error 0 ") || len(s.Examples[0]) > 410 {
		t.Fatalf("first example %q", s.Examples[0][:20])
	}
}

func TestNewUUID(t *testing.T) {
	a, b := newUUID(), newUUID()
	if len(a) != 36 || strings.ToUpper(a) != a || a[14] != '4' || strings.Count(a, "-") != 4 || a == b {
		t.Fatalf("uuids %q %q", a, b)
	}
}

func TestMessage(t *testing.T) {
	d, err := device.New(device.Config{Family: "iPhone", Product: "iPhone17,2", OSVersion: "23A300", Language: "en-US",
		UserIdentifier: "soak000@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Install(&device.Profile{EnrollmentMode: device.ModeBYOD, AssignedManagedAppleID: "soak000@example.com",
		ServerURL: "https://mdm.example.com/mdm/ad", CheckInURL: "https://mdm.example.com/mdm/ad/checkin", Topic: soakTopic,
		SignMessage: true, IdentityCertificateUUID: "7F6B6A1E-2B65-4C4A-9F8E-2A3E4F5A6B7C", IdentityPayloadType: "com.apple.security.scep"}); err != nil {
		t.Fatal(err)
	}
	id := d.IDs().EnrollmentID
	for _, tc := range []struct {
		op        opKind
		url, ct   string
		mustHaves []string
	}{
		{opAuthenticate, "https://mdm.example.com/mdm/ad/checkin", device.CheckInContentType, []string{"<string>Authenticate</string>", id}},
		{opTokenUpdate, "https://mdm.example.com/mdm/ad/checkin", device.CheckInContentType, []string{"<string>TokenUpdate</string>", "<key>PushMagic</key>", "<key>Token</key>", soakTopic, id}},
		{opIdle, "https://mdm.example.com/mdm/ad", device.CommandContentType, []string{"<string>Idle</string>", id}},
		{opAck, "https://mdm.example.com/mdm/ad", device.CommandContentType, []string{"<string>Acknowledged</string>", "<string>C0FFEE</string>", id}},
	} {
		body, u, ct, err := message(d, tc.op, "C0FFEE")
		if err != nil {
			t.Fatal(err)
		}
		if u != tc.url || ct != tc.ct {
			t.Errorf("%s: %s %s", tc.op, u, ct)
		}
		for _, m := range tc.mustHaves {
			if !strings.Contains(string(body), m) {
				t.Errorf("%s: body without %q:\n%s", tc.op, m, body)
			}
		}
	}
}
