package gateway_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// CheckOut cannot handle a 401, so it passes with the enrollment's own
// token even once expired or revoked. That exception must not widen: an
// expired token does nothing else, and it checks out only its own
// enrollment, never another user's.
func TestCheckOutAbuse(t *testing.T) {
	e := newEnv(t)
	alice, aliceHash := e.issue(grant("byod"))
	e.bind(alice, fixture(t, "checkin/ue-authenticate.plist"))
	bg := grant("adde")
	bg.Subject, bg.UserIdentifier, bg.ManagedAppleID = "sub-bob", "bob@example.com", "bob@example.com"
	bob, _ := e.issue(bg)
	bobUpdate := fixture(t, "checkin/adde-iphone-tokenupdate.plist")
	e.bind(bob, bobUpdate)
	bobCheckOut := bytes.Replace(bobUpdate, []byte("<string>TokenUpdate</string>"), []byte("<string>CheckOut</string>"), 1)
	if bytes.Equal(bobCheckOut, bobUpdate) {
		t.Fatal("could not build Bob's CheckOut")
	}
	e.clock.Advance(tokenTTL + time.Hour) // both tokens expired

	// Alice's expired token: every message but CheckOut is challenged.
	for _, msg := range []string{"ue-authenticate.plist", "ue-tokenupdate.plist", "ue-idle.plist"} {
		w := e.mustServe(mdmRequest(fixture(t, "checkin/"+msg), alice), failNext(t))
		e.challengeFlow(w, origin)
	}
	// Alice's expired token cannot check out Bob's enrollment, nor can a
	// live token of another user.
	fresh, _ := e.issue(grant("byod"))
	for name, bearer := range map[string]string{"expired token of another user": alice, "live token of another user": fresh} {
		w := e.mustServe(mdmRequest(bobCheckOut, bearer), failNext(t))
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("%s checking out Bob: status %d, want 401", name, w.Code)
		}
	}
	if en := e.enrollment(addeIPhoneUDID); en == nil || en.State != store.StateActive {
		t.Fatalf("Bob's enrollment after the attempts: %+v, want active", en)
	}
	// Without any token, CheckOut of a bound enrollment is challenged too.
	w := e.mustServe(mdmRequest(bobCheckOut, ""), failNext(t))
	e.challengeFlow(w, origin)

	// Alice's own CheckOut passes, once, and only if the MDM took it.
	n := &recNext{status: http.StatusInternalServerError}
	e.mustServe(mdmRequest(fixture(t, "checkin/ue-checkout.plist"), alice), n.serve)
	if en := e.enrollment(ueID); en.State != store.StateActive {
		t.Fatalf("a CheckOut the MDM refused changed the enrollment to %s", en.State)
	}
	n = &recNext{status: http.StatusOK}
	e.mustServe(mdmRequest(fixture(t, "checkin/ue-checkout.plist"), alice), n.serve)
	if en := e.enrollment(ueID); en.State != store.StateRemoved || e.storedToken(aliceHash).RevokedAt.IsZero() {
		t.Fatalf("after Alice's CheckOut: state %s, token revoked %v", en.State, !e.storedToken(aliceHash).RevokedAt.IsZero())
	}
	// After it, the token does nothing, CheckOut included.
	w = e.mustServe(mdmRequest(fixture(t, "checkin/ue-checkout.plist"), alice), failNext(t))
	if w.Code/100 == 2 {
		t.Fatalf("a second CheckOut with the spent token: status %d", w.Code)
	}
}
