package gateway_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/policy"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// bindUE issues a token for g and binds it to the User Enrollment of the
// ue-*.plist fixtures.
func (e *env) bindUE(t *testing.T, g token.Grant) store.Hash {
	t.Helper()
	raw, h := e.issue(g)
	e.bind(raw, fixture(t, "checkin/ue-authenticate.plist"))
	return h
}

func TestRenderProfileAgain(t *testing.T) {
	e := newEnv(t, withKiosk(t))
	g := grant("byod")
	g.Profile, g.RequiredAppID = "kiosk", 4242
	h := e.bindUE(t, g)

	// The token's Managed Apple ID changes (a new mapping at a later
	// sign-in): the profile keeps the enrollment's own, which may never
	// change.
	if _, err := e.store.UpdateToken(e.ctx, h, func(tk *store.Token) error {
		tk.ManagedAppleID = "alice.liddell@example.com"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, state := range []store.State{store.StateActive, store.StateReauth} {
		if state != store.StateActive {
			if _, err := e.tokens.SetState(e.ctx, ueID, state, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		prof, err := e.gw.RenderProfile(e.ctx, ueID)
		if err != nil {
			t.Fatalf("%s: %v", state, err)
		}
		mdm := profilePayload(t, prof)
		if mdm["AssignedManagedAppleID"] != "alice@example.com" || mdm["EnrollmentMode"] != "BYOD" {
			t.Errorf("%s: AssignedManagedAppleID %v EnrollmentMode %v, want the enrollment's", state, mdm["AssignedManagedAppleID"], mdm["EnrollmentMode"])
		}
		if mdm["ServerURL"] != "https://mdm.example.com/mdm/kiosk" || fmt.Sprint(mdm["RequiredAppIDForMDM"]) != "4242" {
			t.Errorf("%s: ServerURL %v RequiredAppIDForMDM %v, want the kiosk template and the token's app", state, mdm["ServerURL"], mdm["RequiredAppIDForMDM"])
		}
	}
	// Two renderings are two profiles (fresh payload UUIDs), as served.
	a, _ := e.gw.RenderProfile(e.ctx, ueID)
	b, _ := e.gw.RenderProfile(e.ctx, ueID)
	if string(a) == string(b) {
		t.Error("two renderings are identical; payload UUIDs must be fresh")
	}
}

func TestRenderProfileRefusals(t *testing.T) {
	e := newEnv(t)
	if _, err := e.gw.RenderProfile(e.ctx, "NO-SUCH-ENROLLMENT"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown enrollment: %v, want store.ErrNotFound", err)
	}
	e.bindUE(t, grant("byod"))
	for _, st := range []store.State{store.StateBlocked, store.StateOffboarding, store.StateRemoved} {
		if _, err := e.tokens.SetState(e.ctx, ueID, st, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.gw.RenderProfile(e.ctx, ueID); !errors.Is(err, gateway.ErrProfileUnavailable) {
			t.Errorf("%s: %v, want ErrProfileUnavailable", st, err)
		}
	}
	// An enrollment nobody signed in for (a Mac's device channel only).
	if _, err := e.store.UpdateEnrollment(e.ctx, macUDID, func(*store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{ID: macUDID, Platform: store.PlatformMac, State: store.StateActive, CreatedAt: epoch, UpdatedAt: epoch}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.gw.RenderProfile(e.ctx, macUDID); !errors.Is(err, gateway.ErrProfileUnavailable) {
		t.Errorf("enrollment without a user: %v, want ErrProfileUnavailable", err)
	}
}

// orphan stores an enrollment of alice whose bound token is gone (purged).
func (e *env) orphan(t *testing.T, id string) {
	t.Helper()
	if _, err := e.store.UpdateEnrollment(e.ctx, id, func(*store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{ID: id, Issuer: issuer, Subject: "sub-alice", ManagedAppleID: "alice@example.com",
			Mode: "adde", State: store.StateActive, TokenHash: store.Hash{1, 2, 3}, CreatedAt: epoch, UpdatedAt: epoch}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestRenderProfileWithoutItsToken(t *testing.T) {
	t.Run("one template, no choices: the default", func(t *testing.T) {
		e := newEnv(t)
		e.orphan(t, addeIPhoneUDID)
		prof, err := e.gw.RenderProfile(e.ctx, addeIPhoneUDID)
		if err != nil {
			t.Fatal(err)
		}
		if mdm := profilePayload(t, prof); mdm["EnrollmentMode"] != "ADDE" || mdm["ServerURL"] != "https://mdm.example.com/mdm/ad" {
			t.Errorf("EnrollmentMode %v ServerURL %v", mdm["EnrollmentMode"], mdm["ServerURL"])
		}
	})
	t.Run("named templates: refused rather than guessed", func(t *testing.T) {
		e := newEnv(t, withKiosk(t))
		e.orphan(t, addeIPhoneUDID)
		if _, err := e.gw.RenderProfile(e.ctx, addeIPhoneUDID); !errors.Is(err, gateway.ErrProfileUnavailable) {
			t.Errorf("err = %v, want ErrProfileUnavailable", err)
		}
	})
	t.Run("a rule sets a Required App: refused", func(t *testing.T) {
		e := newEnv(t, func(c *gateway.Config) {
			c.Policy = &policy.Policy{Rules: []policy.Rule{{Name: "all", Domains: []string{"example.com"}, RequiredAppID: 7}},
				Modes: policy.Modes{Default: "byod"}}
		})
		e.orphan(t, addeIPhoneUDID)
		if _, err := e.gw.RenderProfile(e.ctx, addeIPhoneUDID); !errors.Is(err, gateway.ErrProfileUnavailable) {
			t.Errorf("err = %v, want ErrProfileUnavailable", err)
		}
	})
	t.Run("the OAuth 2 family keeps the choice", func(t *testing.T) {
		e := newEnv(t, withKiosk(t))
		e.orphan(t, addeIPhoneUDID)
		for i, p := range []struct {
			profile string
			app     int64
			at      time.Time
		}{{"", 0, epoch.Add(-2 * time.Hour)}, {"kiosk", 99, epoch.Add(-time.Hour)}} {
			if err := e.store.CreateFamily(e.ctx, &store.Family{
				ID: fmt.Sprintf("family-%d", i), Issuer: issuer, Subject: "sub-alice", ManagedAppleID: "alice@example.com",
				Mode: "adde", ClientID: "mdmauth", EnrollmentID: addeIPhoneUDID, Profile: p.profile, RequiredAppID: p.app,
				SignedInAt: p.at, ExpiresAt: epoch.Add(time.Hour), CreatedAt: p.at, UpdatedAt: p.at,
			}); err != nil {
				t.Fatal(err)
			}
		}
		prof, err := e.gw.RenderProfile(e.ctx, addeIPhoneUDID)
		if err != nil {
			t.Fatal(err)
		}
		if mdm := profilePayload(t, prof); mdm["ServerURL"] != "https://mdm.example.com/mdm/kiosk" || fmt.Sprint(mdm["RequiredAppIDForMDM"]) != "99" {
			t.Errorf("ServerURL %v RequiredAppIDForMDM %v, want the newest family's choice", mdm["ServerURL"], mdm["RequiredAppIDForMDM"])
		}
	})
}

func TestRenderProfileSigned(t *testing.T) {
	id := newIdentity(t, "Profile Signing")
	e := newEnv(t, func(c *gateway.Config) { c.Signer = id.signer(t) })
	e.bindUE(t, grant("byod"))
	prof, err := e.gw.RenderProfile(e.ctx, ueID)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(prof)
	if err != nil {
		t.Fatalf("not CMS SignedData: %v", err)
	}
	if err := p7.Verify(); err != nil {
		t.Fatal(err)
	}
	if s := p7.GetOnlySigner(); s == nil || !s.Equal(id.cert) {
		t.Error("not signed by the configured certificate")
	}
	if mdm := profilePayload(t, p7.Content); mdm["AssignedManagedAppleID"] != "alice@example.com" {
		t.Errorf("signed content: AssignedManagedAppleID %v", mdm["AssignedManagedAppleID"])
	}
}
