package gateway_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/store"
)

// unprotected is the MDM path of the profile-based and ADE enrollments in
// these tests.
const unprotected = "/mdm"

func shieldEnv(t *testing.T, edit ...func(*gateway.Config)) *env {
	return newEnv(t, append([]func(*gateway.Config){func(c *gateway.Config) {
		c.RefuseAccountDriven = []string{unprotected}
	}}, edit...)...)
}

// legacyRequest is a request on the unprotected MDM path, as a profile-based
// device (or a device identity used without its bearer) sends it.
func legacyRequest(path string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPut, origin+path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-apple-aspen-mdm-checkin")
	r.Header.Set("Mdm-Signature", "sig")
	return r
}

// An account-driven enrollment's device identity cannot reach the MDM on
// the unprotected path, whatever its state but removed: otherwise it would
// go around revocation, reauth and block. Never with a 401.
func TestRefuseAccountDrivenOnUnprotectedPath(t *testing.T) {
	for _, state := range []store.State{store.StateActive, store.StateReauth, store.StateBlocked, store.StateOffboarding} {
		t.Run(string(state), func(t *testing.T) {
			e := shieldEnv(t)
			raw, _ := e.issue(grant("byod"))
			e.bind(raw, fixture(t, "checkin/ue-tokenupdate.plist"))
			if state != store.StateActive {
				if _, err := e.tokens.SetState(e.ctx, ueID, state, e.clock.Now().Add(tokenTTL)); err != nil {
					t.Fatal(err)
				}
			}
			for _, msg := range []string{"ue-idle.plist", "ue-authenticate.plist", "ue-tokenupdate.plist", "ue-checkout.plist"} {
				for _, path := range []string{"/mdm", "/MDM", "/mdm/", "//mdm", "/mdm/x/.."} {
					r := legacyRequest(path, fixture(t, "checkin/"+msg))
					w := e.mustServe(r, failNext(t))
					if w.Code != http.StatusForbidden {
						t.Fatalf("%s on %s: status %d, want 403", msg, path, w.Code)
					}
					if len(w.Header().Values("WWW-Authenticate")) != 0 {
						t.Fatalf("%s on %s: a challenge on an unprotected path", msg, path)
					}
				}
			}
			if got := e.logs.FilterField(zap.String("event", "mdm.refused")).Len(); got == 0 {
				t.Error("no mdm.refused audit entry")
			}
			// Nothing changed.
			if got := e.enrollment(ueID).State; got != state {
				t.Errorf("state %s after the refusals, want %s", got, state)
			}
		})
	}
}

// The path as the client sent it counts, before any rewrite to the
// unprotected path; a request rewritten from the protected path is still
// the bearer's business.
func TestRefuseAccountDrivenOriginalPath(t *testing.T) {
	e := shieldEnv(t)
	raw, _ := e.issue(grant("byod"))
	e.bind(raw, fixture(t, "checkin/ue-tokenupdate.plist"))
	original := map[*http.Request]string{}
	e.gw.OriginalPath = func(r *http.Request) string { return original[r] }

	// Sent to /mdm, rewritten elsewhere: still refused.
	r := legacyRequest("/nanomdm", fixture(t, "checkin/ue-idle.plist"))
	original[r] = "/mdm"
	if w := e.mustServe(r, failNext(t)); w.Code != http.StatusForbidden {
		t.Fatalf("rewritten request: status %d, want 403", w.Code)
	}
	// Sent to the protected path with its bearer, rewritten to /mdm: the
	// bearer check lets it through.
	r = mdmRequest(fixture(t, "checkin/ue-idle.plist"), raw)
	original[r] = r.URL.Path
	r.URL.Path = "/mdm"
	n := &recNext{status: http.StatusOK}
	if w := e.mustServe(r, n.serve); w.Code != http.StatusOK || len(n.calls) != 1 {
		t.Fatalf("protected request rewritten to /mdm: status %d, %d calls", w.Code, len(n.calls))
	}
}

// Profile-based and ADE devices, unknown to the gateway, pass untouched;
// so does a device whose account-driven enrollment was removed (it may
// enroll another way since).
func TestRefuseAccountDrivenPassesOthers(t *testing.T) {
	e := shieldEnv(t)
	raw, _ := e.issue(grant("adde"))
	e.bind(raw, fixture(t, "checkin/adde-iphone-tokenupdate.plist"))
	if _, err := e.tokens.SetState(e.ctx, addeIPhoneUDID, store.StateRemoved, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, path, fixture string }{
		{"unknown enrollment", "/mdm", "checkin/ue-idle.plist"},
		{"unknown enrollment, below the path", "/mdm/checkin", "checkin/ue-authenticate.plist"},
		{"removed account-driven enrollment", "/mdm", "checkin/adde-iphone-tokenupdate.plist"},
		{"no enrollment named", "/mdm", "checkin/no-enrollment-id.plist"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := fixture(t, tt.fixture)
			r := legacyRequest(tt.path, body)
			r.ContentLength = -1 // chunked: the body is read and passed on whole
			n := &recNext{status: http.StatusOK, body: "upstream"}
			w := e.mustServe(r, n.serve)
			if w.Code != http.StatusOK || w.Body.String() != "upstream" || len(n.calls) != 1 {
				t.Fatalf("status %d %q, %d calls: want the upstream's answer", w.Code, w.Body, len(n.calls))
			}
			c := n.calls[0]
			if !bytes.Equal(c.Body, body) || c.ContentLength != int64(len(body)) || c.Header.Get("Mdm-Signature") != "sig" {
				t.Errorf("upstream got %d bytes, ContentLength %d, signature %q: want the request unchanged", len(c.Body), c.ContentLength, c.Header.Get("Mdm-Signature"))
			}
		})
	}
}

// A body the scanner cannot read is refused (400, never 401): passed on,
// one the MDM's parser reads (a binary plist) would name its enrollment
// unchecked. Oversized bodies get 413. Store failures get 503.
func TestRefuseAccountDrivenBadInput(t *testing.T) {
	e := shieldEnv(t, func(c *gateway.Config) { c.MaxMDMBody = 4096 })
	for _, tt := range []struct {
		name string
		body []byte
		want int
	}{
		{"binary plist", []byte("bplist00\xd1\x01\x02"), http.StatusBadRequest},
		{"not a plist", notPlist, http.StatusBadRequest},
		{"too large", bytes.Repeat([]byte("a"), 4097), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := e.mustServe(legacyRequest(unprotected, tt.body), failNext(t))
			if w.Code != tt.want || len(w.Header().Values("WWW-Authenticate")) != 0 {
				t.Fatalf("status %d (challenge %q), want %d", w.Code, w.Header().Get("WWW-Authenticate"), tt.want)
			}
		})
	}
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	w := e.mustServe(legacyRequest(unprotected, fixture(t, "checkin/ue-idle.plist")), failNext(t))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("closed store: status %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}

func TestRefuseAccountDrivenConfig(t *testing.T) {
	for _, tt := range []struct {
		name  string
		paths []string
		err   string
	}{
		{"root", []string{"/"}, "root"},
		{"relative", []string{"mdm"}, "must start with /"},
		{"gateway prefix", []string{"/mdmauth/x"}, "overlaps"},
		{"above the gateway", []string{"/mdmauth"}, "overlaps"},
		{"well-known", []string{"/.well-known"}, "overlaps"},
		{"under a protected path", []string{"/mdm/ad/x"}, "protected"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := gateway.Config{Domains: []string{"example.com"}, Template: loadTemplate(t), Protect: []string{protect}, RefuseAccountDriven: tt.paths}
			_, err := gateway.New(cfg, gateway.Deps{})
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
	_, err := gateway.New(gateway.Config{Domains: []string{"example.com"}, Template: loadTemplate(t), Protect: []string{protect}, RefuseAccountDriven: []string{"/MDM/"}}, gateway.Deps{})
	if err != nil {
		t.Fatalf("a path above the protected one: %v", err)
	}
}
