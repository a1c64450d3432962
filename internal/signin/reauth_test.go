package signin

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
	"github.com/mdmauth/mdmauth/internal/store"
)

func storeEnrollment(id, iss, sub, maid, mode string) store.Enrollment {
	return store.Enrollment{ID: id, Issuer: iss, Subject: sub, ManagedAppleID: maid, Mode: mode, State: store.StateActive}
}

// A re-authentication must be a fresh login: with prompt=login the
// provider must have authenticated the user during this sign-in (a minute
// of clock skew allowed); with max_age, within max_age.
func TestReauthFreshLogin(t *testing.T) {
	const absent = -1
	for name, c := range map[string]struct {
		flow   Flow
		maxAge time.Duration
		// authAgo is how long before the callback the provider says the
		// user authenticated; absent leaves auth_time out.
		authAgo time.Duration
		ok      bool
	}{
		"prompt=login, authenticated now":          {reauthFlow, 0, 0, true},
		"prompt=login, within the skew":            {reauthFlow, 0, 50 * time.Second, true},
		"prompt=login, earlier session":            {reauthFlow, 0, 2 * time.Minute, false},
		"prompt=login, session of yesterday":       {reauthFlow, 0, 24 * time.Hour, false},
		"prompt=login, no auth_time":               {reauthFlow, 0, absent, false},
		"max_age, within":                          {reauthFlow, 5 * time.Minute, 4 * time.Minute, true},
		"max_age, within the skew":                 {reauthFlow, 5 * time.Minute, 5*time.Minute + 50*time.Second, true},
		"max_age, too old":                         {reauthFlow, 5 * time.Minute, 7 * time.Minute, false},
		"max_age, no auth_time":                    {reauthFlow, 5 * time.Minute, absent, false},
		"enrollment sign-in, old session is fine":  {enrollFlow, 0, 24 * time.Hour, true},
		"enrollment sign-in, no auth_time is fine": {enrollFlow, 0, absent, true},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.web.ReauthMaxAge = c.maxAge
			e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", "alice@example.com", "byod"))
			l := alice()
			if c.authAgo == absent {
				l.IDClaims["auth_time"] = nil
			} else {
				l.IDClaims["auth_time"] = e.clock.Now().Add(-c.authAgo).Unix()
			}
			e.idp.Script(l)
			w := e.signIn(c.flow, "alice@example.com")
			if c.ok {
				e.issued(w)
				return
			}
			e.refused(w, http.StatusForbidden, "stale_login", 0)
		})
	}
}

func TestReauthWrongUser(t *testing.T) {
	e := newEnv(t)
	e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", "alice@example.com", "byod"))
	e.idp.Script(fakeidp.Login{Subject: "bob-sub", IDClaims: map[string]any{"email": "bob@example.com", "email_verified": true}})
	w := e.signIn(reauthFlow, "bob@example.com")
	e.refused(w, http.StatusForbidden, "wrong_user", 0)
	if !strings.Contains(w.Body.String(), "another user") {
		t.Errorf("page does not say the device belongs to another user: %s", w.Body)
	}
}

// The owner's re-authentication keeps the enrollment's mode whatever the
// flow says; an enrollment the store does not know yet takes the flow's.
func TestReauthMode(t *testing.T) {
	e := newEnv(t)
	e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", "alice@example.com", "adde"))
	_, rec := e.issued(e.signIn(reauthFlow, "alice@example.com"))
	if rec.Mode != "adde" {
		t.Errorf("token mode %q, want the enrollment's adde", rec.Mode)
	}
	if rec.EnrollmentID != "" {
		t.Errorf("the sign-in bound the token to %q; binding is the gateway's job", rec.EnrollmentID)
	}

	unknown := reauthFlow
	unknown.EnrollmentID = "NEVER-SEEN"
	_, rec = e.issued(e.signIn(unknown, "alice@example.com"))
	if rec.Mode != "byod" {
		t.Errorf("token mode %q, want the flow's byod", rec.Mode)
	}

	// An enrollment known only by its platform (no owner yet) takes any user.
	e.seed(store.Enrollment{ID: "MAC-1", Platform: store.PlatformMac, State: store.StateActive})
	mac := reauthFlow
	mac.EnrollmentID = "MAC-1"
	e.idp.Script(fakeidp.Login{Subject: "bob-sub", IDClaims: map[string]any{"email": "bob@example.com", "email_verified": true}})
	_, rec = e.issued(e.signIn(mac, "bob@example.com"))
	if rec.Subject != "bob-sub" || rec.Mode != "byod" {
		t.Errorf("token %+v", rec)
	}
}

// An enrollment blocked or being removed while its owner is at the
// provider gets no token.
func TestReauthRefusedAtCallback(t *testing.T) {
	for state, reason := range map[store.State]string{
		store.StateBlocked:     "enrollment_blocked",
		store.StateOffboarding: "enrollment_ending",
		store.StateRemoved:     "enrollment_ending",
	} {
		t.Run(string(state), func(t *testing.T) {
			e := newEnv(t)
			en := storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", "alice@example.com", "byod")
			e.seed(en)
			authURL, cookie := e.begin(reauthFlow, "alice@example.com")
			cb := e.follow(authURL)
			en.State = state
			e.seed(en)
			e.refused(e.callback(cb.RawQuery, cookie), http.StatusForbidden, reason, 0)
		})
	}
}
