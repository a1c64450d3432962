package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// hookLog records what the hooks were told.
type hookLog struct {
	allowed []token.Reason
	bound   []gateway.Binding
}

func (e *env) recordHooks() *hookLog {
	hl := &hookLog{}
	e.gw.Hooks = gateway.Hooks{
		Allowed: func(r token.Reason) { hl.allowed = append(hl.allowed, r) },
		Bound:   func(b gateway.Binding) { hl.bound = append(hl.bound, b) },
	}
	return hl
}

func TestHooksAllowed(t *testing.T) {
	e := newEnv(t)
	hl := e.recordHooks()
	raw, _ := e.issue(grant("byod"))
	ok := &recNext{status: http.StatusOK}

	e.mustServe(mdmRequest(fixture(t, "checkin/ue-authenticate.plist"), raw), ok.serve)
	e.mustServe(mdmRequest(fixture(t, "checkin/ue-idle.plist"), raw), ok.serve)
	e.mustServe(mdmRequest(fixture(t, "checkin/adde-mac-authenticate.plist"), ""), ok.serve)
	// Refused requests are not "allowed": their audit entries count them.
	e.mustServe(mdmRequest(fixture(t, "checkin/ue-idle.plist"), ""), failNext(t))
	e.mustServe(mdmRequest(fixture(t, "checkin/no-enrollment-id.plist"), raw), failNext(t))
	e.mustServe(mdmRequest([]byte("not a plist"), raw), failNext(t))
	// CheckOut passes and says so.
	e.mustServe(mdmRequest(fixture(t, "checkin/ue-checkout.plist"), raw), ok.serve)

	want := []token.Reason{token.ReasonOK, token.ReasonOK, token.ReasonMacDevice, token.ReasonCheckOut}
	if len(hl.allowed) != len(want) {
		t.Fatalf("allowed %v, want %v", hl.allowed, want)
	}
	for i := range want {
		if hl.allowed[i] != want[i] {
			t.Fatalf("allowed %v, want %v", hl.allowed, want)
		}
	}
}

func TestHooksBoundOnNewBindingsOnly(t *testing.T) {
	e := newEnv(t)
	hl := e.recordHooks()
	g := grant("byod")
	g.ManagedAppleID = "alice@appleid.example.com"
	raw, h := e.issue(g)

	// The MDM refuses the first Authenticate: nothing is bound.
	e.mustServe(mdmRequest(fixture(t, "checkin/ue-authenticate.plist"), raw), (&recNext{status: http.StatusBadRequest}).serve)
	if len(hl.bound) != 0 {
		t.Fatalf("bound reported for a request the MDM refused: %+v", hl.bound)
	}
	// It accepts the retry: the first binding.
	e.bind(raw, fixture(t, "checkin/ue-authenticate.plist"))
	if len(hl.bound) != 1 {
		t.Fatalf("%d bindings reported, want 1", len(hl.bound))
	}
	want := gateway.Binding{EnrollmentID: ueID, Issuer: issuer, Subject: "sub-alice", UserIdentifier: "alice@example.com",
		ManagedAppleID: "alice@appleid.example.com", Mode: "byod", ModelFamily: "iPhone", Platform: store.PlatformOther, At: e.clock.Now()}
	if got := hl.bound[0]; got != want {
		t.Fatalf("binding\n got %+v\nwant %+v", got, want)
	}
	// Later requests with the same token report nothing.
	e.bind(raw, fixture(t, "checkin/ue-tokenupdate.plist"))
	e.bind(raw, fixture(t, "checkin/ue-idle.plist"))
	if len(hl.bound) != 1 {
		t.Fatalf("%d bindings reported after more requests, want 1", len(hl.bound))
	}

	// The operator forces a new sign-in; a later token re-binds.
	e.clock.Advance(time.Minute)
	if _, err := e.tokens.SetState(e.ctx, ueID, store.StateReauth, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	g.ManagedAppleID = "alice.liddell@appleid.example.com" // the mapping changed meanwhile
	raw2, h2 := e.issue(g)
	e.bind(raw2, fixture(t, "checkin/ue-idle.plist"))
	if len(hl.bound) != 2 {
		t.Fatalf("%d bindings reported after the new sign-in, want 2", len(hl.bound))
	}
	got := hl.bound[1]
	if !got.Replaced || got.ManagedAppleID != "alice@appleid.example.com" || got.Platform != store.PlatformOther || !got.At.Equal(e.clock.Now()) {
		t.Fatalf("re-binding %+v: want the previous token replaced and the enrollment's own Managed Apple ID", got)
	}
	if e.storedToken(h).RevokedAt.IsZero() || e.enrollment(ueID).TokenHash != h2 {
		t.Fatal("the re-binding did not take place")
	}
}

func TestHooksBoundNotForMacDeviceChannel(t *testing.T) {
	e := newEnv(t)
	hl := e.recordHooks()
	e.mustServe(mdmRequest(fixture(t, "checkin/adde-mac-authenticate.plist"), ""), (&recNext{status: http.StatusOK}).serve)
	if len(hl.bound) != 0 {
		t.Fatalf("a bearer-less Mac device channel reported a binding: %+v", hl.bound)
	}
}

// TestHooksAddNoAllocation checks that the Allowed hook costs nothing per
// request: a bound token's request allocates as much with hooks as without.
func TestHooksAddNoAllocation(t *testing.T) {
	e := newEnv(t)
	raw, _ := e.issue(grant("adde"))
	body := fixture(t, "checkin/adde-iphone-tokenupdate.plist")
	e.bind(raw, body)
	replay := replayer(e, body, raw)
	serve := func() {
		if status, err := replay(); err != nil || status != http.StatusOK {
			t.Fatalf("status %d, %v", status, err)
		}
	}
	without := testing.AllocsPerRun(200, serve)
	var n int
	var last token.Reason
	e.gw.Hooks = gateway.Hooks{
		Allowed: func(r token.Reason) { n++; last = r },
		Bound:   func(gateway.Binding) { t.Error("a bound token reported a new binding") },
	}
	with := testing.AllocsPerRun(200, serve)
	if n == 0 || last != token.ReasonOK {
		t.Fatalf("Allowed called %d times, last reason %q", n, last)
	}
	if with > without {
		t.Fatalf("%.1f allocations per request with hooks, %.1f without", with, without)
	}
}
