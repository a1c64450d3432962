package admin_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// seedMany stores n enrollments: alice owns the even ones, bob the odd
// ones; every third is adde; every fifth is blocked.
func seedMany(e *env, n int) {
	for i := 0; i < n; i++ {
		user := []string{"alice", "bob"}[i%2]
		mode := "byod"
		if i%3 == 0 {
			mode = "adde"
		}
		st := store.StateActive
		if i%5 == 0 {
			st = store.StateBlocked
		}
		e.put(&store.Enrollment{ID: fmt.Sprintf("ENR-%04d", i), Issuer: issuer, Subject: "sub-" + user,
			ManagedAppleID: user + "@example.com", Mode: mode, State: st})
	}
}

// pages follows next_cursor from path and returns every enrollment id and
// the number of pages.
func (e *env) pages(path string) ([]string, int) {
	e.t.Helper()
	return followPages(e, path, func(list *admin.EnrollmentList) ([]string, string) {
		var ids []string
		for _, en := range list.Enrollments {
			ids = append(ids, en.ID)
		}
		return ids, list.NextCursor
	})
}

func TestListEnrollmentsPaginatesAndFilters(t *testing.T) {
	e := newEnv(t)
	seedMany(e, 250)

	var first admin.EnrollmentList
	e.call("GET", "/mdm_auth/enrollments", "", http.StatusOK, &first)
	if len(first.Enrollments) != admin.DefaultLimit || first.NextCursor == "" {
		t.Fatalf("default page: %d enrollments, cursor %q; want %d and a cursor", len(first.Enrollments), first.NextCursor, admin.DefaultLimit)
	}
	if strings.Contains(first.NextCursor, "ENR-") {
		t.Errorf("cursor %q is not opaque", first.NextCursor)
	}

	tests := []struct {
		name      string
		query     string
		want      func(i int) bool
		wantPages int
	}{
		{"all, pages of 100", "limit=100", func(int) bool { return true }, 3},
		{"all, pages of 1000", "limit=1000", func(int) bool { return true }, 1},
		{"mode", "mode=adde&limit=30", func(i int) bool { return i%3 == 0 }, 3},
		{"state", "state=blocked&limit=20", func(i int) bool { return i%5 == 0 }, 3},
		{"managed apple id, any case", "managed_apple_id=BOB@example.com&limit=60", func(i int) bool { return i%2 == 1 }, 3},
		{"user", "iss=" + url.QueryEscape(issuer) + "&sub=sub-alice&limit=50", func(i int) bool { return i%2 == 0 }, 3},
		{"user and state", "iss=" + url.QueryEscape(issuer) + "&sub=sub-alice&state=blocked&limit=10", func(i int) bool { return i%10 == 0 }, 3},
		{"filters combined", "mode=adde&state=active&managed_apple_id=alice@example.com&limit=1000", func(i int) bool { return i%2 == 0 && i%3 == 0 && i%5 != 0 }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pages := e.pages("/mdm_auth/enrollments?" + tt.query)
			var want []string
			for i := 0; i < 250; i++ {
				if tt.want(i) {
					want = append(want, fmt.Sprintf("ENR-%04d", i))
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %d enrollments %v…, want %d %v…", len(got), head(got), len(want), head(want))
			}
			if pages != tt.wantPages {
				t.Errorf("%d pages, want %d", pages, tt.wantPages)
			}
		})
	}
	var none admin.EnrollmentList
	e.call("GET", "/mdm_auth/enrollments?iss=https://other&sub=x", "", http.StatusOK, &none)
	if len(none.Enrollments) != 0 || none.NextCursor != "" || !strings.Contains(string(e.call("GET", "/mdm_auth/enrollments?state=reauth", "", 200, nil)), `"enrollments":[]`) {
		t.Errorf("an empty list: %+v", none)
	}
}

func head(s []string) []string {
	if len(s) > 3 {
		return s[:3]
	}
	return s
}

func TestListEnrollmentsBadRequests(t *testing.T) {
	e := newEnv(t)
	seedMany(e, 3)
	var tokens admin.TokenList
	e.issue(grant("alice", "byod"))
	e.issue(grant("alice", "byod"))
	e.call("GET", "/mdm_auth/tokens?limit=1", "", http.StatusOK, &tokens)
	for _, q := range []string{
		"limit=0", "limit=1001", "limit=ten", "mode=mdm", "state=gone", "iss=" + issuer, "sub=sub-alice",
		"user=alice", "cursor=%%%", "cursor=not-base64!", "cursor=" + tokens.NextCursor, "limit=5&limit=6",
	} {
		if code, _, b := e.do("GET", "/mdm_auth/enrollments?"+q, ""); code != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, code, b)
		}
	}
}

func TestShowEnrollment(t *testing.T) {
	e := newEnv(t)
	old := e.enroll("alice", "byod", "UE-1")
	cur := e.enroll("alice", "byod", "UE-1") // re-bound: the old one is revoked
	p := e.signInOAuth(grant("alice", "byod"), "UE-1")
	if d := e.mdm(p.AccessToken, "UE-1"); !d.Allow {
		t.Fatal(d.Reason)
	}
	e.enroll("bob", "adde", "DE-2")

	var d admin.EnrollmentDetail
	e.call("GET", "/mdm_auth/enrollments/UE-1", "", http.StatusOK, &d)
	en := e.enrollment("UE-1")
	if d.Enrollment.ID != "UE-1" || d.Enrollment.State != store.StateActive || d.Enrollment.Subject != "sub-alice" ||
		d.Enrollment.ManagedAppleID != "alice@example.com" || d.Enrollment.Mode != "byod" || d.Enrollment.TokenID != en.TokenHash.ID() {
		t.Errorf("enrollment %+v", d.Enrollment)
	}
	states := map[string]string{}
	for _, tk := range d.Tokens {
		states[tk.TokenID] = tk.State
		if tk.EnrollmentID != "UE-1" || len(tk.TokenID) != 24 {
			t.Errorf("token %+v", tk)
		}
	}
	want := map[string]string{
		e.tokenID(old): admin.TokenRevoked, e.tokenID(cur): admin.TokenRevoked, p.Access.Hash.ID(): admin.TokenLive,
	}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("tokens %v, want %v", states, want)
	}
	if len(d.Families) != 1 || d.Families[0].FamilyID != p.Family.ID || d.Families[0].State != admin.TokenLive ||
		!d.Families[0].IdPRefreshKept || d.Families[0].EnrollmentID != "UE-1" {
		t.Errorf("families %+v", d.Families)
	}

	e.call("GET", "/mdm_auth/enrollments/NOPE", "", http.StatusNotFound, nil)
	// An id with a slash, escaped.
	e.put(&store.Enrollment{ID: "odd/id", State: store.StateActive})
	e.call("GET", "/mdm_auth/enrollments/odd%2Fid", "", http.StatusOK, &d)
	if d.Enrollment.ID != "odd/id" {
		t.Errorf("escaped id: %+v", d.Enrollment)
	}
}

// tokenID is the id of a raw token.
func (e *env) tokenID(raw string) string {
	return token.HashOf(raw).ID()
}
