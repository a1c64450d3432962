package admin_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

func TestEnrollmentTransitions(t *testing.T) {
	all := []store.State{store.StateActive, store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved}
	for _, act := range []struct {
		name string
		to   store.State
		from store.State // the only state allowed, when set
	}{
		{"reauth", store.StateReauth, ""},
		{"block", store.StateBlocked, ""},
		{"offboard", store.StateOffboarding, ""},
		{"unblock", store.StateReauth, store.StateBlocked},
		{"remove", store.StateRemoved, ""},
	} {
		for _, from := range all {
			allowed := token.CanTransition(from, act.to) && (act.from == "" || act.from == from)
			t.Run(act.name+" from "+string(from), func(t *testing.T) {
				e := newEnv(t)
				e.put(&store.Enrollment{ID: "E", Issuer: issuer, Subject: "sub-alice", ManagedAppleID: "alice@example.com", Mode: "byod", State: from})
				code, _, b := e.do("POST", "/mdm_auth/enrollments/E/"+act.name, "")
				got := e.enrollment("E").State
				if !allowed {
					if code != http.StatusConflict || got != from {
						t.Fatalf("%d %s, state %s; want 409 and %s unchanged", code, b, got, from)
					}
					return
				}
				if code != http.StatusOK || got != act.to {
					t.Fatalf("%d %s, state %s; want 200 and %s", code, b, got, act.to)
				}
				if !strings.Contains(string(b), `"previous_state":"`+string(from)+`"`) || !strings.Contains(string(b), `"state":"`+string(act.to)+`"`) {
					t.Errorf("answer %s", b)
				}
				logged := e.logs.FilterField(zap.String("event", audit.AdminStateChanged)).All()
				if len(logged) != 1 {
					t.Fatalf("%d state change entries", len(logged))
				}
				m := logged[0].ContextMap()
				if m["enrollment_id"] != "E" || m["from"] != string(from) || m["to"] != string(act.to) || m["action"] != act.name ||
					m["client_ip"] != "127.0.0.1" || m["sub"] != "sub-alice" {
					t.Errorf("audit entry %v", m)
				}
			})
		}
	}
}

func TestOffboardDeadline(t *testing.T) {
	tests := []struct {
		body string
		want time.Duration // after the clock's now
	}{
		{"", admin.DefaultOffboardWithin},
		{`{}`, admin.DefaultOffboardWithin},
		{`{"within":"72h"}`, 72 * time.Hour},
		{`{"deadline":"` + epoch.Add(36*time.Hour).Format(time.RFC3339) + `"}`, 36 * time.Hour},
	}
	for _, tt := range tests {
		e := newEnv(t)
		e.put(&store.Enrollment{ID: "E", State: store.StateActive})
		var res admin.ActionResult
		e.call("POST", "/mdm_auth/enrollments/E/offboard", tt.body, http.StatusOK, &res)
		got := e.enrollment("E")
		if got.State != store.StateOffboarding || !got.Deadline.Equal(epoch.Add(tt.want)) {
			t.Errorf("body %q: state %s deadline %s, want offboarding until %s", tt.body, got.State, got.Deadline, epoch.Add(tt.want))
		}
		if res.Enrollment.Deadline == nil || !res.Enrollment.Deadline.Equal(epoch.Add(tt.want)) {
			t.Errorf("body %q: answer deadline %v", tt.body, res.Enrollment.Deadline)
		}
	}
}

func TestActionBadRequests(t *testing.T) {
	e := newEnv(t)
	e.put(&store.Enrollment{ID: "E", State: store.StateActive})
	for _, tt := range []struct {
		path, body string
		want       int
	}{
		{"/mdm_auth/enrollments/E/offboard", `{"within":"72h","deadline":"2040-01-01T00:00:00Z"}`, 400},
		{"/mdm_auth/enrollments/E/offboard", `{"within":"-1h"}`, 400},
		{"/mdm_auth/enrollments/E/offboard", `{"within":"soon"}`, 400},
		{"/mdm_auth/enrollments/E/offboard", `{"deadline":"2020-01-01T00:00:00Z"}`, 400},
		{"/mdm_auth/enrollments/E/offboard", `{"deadline":"tomorrow"}`, 400},
		{"/mdm_auth/enrollments/E/block", `{"within":"72h"}`, 400},
		{"/mdm_auth/enrollments/E/block", `{"reason":"lost"}`, 400},
		{"/mdm_auth/enrollments/E/block", `{"iss":"x","sub":"y"}`, 400},
		{"/mdm_auth/enrollments/E/block", `not json`, 400},
		{"/mdm_auth/enrollments/E/block", `{} {}`, 400},
		{"/mdm_auth/enrollments/E/block", `[1]`, 400},
		{"/mdm_auth/enrollments/E/block?force=1", ``, 400},
		{"/mdm_auth/enrollments/E/block", `{"within":"` + strings.Repeat("9", admin.MaxBody) + `"}`, 413},
		{"/mdm_auth/enrollments/NOPE/block", ``, 404},
		{"/mdm_auth/enrollments/E/explode", ``, 404},
		{"/mdm_auth/enrollments/E/block/now", ``, 404},
	} {
		if code, _, b := e.do("POST", tt.path, tt.body); code != tt.want {
			t.Errorf("POST %s %.40q: %d %s, want %d", tt.path, tt.body, code, b, tt.want)
		}
	}
	if got := e.enrollment("E").State; got != store.StateActive {
		t.Errorf("state %s after refused requests, want active", got)
	}
	// A body larger than the limit sent without a length (chunked).
	req, _ := http.NewRequest("POST", e.srv.URL+"/mdm_auth/enrollments/E/offboard", &endless{n: 2 * admin.MaxBody})
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversized body: %d, want 413", res.StatusCode)
	}
}

// endless yields n bytes of a JSON string, without a known length.
type endless struct{ n int }

func (r *endless) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = ' '
	}
	r.n -= k
	return k, nil
}

func TestMethodsAndRoutes(t *testing.T) {
	e := newEnv(t)
	e.put(&store.Enrollment{ID: "E", State: store.StateActive})
	for _, tt := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{"POST", "/mdm_auth/enrollments", 405, "GET"},
		{"DELETE", "/mdm_auth/enrollments/E", 405, "GET"},
		{"GET", "/mdm_auth/enrollments/E/block", 405, "POST"},
		{"PUT", "/mdm_auth/users/block", 405, "POST"},
		{"GET", "/mdm_auth/tokens/0123456789abcdef01234567/revoke", 405, "POST"},
		{"POST", "/mdm_auth/stats", 405, "GET"},
		{"POST", "/mdm_auth/health", 405, "GET"},
		{"POST", "/mdm_auth/backup", 405, "GET"},
		{"GET", "/mdm_auth/enrollments/E/profile", 405, "POST"},
		{"GET", "/mdm_auth/", 404, ""},
		{"GET", "/mdm_auth/nothing", 404, ""},
		{"GET", "/mdm_auth/users/block", 405, "POST"},
		{"POST", "/mdm_auth/users/explode", 404, ""},
		{"GET", "/mdm_auth/enrollments//x", 404, ""},
	} {
		code, h, b := e.do(tt.method, tt.path, "")
		if code != tt.want || h.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d Allow %q (%s), want %d Allow %q", tt.method, tt.path, code, h.Get("Allow"), b, tt.want, tt.allow)
		}
		if h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q", tt.method, tt.path, h.Get("Cache-Control"))
		}
	}
}

// A blocked device must not get tokens by refreshing, not while blocked
// and not after it was unblocked and its user signed in again; the device
// is challenged on its very next request.
func TestBlockRevokesRefreshAndUnblockNeedsSignIn(t *testing.T) {
	e := newEnv(t)
	p := e.signInOAuth(grant("alice", "byod"), "")
	if d := e.mdm(p.AccessToken, "UE-1"); !d.Allow {
		t.Fatal(d.Reason)
	}
	var res admin.ActionResult
	e.call("POST", "/mdm_auth/enrollments/UE-1/block", "", http.StatusOK, &res)
	if res.Tokens != 1 || res.Families != 1 {
		t.Errorf("revoked %d tokens %d families, want 1 and 1", res.Tokens, res.Families)
	}
	if d := e.mdm(p.AccessToken, "UE-1"); d.Allow || d.Reason != token.ReasonRevoked {
		t.Errorf("next request: allow %v reason %s, want a refusal", d.Allow, d.Reason)
	}
	f := e.family(p.Family.ID)
	if f.RevokedAt.IsZero() || f.RevokeReason != admin.RevokeReason || len(f.IdPRefresh) != 0 {
		t.Errorf("family after block: revoked %v reason %q, IdP refresh token kept: %v", f.RevokedAt, f.RevokeReason, len(f.IdPRefresh) > 0)
	}
	if _, err := e.oauth.Refresh(e.ctx, p.RefreshToken, client); err == nil {
		t.Fatal("a blocked device refreshed")
	}

	e.clock.Advance(time.Minute)
	e.call("POST", "/mdm_auth/enrollments/UE-1/unblock", "", http.StatusOK, &res)
	if res.Enrollment.State != store.StateReauth || res.PreviousState != store.StateBlocked {
		t.Errorf("unblock: %+v", res)
	}
	// The old credentials stay dead; a new sign-in of the owner re-binds.
	if d := e.mdm(p.AccessToken, "UE-1"); d.Allow {
		t.Error("the old access token passes after unblock")
	}
	e.clock.Advance(time.Minute)
	p2 := e.signInOAuth(grant("alice", "byod"), "UE-1")
	if d := e.mdm(p2.AccessToken, "UE-1"); !d.Allow {
		t.Fatalf("new sign-in after unblock: %s", d.Reason)
	}
	if e.enrollment("UE-1").State != store.StateActive {
		t.Error("the new sign-in did not re-activate the enrollment")
	}
	if _, err := e.oauth.Refresh(e.ctx, p.RefreshToken, client); err == nil {
		t.Fatal("the refresh token of before the block works again")
	}
	if _, err := e.oauth.Refresh(e.ctx, p2.RefreshToken, client); err != nil {
		t.Fatalf("the new family cannot refresh: %v", err)
	}
}

func TestReauthAndRemoveRevoke(t *testing.T) {
	e := newEnv(t)
	web := e.enroll("alice", "byod", "UE-1")
	p := e.signInOAuth(grant("bob", "byod"), "")
	e.mdm(p.AccessToken, "UE-2")

	var res admin.ActionResult
	e.call("POST", "/mdm_auth/enrollments/UE-2/reauth", "", http.StatusOK, &res)
	if res.Families != 1 {
		t.Errorf("reauth revoked %+v", res)
	}
	if e.family(p.Family.ID).RevokedAt.IsZero() {
		t.Error("reauth left the family's refresh token usable")
	}
	if d := e.mdm(p.AccessToken, "UE-2"); d.Allow {
		t.Error("the device passed after reauth")
	}

	e.call("POST", "/mdm_auth/enrollments/UE-1/remove", "", http.StatusOK, &res)
	if res.Tokens != 1 || e.token(token.HashOf(web)).RevokedAt.IsZero() {
		t.Errorf("remove: %+v", res)
	}

	// revoke: no state change, everything of the enrollment revoked.
	web3 := e.enroll("carol", "byod", "UE-3")
	e.call("POST", "/mdm_auth/enrollments/UE-3/revoke", "", http.StatusOK, &res)
	if res.Tokens != 1 || res.Enrollment.State != store.StateActive || e.enrollment("UE-3").State != store.StateActive {
		t.Errorf("revoke: %+v", res)
	}
	if d := e.mdm(web3, "UE-3"); d.Allow || d.Reason != token.ReasonRevoked {
		t.Errorf("after revoke: %v %s", d.Allow, d.Reason)
	}
	if n := len(e.logs.FilterField(zap.String("event", audit.AdminGrantsRevoked)).All()); n != 1 {
		t.Errorf("%d grants-revoked entries, want 1", n)
	}
}
