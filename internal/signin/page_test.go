package signin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
)

func TestPage(t *testing.T) {
	w := httptest.NewRecorder()
	Page(w, http.StatusForbidden, `<b>"Title"</b>`, `<img src=x onerror=alert(1)>`, "some_reason")
	wantPage(t, w, http.StatusForbidden, "some_reason")
	checkSecurityHeaders(t, "page", w.Header())
	body := w.Body.String()
	if strings.Contains(body, "<b>") || strings.Contains(body, "<img") {
		t.Errorf("title or message not escaped: %s", body)
	}
	if !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("message missing: %s", body)
	}
}

// Every test checks that no log line carries a code, verifier, token or
// the client secret (env.finalChecks). This one makes sure the failure
// paths that log provider errors do log them, so that check is not
// vacuous.
func TestFailuresAreLoggedWithoutSecrets(t *testing.T) {
	for name, c := range map[string]struct {
		script func(*fakeidp.Login)
		detail string
	}{
		"code rejected":    {func(l *fakeidp.Login) { l.TokenStatus, l.TokenError = 400, "invalid_grant" }, "invalid_grant"},
		"token endpoint":   {func(l *fakeidp.Login) { l.TokenStatus, l.TokenError = 500, "server_error" }, "token endpoint"},
		"bad ID token":     {func(l *fakeidp.Login) { l.IDClaims["nonce"] = "other" }, "nonce mismatch"},
		"forged signature": {func(l *fakeidp.Login) { l.SigningKey = fakeidp.OtherKey() }, "signature"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			l := alice()
			c.script(&l)
			e.idp.Script(l)
			w := e.signIn(enrollFlow, "alice@example.com")
			if w.Code < 400 {
				t.Fatalf("status %d", w.Code)
			}
			logged := e.logs.FilterMessage("sign-in failed").All()
			if len(logged) != 1 {
				t.Fatalf("%d 'sign-in failed' lines, want 1", len(logged))
			}
			m := logged[0].ContextMap()
			if errText, _ := m["error"].(string); !strings.Contains(errText, c.detail) {
				t.Errorf("logged error %q does not explain the failure (%q)", errText, c.detail)
			}
			if m["status"] != int64(w.Code) {
				t.Errorf("logged status %v, answered %d", m["status"], w.Code)
			}
		})
	}
}
