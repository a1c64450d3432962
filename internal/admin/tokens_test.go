package admin_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/token"
)

// tokenPages follows next_cursor from path and returns every token id and
// the number of pages.
func (e *env) tokenPages(path string) ([]string, int) {
	e.t.Helper()
	return followPages(e, path, func(list *admin.TokenList) ([]string, string) {
		var ids []string
		for _, tk := range list.Tokens {
			ids = append(ids, tk.TokenID)
		}
		return ids, list.NextCursor
	})
}

func TestListTokens(t *testing.T) {
	e := newEnv(t)
	var aliceIDs, adde, all []string
	for i := 0; i < 120; i++ {
		user, mode := "alice", "byod"
		if i%2 == 1 {
			user = "bob"
		}
		if i%4 == 1 {
			mode = "adde"
		}
		_, tk := e.issue(grant(user, mode))
		all = append(all, tk.Hash.ID())
		if user == "alice" {
			aliceIDs = append(aliceIDs, tk.Hash.ID())
		}
		if mode == "adde" {
			adde = append(adde, tk.Hash.ID())
		}
	}
	bound := e.enroll("carol", "byod", "C-1")
	all = append(all, e.tokenID(bound))
	// One dead token: live=true leaves it out.
	e.clock.Advance(time.Minute)
	if err := e.tokens.Revoke(e.ctx, token.HashOf(bound)); err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]string{aliceIDs, adde, all} {
		slices.Sort(s)
	}
	live := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == e.tokenID(bound) })

	tests := []struct {
		name, query string
		want        []string
		pages       int
	}{
		{"all", "limit=50", all, 3},
		{"user", "iss=" + url.QueryEscape(issuer) + "&sub=sub-alice&limit=25", aliceIDs, 3},
		{"mode", "mode=adde&limit=1000", adde, 1},
		{"managed apple id", "managed_apple_id=Carol@Example.com&limit=10", []string{e.tokenID(bound)}, 1},
		{"enrollment", "enrollment_id=C-1&limit=10", []string{e.tokenID(bound)}, 1},
		{"live", "live=true&limit=100", live, 2},
		{"dead", "live=false&limit=100", []string{e.tokenID(bound)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pages := e.tokenPages("/mdm_auth/tokens?" + tt.query)
			if !slices.Equal(got, tt.want) || pages != tt.pages {
				t.Errorf("%d tokens in %d pages, want %d in %d", len(got), pages, len(tt.want), tt.pages)
			}
		})
	}
	var page admin.TokenList
	e.call("GET", "/mdm_auth/tokens?limit=1", "", http.StatusOK, &page)
	if len(page.NextCursor) > 24 {
		t.Errorf("cursor %q is longer than a token id could make it", page.NextCursor)
	}
	for _, q := range []string{"live=yes", "limit=0", "iss=x", "cursor=ZQ", "token=abc"} {
		if code, _, b := e.do("GET", "/mdm_auth/tokens?"+q, ""); code != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, code, b)
		}
	}
}

func TestShowAndRevokeToken(t *testing.T) {
	e := newEnv(t)
	web := e.enroll("alice", "byod", "UE-1")
	id := e.tokenID(web)

	var d admin.TokenDetail
	e.call("GET", "/mdm_auth/tokens/"+strings.ToUpper(id), "", http.StatusOK, &d)
	if d.Token.TokenID != id || d.Token.State != admin.TokenLive || d.Token.EnrollmentID != "UE-1" || d.Family != nil {
		t.Errorf("token %+v family %+v", d.Token, d.Family)
	}
	e.call("GET", "/mdm_auth/tokens/0123456789abcdef01234567", "", http.StatusNotFound, nil)
	for _, bad := range []string{"xyz", "0123", strings.Repeat("a", 64)} {
		e.call("GET", "/mdm_auth/tokens/"+bad, "", http.StatusBadRequest, nil)
		e.call("POST", "/mdm_auth/tokens/"+bad+"/revoke", "", http.StatusBadRequest, nil)
	}

	var res admin.RevokeResult
	e.call("POST", "/mdm_auth/tokens/"+id+"/revoke", "", http.StatusOK, &res)
	if res.Token.State != admin.TokenRevoked || res.Tokens != 1 {
		t.Errorf("revoke: %+v", res)
	}
	if dec := e.mdm(web, "UE-1"); dec.Allow || dec.Reason != token.ReasonRevoked {
		t.Errorf("next request: %v %s, want refused as revoked", dec.Allow, dec.Reason)
	}
	e.call("POST", "/mdm_auth/tokens/"+id+"/revoke", "", http.StatusOK, &res)
	if res.Tokens != 0 || res.Families != 0 {
		t.Errorf("revoking again counted %+v", res)
	}

	// An OAuth 2 token: its family goes with it, or a refresh would undo
	// the revocation.
	p := e.signInOAuth(grant("bob", "byod"), "")
	e.mdm(p.AccessToken, "UE-2")
	e.clock.Advance(time.Minute)
	next, err := e.oauth.Refresh(e.ctx, p.RefreshToken, client)
	if err != nil {
		t.Fatal(err)
	}
	e.secret(next.AccessToken, next.RefreshToken)
	e.hashSecret(next.Access.Hash)
	e.call("POST", "/mdm_auth/tokens/"+p.Access.Hash.ID()+"/revoke", "", http.StatusOK, &res)
	if res.Family == nil || res.Family.State != admin.TokenRevoked || res.Families != 1 || res.Tokens != 2 {
		t.Errorf("revoke of an OAuth 2 token: %+v family %+v", res, res.Family)
	}
	if _, err := e.oauth.Refresh(e.ctx, next.RefreshToken, client); err == nil {
		t.Error("the family refreshes after its token was revoked")
	}
	if dec := e.mdm(next.AccessToken, "UE-2"); dec.Allow {
		t.Error("the family's newer access token still passes")
	}
	entries := e.logs.FilterField(zap.String("event", audit.AdminTokenRevoked)).All()
	if len(entries) != 3 {
		t.Fatalf("%d token revocation entries, want 3", len(entries))
	}
	if m := entries[2].ContextMap(); m["token_id"] != p.Access.Hash.ID() || m["family_id"] != p.Family.ID || m["client_ip"] != "127.0.0.1" {
		t.Errorf("audit entry %v", m)
	}
}
