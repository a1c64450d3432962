package signin

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// due lets the family's last check at the provider age past
// RevalidateEvery.
func (e *env) due() { e.clock.Advance(token.DefaultRevalidateEvery) }

// wantRevoked asserts that the device's refresh was refused and the whole
// family revoked with reason.
func (e *env) wantRevoked(tr tokenResponse, reason string) {
	e.t.Helper()
	if f := e.familyOf(tr.RefreshToken); f.RevokedAt.IsZero() || f.RevokeReason != reason {
		e.t.Errorf("family revoked at %v for %q, want %q", f.RevokedAt, f.RevokeReason, reason)
	}
	if e.accessValid(tr.AccessToken) {
		e.t.Errorf("the family's access token survived the provider's refusal")
	}
}

// Without a refresh token from the provider re-validation cannot work: the
// sign-in fails loudly with a 502 page and no code.
func TestRevalidateNeedsProviderRefreshToken(t *testing.T) {
	for name, c := range map[string]struct {
		cfg    func(*OIDCConfig)
		script func(*fakeidp.Login)
	}{
		"provider ignores offline_access": {script: func(l *fakeidp.Login) { l.NoRefreshToken = true }},
		"offline_access not configured":   {cfg: func(c *OIDCConfig) { c.Scopes = []string{"openid", "email"} }},
	} {
		t.Run(name, func(t *testing.T) {
			var cfg []func(*OIDCConfig)
			if c.cfg != nil {
				cfg = append(cfg, c.cfg)
			}
			e := newOAuthEnv(t, true, cfg...)
			l := alice()
			if c.script != nil {
				c.script(&l)
			}
			e.idp.Script(l)
			e.refused(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), http.StatusBadGateway, "no_idp_refresh_token", 0)
			if n := len(e.st.codeList()); n != 0 {
				t.Errorf("%d codes stored", n)
			}
			logged := e.logs.FilterLevelExact(zap.ErrorLevel).All()
			if len(logged) != 1 || !strings.Contains(logged[0].Message, "offline_access") {
				t.Errorf("want one error log naming offline_access, got %v", logged)
			}
		})
	}
}

// The provider's refresh token is asked for, kept encrypted with the
// current key and bound to the user, carried from the code to the family,
// and used when a device refresh is due.
func TestRevalidateOnRefresh(t *testing.T) {
	e := newOAuthEnv(t, true)
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(enrollFlow, "alice@example.com")), deviceState)
	if az := e.idp.Authorizations(); !slices.Contains(strings.Fields(az[0].Get("scope")), "offline_access") {
		t.Errorf("scope %q: offline_access not asked for", az[0].Get("scope"))
	}
	live := e.idp.RefreshTokens("alice-sub")
	if len(live) != 1 {
		t.Fatalf("provider issued %d refresh tokens", len(live))
	}
	c := e.st.codeList()[0]
	if c.IdPKeyID != idpKeyID || len(c.IdPRefresh) == 0 || bytes.Contains(c.IdPRefresh, []byte(live[0])) {
		t.Fatalf("code keeps key %q, %d bytes, plaintext inside: %v", c.IdPKeyID, len(c.IdPRefresh), bytes.Contains(c.IdPRefresh, []byte(live[0])))
	}
	pt, err := e.web.OAuth2.Keyring.Open(c.IdPRefresh, c.IdPKeyID, aad(c.Issuer, c.Subject))
	if err != nil || string(pt) != live[0] {
		t.Fatalf("the kept token does not open to the provider's: %v", err)
	}
	if _, err := e.web.OAuth2.Keyring.Open(c.IdPRefresh, c.IdPKeyID, aad(c.Issuer, "bob-sub")); err == nil {
		t.Errorf("the kept token opens for another subject")
	}

	tr := e.tokensIssued(e.tokenReq(iosCodeBody(code)))
	f := e.familyOf(tr.RefreshToken)
	if e.keptIdPRefresh(f) != live[0] || !f.RevalidatedAt.Equal(e.clock.Now()) {
		t.Errorf("family keeps another provider token, or revalidated at %v", f.RevalidatedAt)
	}

	// Not due yet: the provider is not asked.
	e.clock.Advance(token.DefaultRevalidateEvery - time.Second)
	tr = e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	if n := e.idp.Refreshes(); n != 0 {
		t.Fatalf("provider refreshed %d times before re-validation was due", n)
	}
	// Due: one refresh at the provider, with the kept token.
	e.clock.Advance(time.Second)
	tr = e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	if n := e.idp.Refreshes(); n != 1 {
		t.Fatalf("provider refreshed %d times, want 1", n)
	}
	reqs := e.idp.TokenRequests()
	if last := reqs[len(reqs)-1]; last.Get("refresh_token") != live[0] || last.Has("redirect_uri") || last.Has("code") {
		t.Errorf("provider refresh request %v", maskSecrets(last.Encode(), live[0]))
	}
	f = e.familyOf(tr.RefreshToken)
	if !f.RevalidatedAt.Equal(e.clock.Now()) || !f.RevalidatingUntil.IsZero() || !f.RevokedAt.IsZero() {
		t.Errorf("family after re-validation: revalidated %v, lease %v, revoked %v", f.RevalidatedAt, f.RevalidatingUntil, f.RevokedAt)
	}
	if e.keptIdPRefresh(f) != live[0] {
		t.Errorf("a provider that does not rotate changed the kept token")
	}
	if n := len(e.logs.FilterMessage("identity provider re-validated the user").All()); n != 1 {
		t.Errorf("%d re-validation log lines, want 1", n)
	}
	// Just checked: the next refresh does not ask again.
	e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	if n := e.idp.Refreshes(); n != 1 {
		t.Errorf("provider refreshed %d times, want still 1", n)
	}
}

func maskSecrets(s string, secrets ...string) string {
	for _, x := range secrets {
		s = strings.ReplaceAll(s, x, "…")
	}
	return s
}

// A provider that rotates its refresh tokens: the new one is kept and used
// next time (using the old one again would be a violation at the
// provider).
func TestRevalidateProviderRotation(t *testing.T) {
	e := newOAuthEnv(t, true)
	e.idp.ScriptRefresh(fakeidp.Refresh{Rotate: true})
	tr := e.signInForTokens()
	first := e.idp.RefreshTokens("alice-sub")
	for i := range 3 {
		e.due()
		tr = e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
		live := e.idp.RefreshTokens("alice-sub")
		f := e.familyOf(tr.RefreshToken)
		if len(live) != 1 || live[0] == first[0] || e.keptIdPRefresh(f) != live[0] || f.IdPKeyID != idpKeyID {
			t.Fatalf("refresh %d: the family does not keep the provider's new refresh token", i)
		}
	}
	if n := e.idp.Refreshes(); n != 3 {
		t.Errorf("provider refreshed %d times, want 3", n)
	}
}

// The provider refusing the user ends the device's session: invalid_grant,
// the family and its access tokens revoked, the enrollment put in reauth,
// and the provider is not asked again.
func TestRevalidateRefusal(t *testing.T) {
	for name, refuse := range map[string]func(*env){
		"user disabled":                         func(e *env) { e.idp.DisableUser("alice-sub") },
		"invalid_grant":                         func(e *env) { e.idp.ScriptRefresh(fakeidp.Refresh{Status: 400, Error: "invalid_grant"}) },
		"another subject":                       func(e *env) { e.idp.ScriptRefresh(fakeidp.Refresh{Subject: "mallory-sub"}) },
		"refreshed ID token for another client": func(e *env) { e.idp.ScriptRefresh(fakeidp.Refresh{IDClaims: map[string]any{"aud": "another-client"}}) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, true)
			e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", "alice@example.com", "byod"))
			tr := e.signInForTokens()
			// The gateway binds the family to the enrollment on first use.
			if _, err := e.db.UpdateFamily(e.ctx, e.familyOf(tr.RefreshToken).ID, func(f *store.Family) error {
				f.EnrollmentID = reauthFlow.EnrollmentID
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			refuse(e)
			e.due()
			wantTokenError(t, e.tokenReq(iosRefreshBody(tr.RefreshToken)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
			e.wantRevoked(tr, "idp_refused")
			if en, err := e.db.Enrollment(e.ctx, reauthFlow.EnrollmentID); err != nil || en.State != store.StateReauth {
				t.Errorf("enrollment after the refusal: %+v, %v", en, err)
			}
			n := e.idp.Refreshes()
			e.due()
			wantTokenError(t, e.tokenReq(iosRefreshBody(tr.RefreshToken)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
			if e.idp.Refreshes() != n {
				t.Errorf("a revoked family asked the provider again")
			}
			if logged := e.logs.FilterMessage("identity provider refused the user").All(); len(logged) != 1 {
				t.Errorf("refusal log: %v", logged)
			}
		})
	}
}

// The provider being unreachable postpones the check: the device gets its
// tokens, and the next refresh asks again.
func TestRevalidateOutage(t *testing.T) {
	for name, c := range map[string]struct {
		down    func(*env)
		up      func(*env)
		closeIt bool
	}{
		"token endpoint 503": {
			down: func(e *env) { e.idp.SetDown(fakeidp.Token, http.StatusServiceUnavailable) },
			up:   func(e *env) { e.idp.SetDown(fakeidp.Token, 0) },
		},
		"server_error": {
			down: func(e *env) { e.idp.ScriptRefresh(fakeidp.Refresh{Status: 500, Error: "server_error"}) },
			up:   func(e *env) { e.idp.ScriptRefresh(fakeidp.Refresh{}) },
		},
		"connection refused": {closeIt: true},
	} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, true)
			tr := e.signInForTokens()
			e.due()
			if c.closeIt {
				e.idp.Close()
			} else {
				c.down(e)
			}
			signedIn := e.familyOf(tr.RefreshToken).RevalidatedAt
			tr = e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
			f := e.familyOf(tr.RefreshToken)
			if !f.RevokedAt.IsZero() || !f.RevalidatedAt.Equal(signedIn) || !f.RevalidatingUntil.IsZero() {
				t.Errorf("family after an outage: revoked %v, revalidated %v (want %v), lease %v", f.RevokedAt, f.RevalidatedAt, signedIn, f.RevalidatingUntil)
			}
			if n := len(e.logs.FilterMessage("identity provider re-validation postponed").All()); n != 1 {
				t.Errorf("%d postponement log lines, want 1", n)
			}
			if c.closeIt {
				return
			}
			before := e.idp.Refreshes()
			c.up(e)
			e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
			if e.idp.Refreshes() != before+1 {
				t.Errorf("the refresh after the outage did not ask the provider")
			}
		})
	}
}

// With claim requirements the refreshed claims are checked again: from
// the refreshed ID token, or from UserInfo when there is none.
func TestRevalidateRequireClaims(t *testing.T) {
	for name, c := range map[string]struct {
		refresh   fakeidp.Refresh
		userinfo  int // UserInfo status (0: up)
		ok        bool
		postponed bool
	}{
		"still a member":                 {fakeidp.Refresh{}, 0, true, false},
		"removed from the group":         {fakeidp.Refresh{IDClaims: map[string]any{"groups": []string{"staff"}}}, 0, false, false},
		"group claim gone":               {fakeidp.Refresh{IDClaims: map[string]any{"groups": nil}, UserInfoClaims: map[string]any{}}, 0, false, false},
		"no ID token, UserInfo member":   {fakeidp.Refresh{NoIDToken: true, UserInfoClaims: map[string]any{"groups": []string{"mdm-users"}}}, 0, true, false},
		"no ID token, UserInfo removed":  {fakeidp.Refresh{NoIDToken: true, UserInfoClaims: map[string]any{"groups": []string{"staff"}}}, 0, false, false},
		"no ID token, UserInfo silent":   {fakeidp.Refresh{NoIDToken: true}, 0, false, false},
		"no ID token, UserInfo down":     {fakeidp.Refresh{NoIDToken: true}, http.StatusServiceUnavailable, true, true},
		"no ID token, UserInfo 401":      {fakeidp.Refresh{NoIDToken: true}, http.StatusUnauthorized, true, true},
		"UserInfo names another subject": {fakeidp.Refresh{NoIDToken: true, UserInfoClaims: map[string]any{"sub": "mallory-sub", "groups": []string{"mdm-users"}}}, 0, false, false},
	} {
		t.Run(name, func(t *testing.T) {
			e := newOAuthEnv(t, true)
			e.web.Require = []ClaimRequirement{{Claim: "groups", Values: []string{"mdm-users"}}}
			l := alice()
			l.IDClaims["groups"] = []string{"staff", "mdm-users"}
			e.idp.Script(l)
			tr := e.signInForTokens()
			e.idp.ScriptRefresh(c.refresh)
			if c.userinfo != 0 {
				e.idp.SetDown(fakeidp.UserInfo, c.userinfo)
			}
			e.due()
			w := e.tokenReq(iosRefreshBody(tr.RefreshToken))
			if !c.ok {
				wantTokenError(t, w, http.StatusBadRequest, token.ErrCodeInvalidGrant)
				e.wantRevoked(tr, "idp_refused")
				return
			}
			tr2 := e.tokensIssued(w)
			f := e.familyOf(tr2.RefreshToken)
			if c.postponed != f.RevalidatedAt.Before(e.clock.Now()) {
				t.Errorf("revalidated at %v (now %v), postponed want %v", f.RevalidatedAt, e.clock.Now(), c.postponed)
			}
			if e.idp.Refreshes() != 1 {
				t.Errorf("provider refreshed %d times", e.idp.Refreshes())
			}
		})
	}
}

// Refreshes racing for the same family ask the provider once: a rotating
// provider refresh token is never used twice, and every device request
// gets the same pair.
func TestRevalidateConcurrentRefreshes(t *testing.T) {
	e := newOAuthEnv(t, true)
	e.idp.ScriptRefresh(fakeidp.Refresh{Rotate: true})
	tr := e.signInForTokens()
	e.due()
	const n = 8
	answers := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = e.tokenReq(iosRefreshBody(tr.RefreshToken)) })
	}
	wg.Wait()
	first := e.tokensIssued(answers[0])
	for i, w := range answers[1:] {
		if got := e.tokensIssued(w); got != first {
			t.Errorf("refresh %d got another pair", i+1)
		}
	}
	if r := e.idp.Refreshes(); r != 1 {
		t.Errorf("provider refreshed %d times, want 1", r)
	}
	f := e.familyOf(tr.RefreshToken)
	if live := e.idp.RefreshTokens("alice-sub"); len(live) != 1 || e.keptIdPRefresh(f) != live[0] {
		t.Errorf("the family does not keep the provider's current refresh token")
	}
}

// A new current key encrypts from now on; tokens kept under the old key
// still open while it stays in the keyring. A token whose key is gone, or
// that belongs to another user, cannot be used: the device must sign in
// again.
func TestRevalidateKeyRotation(t *testing.T) {
	e := newOAuthEnv(t, true)
	e.idp.ScriptRefresh(fakeidp.Refresh{Rotate: true})
	tr := e.signInForTokens()
	k2 := bytes.Repeat([]byte{0x6b}, 32)
	e.secret(base64.StdEncoding.EncodeToString(k2))
	kr, err := ParseKeyring("k2:" + base64.StdEncoding.EncodeToString(k2) + ",k1:" + base64.StdEncoding.EncodeToString(idpKey))
	if err != nil {
		t.Fatal(err)
	}
	e.web.OAuth2.Keyring = kr
	e.due()
	tr = e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	f := e.familyOf(tr.RefreshToken)
	if f.IdPKeyID != "k2" || e.keptIdPRefresh(f) != e.idp.RefreshTokens("alice-sub")[0] {
		t.Fatalf("the rotated provider token is kept under key %q", f.IdPKeyID)
	}

	// k1 retired: k2 tokens still work.
	only2, err := NewKeyring("k2", k2)
	if err != nil {
		t.Fatal(err)
	}
	e.web.OAuth2.Keyring = only2
	e.due()
	tr = e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))

	// k2 lost: the kept token cannot be opened.
	e.web.OAuth2.Keyring, _ = NewKeyring("k3", bytes.Repeat([]byte{0x33}, 32))
	e.due()
	wantTokenError(t, e.tokenReq(iosRefreshBody(tr.RefreshToken)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
	e.wantRevoked(tr, "idp_refused")
	if logged := e.logs.FilterMessage("cannot decrypt the kept provider refresh token").All(); len(logged) != 1 || logged[0].ContextMap()["key_id"] != "k2" {
		t.Errorf("undecryptable token log: %v", logged)
	}
}

// The kept token is bound to its user: moved into another user's family
// it does not open.
func TestRevalidateTokenBoundToUser(t *testing.T) {
	e := newOAuthEnv(t, true)
	alices := e.signInForTokens()
	e.idp.Script(fakeidp.Login{Subject: "bob-sub", IDClaims: map[string]any{"email": "bob@example.com", "email_verified": true}})
	bobs := e.signInForTokens()
	af := e.familyOf(alices.RefreshToken)
	if _, err := e.db.UpdateFamily(e.ctx, e.familyOf(bobs.RefreshToken).ID, func(f *store.Family) error {
		f.IdPRefresh, f.IdPKeyID = af.IdPRefresh, af.IdPKeyID
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.due()
	wantTokenError(t, e.tokenReq(iosRefreshBody(bobs.RefreshToken)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
	e.tokensIssued(e.tokenReq(iosRefreshBody(alices.RefreshToken)))
	if n := e.idp.Refreshes(); n != 1 {
		t.Errorf("provider refreshed %d times, want 1 (alice only)", n)
	}
}

// Families from before re-validation was turned on keep no provider token:
// their next due refresh needs a new sign-in.
func TestRevalidateFamilyWithoutProviderToken(t *testing.T) {
	e := newOAuthEnv(t, false)
	tr := e.signInForTokens()
	kr, err := NewKeyring(idpKeyID, idpKey)
	if err != nil {
		t.Fatal(err)
	}
	e.web.OAuth2.Revalidate, e.web.OAuth2.Keyring = true, kr
	e.web.OAuth2.Tokens.Revalidate = e.web.Revalidator()
	e.due()
	wantTokenError(t, e.tokenReq(iosRefreshBody(tr.RefreshToken)), http.StatusBadRequest, token.ErrCodeInvalidGrant)
	e.wantRevoked(tr, "idp_refused")
	if e.idp.Refreshes() != 0 {
		t.Errorf("the provider was asked without a token")
	}
}
