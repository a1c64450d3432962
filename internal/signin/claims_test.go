package signin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
)

// TestManagedAppleID covers how the Managed Apple ID is taken from the ID
// token or UserInfo, and every reason to refuse it.
func TestManagedAppleID(t *testing.T) {
	verified := map[string]any{"email": "alice@example.com", "email_verified": true}
	type tc struct {
		claims   Claims
		idClaims map[string]any // replaces email and email_verified of the ID token
		userInfo map[string]any
		uiStatus int
		typed    string

		status       int    // 308 or the page's status
		reason       string // page reason
		maid         string // on success
		userInfoHits int
	}
	strict := Claims{RequireEmailVerified: true}
	cases := map[string]tc{
		"email in the ID token": {claims: strict, idClaims: verified,
			status: 308, maid: "alice@example.com"},
		"email only in UserInfo": {claims: strict, idClaims: map[string]any{}, userInfo: verified,
			status: 308, maid: "alice@example.com", userInfoHits: 1},
		"email_verified only in UserInfo": {claims: strict, idClaims: map[string]any{"email": "alice@example.com"}, userInfo: map[string]any{"email_verified": true},
			status: 308, maid: "alice@example.com", userInfoHits: 1},
		"email_verified as a string": {claims: strict, idClaims: map[string]any{"email": "alice@example.com", "email_verified": "true"},
			status: 308, maid: "alice@example.com"},
		"UserInfo of another subject": {claims: strict, idClaims: map[string]any{}, userInfo: map[string]any{"sub": "mallory-sub", "email": "alice@example.com", "email_verified": true},
			status: 403, reason: "claims_invalid", userInfoHits: 1},
		"UserInfo without subject": {claims: strict, idClaims: map[string]any{}, userInfo: map[string]any{"sub": nil, "email": "alice@example.com", "email_verified": true},
			status: 403, reason: "claims_invalid", userInfoHits: 1},
		"UserInfo down": {claims: strict, idClaims: map[string]any{}, userInfo: verified, uiStatus: 500,
			status: 503, reason: "idp_unavailable", userInfoHits: 1},
		"UserInfo down while checking email_verified": {claims: strict, idClaims: map[string]any{"email": "alice@example.com"}, uiStatus: 503,
			status: 503, reason: "idp_unavailable", userInfoHits: 1},
		"UserInfo of another subject while checking email_verified": {claims: strict, idClaims: map[string]any{"email": "alice@example.com"}, userInfo: map[string]any{"sub": "mallory-sub", "email_verified": true},
			status: 403, userInfoHits: 1},
		"email not verified": {claims: strict, idClaims: map[string]any{"email": "alice@example.com", "email_verified": false},
			status: 403, reason: "email_unverified"},
		"email not verified, as a string": {claims: strict, idClaims: map[string]any{"email": "alice@example.com", "email_verified": "false"},
			status: 403, reason: "email_unverified"},
		"email_verified nowhere": {claims: strict, idClaims: map[string]any{"email": "alice@example.com"}, userInfo: map[string]any{"email": "alice@example.com"},
			status: 403, reason: "email_unverified", userInfoHits: 1},
		"email not verified, not required": {claims: Claims{}, idClaims: map[string]any{"email": "alice@example.com", "email_verified": false},
			status: 308, maid: "alice@example.com"},
		"no email anywhere": {claims: strict, idClaims: map[string]any{}, userInfo: map[string]any{"name": "Alice"},
			status: 403, reason: "no_managed_apple_id", userInfoHits: 1},
		"email not a string": {claims: strict, idClaims: map[string]any{"email": 42, "email_verified": true},
			status: 403, reason: "no_managed_apple_id"},
		"custom claim": {claims: Claims{ManagedAppleID: "upn", RequireEmailVerified: true},
			idClaims: map[string]any{"upn": "alice@corp.example.com", "email": "private@example.net", "email_verified": false},
			status:   308, maid: "alice@corp.example.com"},
		"custom claim from UserInfo": {claims: Claims{ManagedAppleID: "upn", RequireEmailVerified: true},
			idClaims: map[string]any{}, userInfo: map[string]any{"upn": "alice@corp.example.com"},
			status: 308, maid: "alice@corp.example.com", userInfoHits: 1},
		"custom claim missing": {claims: Claims{ManagedAppleID: "upn"}, idClaims: verified,
			status: 403, reason: "no_managed_apple_id", userInfoHits: 1},
		"identifier must match, matches": {claims: Claims{RequireEmailVerified: true, RequireIdentifierMatch: true}, idClaims: verified,
			typed: "ALICE@Example.com", status: 308, maid: "alice@example.com"},
		"identifier must match, differs": {claims: Claims{RequireEmailVerified: true, RequireIdentifierMatch: true}, idClaims: verified,
			typed: "bob@example.com", status: 403, reason: "identifier_mismatch"},
		"identifier must match, none typed": {claims: Claims{RequireEmailVerified: true, RequireIdentifierMatch: true}, idClaims: verified,
			typed: "", status: 403, reason: "identifier_mismatch"},
		"identifier may differ": {claims: strict, idClaims: verified,
			typed: "bob@example.com", status: 308, maid: "alice@example.com"},
	}
	for _, bad := range []string{
		"alice", "alice@", "@example.com", "alice@localhost", "alice@@example.com", "alice@bob@example.com",
		"Alice <alice@example.com>", " alice@example.com", "alice@example.com ", "alice@example.com\n",
		"al ice@example.com", `"alice"@example.com`, strings.Repeat("a", 250) + "@example.com",
	} {
		cases["not an address: "+bad] = tc{claims: strict, idClaims: map[string]any{"email": bad, "email_verified": true},
			status: 403, reason: "bad_managed_apple_id"}
	}

	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.web.Claims = c.claims
			l := fakeidp.Login{Subject: "alice-sub", IDClaims: map[string]any{"sid": "sid-alice"}, UserInfoClaims: c.userInfo, UserInfoStatus: c.uiStatus}
			for k, v := range c.idClaims {
				l.IDClaims[k] = v
			}
			e.idp.Script(l)
			typed := c.typed
			if typed == "" && !strings.HasPrefix(name, "identifier") {
				typed = "alice@example.com"
			}
			w := e.signIn(enrollFlow, typed)
			if c.status == 308 {
				_, rec := e.issued(w)
				if rec.ManagedAppleID != c.maid || rec.UserIdentifier != typed || rec.Subject != "alice-sub" {
					t.Errorf("token: Managed Apple ID %q, identifier %q, sub %q; want %q, %q, alice-sub",
						rec.ManagedAppleID, rec.UserIdentifier, rec.Subject, c.maid, typed)
				}
			} else if c.reason != "" {
				e.refused(w, c.status, c.reason, 0)
			} else {
				e.refused(w, c.status, "", 0)
			}
			if n := e.idp.Hits(fakeidp.UserInfo); n != c.userInfoHits {
				t.Errorf("UserInfo requests: %d, want %d", n, c.userInfoHits)
			}
		})
	}
}

// Users are keyed by (iss, sub): an email address alone never makes two
// accounts the same user, and a changed address keeps the same user.
func TestUsersKeyedByIssuerAndSubject(t *testing.T) {
	for name, c := range map[string]struct {
		enrolledIss, enrolledSub string
		login                    fakeidp.Login
		ok                       bool
	}{
		"same subject, new address": {"", "alice-sub",
			fakeidp.Login{Subject: "alice-sub", IDClaims: map[string]any{"email": "alice.new@example.com", "email_verified": true}}, true},
		"another subject, same address": {"", "alice-sub",
			fakeidp.Login{Subject: "bob-sub", IDClaims: map[string]any{"email": "alice@example.com", "email_verified": true}}, false},
		"same subject at another issuer": {"https://other-idp.example.com", "alice-sub",
			fakeidp.Login{Subject: "alice-sub", IDClaims: map[string]any{"email": "alice@example.com", "email_verified": true}}, false},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			iss := c.enrolledIss
			if iss == "" {
				iss = e.idp.Issuer
			}
			e.seed(storeEnrollment(reauthFlow.EnrollmentID, iss, c.enrolledSub, "alice@example.com", "byod"))
			e.idp.Script(c.login)
			w := e.signIn(reauthFlow, "alice@example.com")
			if !c.ok {
				e.refused(w, http.StatusForbidden, "wrong_user", 0)
				return
			}
			_, rec := e.issued(w)
			// The enrollment keeps its AssignedManagedAppleID: a changed
			// address does not change it.
			if rec.Issuer != e.idp.Issuer || rec.Subject != c.login.Subject || rec.ManagedAppleID != "alice@example.com" {
				t.Errorf("token %+v", rec)
			}
		})
	}
}
