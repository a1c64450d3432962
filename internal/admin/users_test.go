package admin_test

import (
	"net/http"
	"testing"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

const aliceBody = `{"iss":"` + issuer + `","sub":"sub-alice"}`

func outcomes(res admin.UserResult) map[string]string {
	m := map[string]string{}
	for _, o := range res.Enrollments {
		m[o.ID] = o.Result + ":" + string(o.State)
	}
	return m
}

func TestUserBlockUnblock(t *testing.T) {
	e := newEnv(t)
	active := e.enroll("alice", "byod", "A-ACTIVE")
	e.enroll("alice", "adde", "A-BLOCKED")
	e.call("POST", "/mdm_auth/enrollments/A-BLOCKED/block", "", http.StatusOK, nil)
	e.enroll("alice", "byod", "A-REMOVED")
	e.call("POST", "/mdm_auth/enrollments/A-REMOVED/remove", "", http.StatusOK, nil)
	pending, _ := e.issue(grant("alice", "byod")) // a device in the middle of enrolling
	p := e.signInOAuth(grant("alice", "byod"), "")
	bob := e.enroll("bob", "byod", "B-1")

	var res admin.UserResult
	e.call("POST", "/mdm_auth/users/block", aliceBody, http.StatusOK, &res)
	want := map[string]string{"A-ACTIVE": "changed:blocked", "A-BLOCKED": "unchanged:blocked", "A-REMOVED": "unchanged:removed"}
	if got := outcomes(res); len(got) != 3 || got["A-ACTIVE"] != want["A-ACTIVE"] || got["A-BLOCKED"] != want["A-BLOCKED"] || got["A-REMOVED"] != want["A-REMOVED"] {
		t.Errorf("outcomes %v, want %v", got, want)
	}
	if res.Changed != 1 || res.Unchanged != 2 || res.Errors != 0 || res.Tokens != 3 || res.Families != 1 {
		t.Errorf("counts %+v, want 1 changed, 2 unchanged, 3 tokens (bound, pending, OAuth 2) and 1 family revoked", res)
	}
	for _, raw := range []string{active, pending, p.AccessToken} {
		if e.token(token.HashOf(raw)).RevokedAt.IsZero() {
			t.Error("a token of the user survived the block")
		}
	}
	if _, err := e.oauth.Refresh(e.ctx, p.RefreshToken, client); err == nil {
		t.Error("the user's refresh token works after the block")
	}
	if !e.token(token.HashOf(bob)).RevokedAt.IsZero() || e.enrollment("B-1").State != store.StateActive {
		t.Error("another user was touched")
	}
	if n := len(e.logs.FilterField(zap.String("event", audit.AdminGrantsRevoked)).All()); n != 1 {
		t.Errorf("%d user revocation entries, want 1", n)
	}

	e.call("POST", "/mdm_auth/users/unblock", aliceBody, http.StatusOK, &res)
	if got := outcomes(res); got["A-ACTIVE"] != "changed:reauth" || got["A-BLOCKED"] != "changed:reauth" || got["A-REMOVED"] != "unchanged:removed" {
		t.Errorf("unblock outcomes %v", got)
	}
	if res.Tokens != 0 || res.Families != 0 {
		t.Errorf("unblock revoked %+v", res)
	}
}

func TestUserActionErrorsPerEnrollment(t *testing.T) {
	e := newEnv(t)
	e.enroll("alice", "byod", "A-1")
	e.enroll("alice", "byod", "A-2")
	e.call("POST", "/mdm_auth/enrollments/A-2/offboard", `{"within":"1h"}`, http.StatusOK, nil)

	var res admin.UserResult
	e.call("POST", "/mdm_auth/users/reauth", aliceBody, http.StatusOK, &res)
	got := outcomes(res)
	if got["A-1"] != "changed:reauth" || got["A-2"] != "error:offboarding" || res.Errors != 1 || res.Changed != 1 {
		t.Errorf("outcomes %v %+v", got, res)
	}
	for _, o := range res.Enrollments {
		if o.ID == "A-2" && o.Error == "" {
			t.Error("the refused enrollment carries no error message")
		}
	}
}

func TestUserActionRequests(t *testing.T) {
	e := newEnv(t)
	e.enroll("alice", "byod", "A-1")
	// A user with only a pending token is known.
	e.issue(grant("dave", "byod"))
	e.call("POST", "/mdm_auth/users/revoke", `{"iss":"`+issuer+`","sub":"sub-dave"}`, http.StatusOK, nil)
	for _, tt := range []struct {
		body string
		want int
	}{
		{``, 400},
		{`{}`, 400},
		{`{"iss":"` + issuer + `"}`, 400},
		{`{"iss":"` + issuer + `","sub":"sub-nobody"}`, 404},
		{`{"iss":"` + issuer + `","sub":"sub-alice","within":"1h"}`, 400},
		{`{"iss":"` + issuer + `","sub":"sub-alice","extra":1}`, 400},
	} {
		if code, _, b := e.do("POST", "/mdm_auth/users/block", tt.body); code != tt.want {
			t.Errorf("%q: %d %s, want %d", tt.body, code, b, tt.want)
		}
	}
	if e.enrollment("A-1").State != store.StateActive {
		t.Error("a refused request changed the enrollment")
	}
	var res admin.UserResult
	e.call("POST", "/mdm_auth/users/offboard", `{"iss":"`+issuer+`","sub":"sub-alice","within":"48h"}`, http.StatusOK, &res)
	if en := e.enrollment("A-1"); en.State != store.StateOffboarding || !en.Deadline.Equal(epoch.Add(48*3600e9)) {
		t.Errorf("offboard with a deadline: %s %s", en.State, en.Deadline)
	}
}
