package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/esso"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/ratelimit"
	"github.com/mdmauth/mdmauth/internal/signin"
)

// TestNoStore drives every answer that carries a credential or the state
// of a sign-in, and the refusals of the same endpoints, and checks that
// each forbids caching (Cache-Control: no-store). The token endpoint's
// answers, success and error alike, also carry Pragma: no-cache (RFC 6749
// sections 5.1 and 5.2), and so do the sign-in's pages and redirects.
func TestNoStore(t *testing.T) {
	e := newEndpointsEnv(t)
	// One refresh per family and hour, to reach the token endpoint's 429.
	e.gw.SetLimits(gateway.Limits{TokenPerFamily: ratelimit.Rate{Events: 1, Per: time.Hour, Burst: 1}})
	start := func(t *testing.T, u string) *httptest.ResponseRecorder {
		return e.mustServe(httptest.NewRequest(http.MethodGet, u, nil), failNext(t))
	}
	tokenReq := func(t *testing.T, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, origin+tokenPath, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return e.mustServe(r, failNext(t))
	}
	codeBody := func(code string) string {
		return "grant_type=authorization_code&code=" + code + "&redirect_uri=" + signin.DefaultRedirectURL + "&client_id=mdmauth"
	}
	refreshBody := func(t *testing.T) string {
		pair, err := e.oauth.Exchange(e.ctx, e.newCode(), "mdmauth", signin.DefaultRedirectURL, "")
		if err != nil {
			t.Fatal(err)
		}
		return "grant_type=refresh_token&refresh_token=" + pair.RefreshToken + "&client_id=mdmauth"
	}
	// location checks that a redirect goes where it should with what it
	// should carry.
	location := func(prefix, param string) func(*testing.T, *httptest.ResponseRecorder) {
		return func(t *testing.T, w *httptest.ResponseRecorder) {
			loc := w.Header().Get("Location")
			u, err := url.Parse(loc)
			if err != nil || !strings.HasPrefix(loc, prefix) || u.Query().Get(param) == "" {
				t.Errorf("Location %q, want %s… with %s", loc, prefix, param)
			}
		}
	}

	tests := []struct {
		name   string
		do     func(t *testing.T) *httptest.ResponseRecorder
		status int
		pragma bool
		check  func(*testing.T, *httptest.ResponseRecorder)
	}{
		{"web sign-in start: redirect to the provider with the login cookie", func(t *testing.T) *httptest.ResponseRecorder {
			return start(t, e.webStartURL())
		}, http.StatusFound, true, func(t *testing.T, w *httptest.ResponseRecorder) {
			location(e.idp.srv.URL, "state")(t, w)
			if len(w.Result().Cookies()) == 0 {
				t.Error("no login cookie")
			}
		}},
		{"web sign-in start: forged link", func(t *testing.T) *httptest.ResponseRecorder {
			return start(t, origin+signInPath+"forged.value")
		}, http.StatusNotFound, true, nil},
		{"web sign-in start: query too long", func(t *testing.T) *httptest.ResponseRecorder {
			return start(t, e.webStartURL()+"&pad="+strings.Repeat("p", 8192))
		}, http.StatusRequestURITooLong, true, nil},
		{"callback: 308 with the access token", func(t *testing.T) *httptest.ResponseRecorder {
			return e.mustServe(e.callbackFor(start(t, e.webStartURL()), ""), failNext(t))
		}, http.StatusPermanentRedirect, true, location("apple-remotemanagement-user-login://authentication-results", "access-token")},
		{"callback: unknown state", func(t *testing.T) *httptest.ResponseRecorder {
			return start(t, origin+"/mdmauth/oidc/callback?state=unknown&code=c1")
		}, http.StatusBadRequest, true, nil},
		{"callback: another browser", func(t *testing.T) *httptest.ResponseRecorder {
			r := e.callbackFor(start(t, e.webStartURL()), "")
			r.Header.Del("Cookie")
			return e.mustServe(r, failNext(t))
		}, http.StatusBadRequest, true, nil},
		{"callback: the provider's error", func(t *testing.T) *httptest.ResponseRecorder {
			r := e.callbackFor(start(t, e.webStartURL()), "&error=access_denied")
			return e.mustServe(r, failNext(t))
		}, http.StatusForbidden, true, nil},
		{"OAuth 2 authorization: redirect to the provider", func(t *testing.T) *httptest.ResponseRecorder {
			return start(t, e.authorizeURL())
		}, http.StatusFound, true, location(e.idp.srv.URL, "state")},
		{"OAuth 2 authorization: unknown client", func(t *testing.T) *httptest.ResponseRecorder {
			return start(t, strings.Replace(e.authorizeURL(), "client_id=mdmauth", "client_id=other", 1))
		}, http.StatusBadRequest, true, nil},
		{"OAuth 2 callback: 308 with the code", func(t *testing.T) *httptest.ResponseRecorder {
			return e.mustServe(e.callbackFor(start(t, e.authorizeURL()), ""), failNext(t))
		}, http.StatusPermanentRedirect, true, location(signin.DefaultRedirectURL, "code")},
		{"token endpoint: code exchanged", func(t *testing.T) *httptest.ResponseRecorder {
			return tokenReq(t, codeBody(e.newCode()))
		}, http.StatusOK, true, nil},
		{"token endpoint: refresh", func(t *testing.T) *httptest.ResponseRecorder {
			return tokenReq(t, refreshBody(t))
		}, http.StatusOK, true, nil},
		{"token endpoint: unknown code", func(t *testing.T) *httptest.ResponseRecorder {
			return tokenReq(t, codeBody("dgOlRa30ONgF-OOA-t590SA5bIqQuejZHJRVwsM3MtY"))
		}, http.StatusBadRequest, true, nil},
		{"token endpoint: code replayed", func(t *testing.T) *httptest.ResponseRecorder {
			code := e.newCode()
			if w := tokenReq(t, codeBody(code)); w.Code != http.StatusOK {
				t.Fatalf("first redemption: %d %s", w.Code, w.Body)
			}
			return tokenReq(t, codeBody(code))
		}, http.StatusBadRequest, true, nil},
		{"token endpoint: unknown client", func(t *testing.T) *httptest.ResponseRecorder {
			return tokenReq(t, strings.Replace(codeBody(e.newCode()), "client_id=mdmauth", "client_id=other", 1))
		}, http.StatusUnauthorized, true, nil},
		{"token endpoint: GET", func(t *testing.T) *httptest.ResponseRecorder {
			return start(t, origin+tokenPath)
		}, http.StatusMethodNotAllowed, true, nil},
		{"token endpoint: not a form", func(t *testing.T) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, origin+tokenPath, strings.NewReader(`{"grant_type":"refresh_token"}`))
			r.Header.Set("Content-Type", "application/json")
			return e.mustServe(r, failNext(t))
		}, http.StatusBadRequest, true, nil},
		{"token endpoint: body too large", func(t *testing.T) *httptest.ResponseRecorder {
			return tokenReq(t, codeBody(e.newCode())+"&pad="+strings.Repeat("p", 16<<10))
		}, http.StatusRequestEntityTooLarge, true, nil},
		{"token endpoint: too many refreshes of a family", func(t *testing.T) *httptest.ResponseRecorder {
			body := refreshBody(t)
			if w := tokenReq(t, body); w.Code != http.StatusOK {
				t.Fatalf("first refresh: %d %s", w.Code, w.Body)
			}
			return tokenReq(t, body)
		}, http.StatusTooManyRequests, true, nil},
		{"enrollment: the profile", func(t *testing.T) *httptest.ResponseRecorder {
			raw, _ := e.issue(grant("byod"))
			return e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), raw), failNext(t))
		}, http.StatusOK, false, func(t *testing.T, w *httptest.ResponseRecorder) {
			if ct := w.Header().Get("Content-Type"); ct != "application/x-apple-aspen-config" {
				t.Errorf("Content-Type %q, want the profile", ct)
			}
		}},
		{"enrollment: challenge with Enrollment SSO", func(t *testing.T) *httptest.ResponseRecorder {
			return e.mustServe(enrollRequest("byod", "model-family=iPhone", fixture(t, "enroll/iphone-signed.der"), ""), failNext(t))
		}, http.StatusUnauthorized, false, func(t *testing.T, w *httptest.ResponseRecorder) {
			e.oauth2Challenge(w)
			if w.Header().Get(esso.Header) == "" {
				t.Errorf("no %s header", esso.Header)
			}
		}},
		{"enrollment: refused, token of another mode", func(t *testing.T) *httptest.ResponseRecorder {
			raw, _ := e.issue(grant("byod"))
			return e.mustServe(enrollRequest("adde", "model-family=Mac", nil, raw), failNext(t))
		}, http.StatusForbidden, false, nil},
		{"protected MDM request: challenge", func(t *testing.T) *httptest.ResponseRecorder {
			return e.mustServe(mdmRequest(fixture(t, "checkin/ue-tokenupdate.plist"), "unknown-token"), failNext(t))
		}, http.StatusUnauthorized, false, func(t *testing.T, w *httptest.ResponseRecorder) {
			e.oauth2Challenge(w)
		}},
		{"Enrollment SSO document", func(t *testing.T) *httptest.ResponseRecorder {
			return start(t, origin+essoPath)
		}, http.StatusOK, false, nil},
		{"admin API: backup, the store's secrets included", func(t *testing.T) *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			e.admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://localhost:2019"+admin.DefaultPrefix+"backup", nil))
			return w
		}, http.StatusOK, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.do(t)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %.200q", w.Code, tt.status, w.Body)
			}
			if tt.check != nil {
				tt.check(t, w)
			}
			cc := w.Result().Header.Values("Cache-Control")
			if len(cc) != 1 || !cacheDirective(cc[0], "no-store") {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if got := w.Header().Get("Pragma"); tt.pragma && got != "no-cache" {
				t.Errorf("Pragma %q, want no-cache", got)
			}
		})
	}
}

// cacheDirective reports whether the Cache-Control value v has directive d.
func cacheDirective(v, d string) bool {
	for _, part := range strings.Split(v, ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(part), "="); strings.EqualFold(name, d) {
			return true
		}
	}
	return false
}
