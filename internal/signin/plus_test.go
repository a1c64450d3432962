package signin

import (
	"testing"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
)

// The device sends the typed identifier with '+' unescaped: it must not
// turn into a space (which would also break RequireIdentifierMatch).
func TestTypedIdentifierKeepsPlus(t *testing.T) {
	e := newEnv(t)
	e.web.Claims.RequireIdentifierMatch = true
	e.idp.Script(fakeidp.Login{Subject: "ab-sub", IDClaims: map[string]any{"email": "a+b@example.com", "email_verified": true}})
	_, rec := e.issued(e.signIn(enrollFlow, "a+b@example.com"))
	if rec.UserIdentifier != "a+b@example.com" || rec.ManagedAppleID != "a+b@example.com" {
		t.Fatalf("typed %q, Managed Apple ID %q", rec.UserIdentifier, rec.ManagedAppleID)
	}
}
