package signin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mdmauth/mdmauth/internal/policy"
	"github.com/mdmauth/mdmauth/internal/signin/internal/fakeidp"
	"github.com/mdmauth/mdmauth/internal/store"
)

// withPolicy makes the sign-in re-check rules (validated, default mode
// byod) and returns the policy.
func (e *env) withPolicy(rules ...policy.Rule) *policy.Policy {
	e.t.Helper()
	p := &policy.Policy{Rules: rules, Modes: policy.Modes{Default: "byod"}}
	if err := p.Validate(nil); err != nil {
		e.t.Fatal(err)
	}
	e.web.Policy = p
	return p
}

// discovered is the enrollment flow discovery would start for typed on a
// device of family under p.
func (e *env) discovered(p *policy.Policy, typed, family string) Flow {
	e.t.Helper()
	r, err := p.Discovery(policy.DomainOf(typed), family)
	if err != nil || r.Deny {
		e.t.Fatalf("discovery refuses %s on %s: %v", typed, family, err)
	}
	return Flow{Kind: KindEnroll, Mode: p.Modes.Mode(r, family), ModelFamily: family}
}

// member is alice with groups in her ID token.
func member(groups ...any) fakeidp.Login {
	l := alice()
	l.IDClaims["groups"] = append([]any{}, groups...)
	return l
}

// groupRule is a rule condition on the groups claim.
func groupRule(values ...string) []policy.ClaimMatch {
	return []policy.ClaimMatch{{Claim: "groups", Values: values}}
}

// wantInPage asserts the page shows each text, HTML-escaped as a browser
// would receive it.
func wantInPage(t *testing.T, body string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if !strings.Contains(body, s) {
			t.Errorf("page does not show %q: %s", s, body)
		}
	}
}

// A deny rule ends the sign-in with a page that names the rule and gives
// its message; a rule that depends on claims is decided with the user's.
func TestPolicyDeny(t *testing.T) {
	rules := func() []policy.Rule {
		return []policy.Rule{
			{Name: "no-contractors", Claims: groupRule("contractors"), Deny: true,
				Message: "Contractor accounts enroll devices through the vendor portal."},
			{Claims: groupRule("interns"), Deny: true},
			{Name: "staff"},
		}
	}
	for name, c := range map[string]struct {
		login  fakeidp.Login
		reason string   // "" when a token is issued
		page   []string // texts of the page
	}{
		"denied with the rule's message": {login: member("staff", "contractors"),
			reason: "policy_denied: no-contractors",
			page:   []string{"You cannot enroll this device", "Contractor accounts enroll devices through the vendor portal.", "(policy rule: no-contractors)"}},
		"denied without a message, by an unnamed rule": {login: member("interns"),
			reason: "policy_denied: rule 2",
			page:   []string{"enrollment policy does not let your account enroll this device.", "(policy rule: rule 2)"}},
		"not in a denied group": {login: member("staff")},
		"no groups at all":      {login: alice()},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			p := e.withPolicy(rules()...)
			e.idp.Script(c.login)
			w := e.signIn(e.discovered(p, "alice@example.com", "iPhone"), "alice@example.com")
			if c.reason == "" {
				e.issued(w)
				return
			}
			e.refused(w, http.StatusForbidden, c.reason, 0)
			wantInPage(t, w.Body.String(), c.page...)
			if logged := e.logs.FilterMessage("sign-in failed").FilterField(zap.String("reason", c.reason)).Len(); logged != 1 {
				t.Errorf("%d sign-in failed log lines with reason %q, want 1", logged, c.reason)
			}
		})
	}
}

// A later deny also stops the re-authentication of an enrolled device.
func TestPolicyDenyReauth(t *testing.T) {
	e := newEnv(t)
	e.withPolicy(
		policy.Rule{Name: "no-contractors", Claims: groupRule("contractors"), Deny: true, Message: "Contractors may not use managed devices."},
		policy.Rule{Name: "staff"},
	)
	e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", "alice@example.com", "byod"))
	e.issued(e.signIn(reauthFlow, "alice@example.com"))
	e.idp.Script(member("contractors"))
	w := e.signIn(reauthFlow, "alice@example.com")
	e.refused(w, http.StatusForbidden, "policy_denied: no-contractors", 1)
	wantInPage(t, w.Body.String(), "Contractors may not use managed devices.")
}

// Discovery announces Device Enrollment to everyone a claim-conditioned
// rule might allow it; the sign-in gives it only to users who have the
// claim, and refuses the others with a page saying which mode they may
// use.
func TestPolicyADDEByGroup(t *testing.T) {
	rules := []policy.Rule{
		{Name: "adde-staff", Claims: groupRule("mdm-adde"), Mode: "adde"},
		{Name: "byod-everyone", Mode: "byod"},
	}
	for name, c := range map[string]struct {
		login fakeidp.Login
		// flowMode is the flow's mode; "" for the one discovery announces.
		flowMode     string
		status       int
		reason       string
		page         []string
		userInfoHits int
	}{
		"in the group": {login: member("staff", "mdm-adde"), status: 308},
		"not in the group": {login: member("staff"), status: 403, reason: "policy_mode: byod-everyone",
			page: []string{"You cannot enroll this device this way", "only with User Enrollment, not Device Enrollment", "policy rule: byod-everyone"}},
		"groups only in UserInfo": {login: fakeidp.Login{Subject: "alice-sub",
			IDClaims:       map[string]any{"email": "alice@example.com", "email_verified": true},
			UserInfoClaims: map[string]any{"groups": []any{"mdm-adde"}}},
			status: 308, userInfoHits: 1},
		"no groups anywhere": {login: alice(), status: 403, reason: "policy_mode: byod-everyone", userInfoHits: 1},
		"groups unavailable": {login: fakeidp.Login{Subject: "alice-sub",
			IDClaims:       map[string]any{"email": "alice@example.com", "email_verified": true},
			UserInfoStatus: http.StatusServiceUnavailable},
			status: 503, reason: "idp_unavailable", userInfoHits: 1},
		"groups of another subject": {login: fakeidp.Login{Subject: "alice-sub",
			IDClaims:       map[string]any{"email": "alice@example.com", "email_verified": true},
			UserInfoClaims: map[string]any{"sub": "mallory-sub", "groups": []any{"mdm-adde"}}},
			status: 403, reason: "claims_invalid", userInfoHits: 1},
		"in the group, but on a User Enrollment flow": {login: member("mdm-adde"), flowMode: "byod", status: 403, reason: "policy_mode: adde-staff",
			page: []string{"only with Device Enrollment, not User Enrollment"}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			p := e.withPolicy(rules...)
			flow := e.discovered(p, "alice@example.com", "iPhone")
			if flow.Mode != "adde" {
				t.Fatalf("discovery announces %q, want adde", flow.Mode)
			}
			if c.flowMode != "" {
				flow.Mode = c.flowMode
			}
			e.idp.Script(c.login)
			w := e.signIn(flow, "alice@example.com")
			if c.status == 308 {
				_, rec := e.issued(w)
				if rec.Mode != "adde" || rec.ModelFamily != "iPhone" {
					t.Errorf("token mode %q family %q, want adde iPhone", rec.Mode, rec.ModelFamily)
				}
				applied := e.logs.FilterMessage("policy rule applied").All()
				if len(applied) != 1 || applied[0].ContextMap()["rule"] != "adde-staff" {
					t.Errorf("policy rule applied log: %v", applied)
				}
			} else {
				e.refused(w, c.status, c.reason, 0)
				wantInPage(t, w.Body.String(), c.page...)
			}
			if n := e.idp.Hits(fakeidp.UserInfo); n != c.userInfoHits {
				t.Errorf("UserInfo requests: %d, want %d", n, c.userInfoHits)
			}
		})
	}
}

// No rule for the user: a page, no token. The domain is the typed
// identifier's, or the Managed Apple ID's when nothing was typed.
func TestPolicyNoRule(t *testing.T) {
	for name, c := range map[string]struct {
		domain string
		typed  string
		ok     bool
	}{
		"typed identifier of another domain":    {"corp.example.com", "alice@example.com", false},
		"typed identifier of the rule's domain": {"example.com", "Alice@EXAMPLE.com", true},
		// The typed identifier decides, not the Managed Apple ID.
		"typed identifier decides":                 {"corp.example.com", "alice@corp.example.com", true},
		"nothing typed, Managed Apple ID's domain": {"example.com", "", true},
		"nothing typed, another domain":            {"corp.example.com", "", false},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.withPolicy(policy.Rule{Name: "only", Domains: []string{c.domain}})
			w := e.signIn(enrollFlow, c.typed)
			if c.ok {
				e.issued(w)
				return
			}
			e.refused(w, http.StatusForbidden, "policy_no_rule", 0)
			wantInPage(t, w.Body.String(), "You cannot enroll this device", "Contact your IT administrator.")
		})
	}
}

func enrollmentOf(id, iss, sub string, state store.State) store.Enrollment {
	return store.Enrollment{ID: id, Issuer: iss, Subject: sub, ManagedAppleID: sub + "@example.com", Mode: "byod", State: state}
}

// max_devices counts the user's enrollments that are not removed; other
// users' do not count, and the page shows nothing of any enrollment.
func TestPolicyDeviceLimit(t *testing.T) {
	const otherIssuer = "https://other-idp.example.com"
	type tc struct {
		max   int
		seeds func(iss string) []store.Enrollment
		ok    bool
	}
	n := func(count int, prefix, iss, sub string, state store.State) []store.Enrollment {
		var out []store.Enrollment
		for i := range count {
			out = append(out, enrollmentOf(fmt.Sprintf("%s-%d", prefix, i), iss, sub, state))
		}
		return out
	}
	active := func(count int) func(string) []store.Enrollment {
		return func(iss string) []store.Enrollment { return n(count, "ALICE", iss, "alice-sub", store.StateActive) }
	}
	plus := func(base int, state store.State, count int) func(string) []store.Enrollment {
		return func(iss string) []store.Enrollment {
			return append(n(base, "ALICE", iss, "alice-sub", store.StateActive), n(count, "OTHER-STATE", iss, "alice-sub", state)...)
		}
	}
	cases := map[string]tc{
		"no enrollments":                {2, active(0), true},
		"one enrolled":                  {2, active(1), true},
		"at the limit":                  {2, active(2), false},
		"over the limit":                {2, active(3), false},
		"limit of one, one enrolled":    {1, active(1), false},
		"one enrolled, one removed":     {2, plus(1, store.StateRemoved, 1), true},
		"one enrolled, many removed":    {2, plus(1, store.StateRemoved, 5), true},
		"one enrolled, one to re-auth":  {2, plus(1, store.StateReauth, 1), false},
		"one enrolled, one blocked":     {2, plus(1, store.StateBlocked, 1), false},
		"one enrolled, one offboarding": {2, plus(1, store.StateOffboarding, 1), false},
		"limit of twelve, eleven":       {12, active(11), true},
		"limit of twelve, twelve":       {12, active(12), false},
		"one enrolled, other users' many": {2, func(iss string) []store.Enrollment {
			out := append(active(1)(iss), n(3, "BOB", iss, "bob-sub", store.StateActive)...)
			// The same subject at another issuer is another user.
			out = append(out, n(3, "ELSEWHERE", otherIssuer, "alice-sub", store.StateActive)...)
			// A device known only by its platform has no owner yet.
			return append(out, store.Enrollment{ID: "MAC-UNOWNED", Platform: store.PlatformMac, State: store.StateActive})
		}, true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.withPolicy(policy.Rule{Name: "few-devices", MaxDevices: c.max})
			seeds := c.seeds(e.idp.Issuer)
			for _, en := range seeds {
				e.seed(en)
			}
			w := e.signIn(enrollFlow, "alice@example.com")
			if c.ok {
				e.issued(w)
				return
			}
			e.refused(w, http.StatusForbidden, "device_limit: few-devices", 0)
			body := w.Body.String()
			wantInPage(t, body, "You have enrolled as many devices as allowed", fmt.Sprintf("at most %d enrolled devices", c.max))
			for _, en := range seeds {
				if strings.Contains(body, en.ID) || en.ManagedAppleID != "" && strings.Contains(body, en.ManagedAppleID) {
					t.Errorf("the page shows enrollment %s (%s): %s", en.ID, en.ManagedAppleID, body)
				}
			}
			if strings.Contains(body, "bob") {
				t.Errorf("the page shows another user: %s", body)
			}
		})
	}
}

// The limit is on new enrollments: the owner of an enrolled device
// re-authenticates it at the limit.
func TestPolicyDeviceLimitReauth(t *testing.T) {
	e := newEnv(t)
	e.withPolicy(policy.Rule{Name: "one-device", MaxDevices: 1})
	e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", "alice@example.com", "byod"))
	e.issued(e.signIn(reauthFlow, "alice@example.com"))
	e.refused(e.signIn(enrollFlow, "alice@example.com"), http.StatusForbidden, "device_limit: one-device", 1)
}

// usersDown fails listing a user's enrollments.
type usersDown struct{ store.Store }

func (usersDown) EnrollmentsForUser(context.Context, string, string) ([]*store.Enrollment, error) {
	return nil, store.ErrClosed
}

func TestPolicyDeviceLimitStoreDown(t *testing.T) {
	e := newEnv(t)
	e.withPolicy(policy.Rule{Name: "few-devices", MaxDevices: 2})
	e.web.Store = usersDown{e.st}
	e.refused(e.signIn(enrollFlow, "alice@example.com"), http.StatusServiceUnavailable, "store_unavailable", 0)

	// Without a limit the enrollments are not listed.
	e.withPolicy(policy.Rule{Name: "no-limit"})
	e.issued(e.signIn(enrollFlow, "alice@example.com"))
}

// The rule's enrollment profile and Required App go with the token.
func TestPolicyProfileInToken(t *testing.T) {
	rules := []policy.Rule{
		{Name: "kiosk-admins", Claims: groupRule("kiosk-admins"), Profile: "kiosk-admin", RequiredAppID: 987654321},
		{Name: "ipads", Families: []string{"iPad"}, Profile: "kiosk", RequiredAppID: 1234567890},
		{Name: "default"},
	}
	for name, c := range map[string]struct {
		login   fakeidp.Login
		family  string
		profile string
		appID   int64
	}{
		"by family":          {alice(), "iPad", "kiosk", 1234567890},
		"by claim":           {member("kiosk-admins"), "iPad", "kiosk-admin", 987654321},
		"default profile":    {alice(), "iPhone", "", 0},
		"by claim on iPhone": {member("kiosk-admins"), "iPhone", "kiosk-admin", 987654321},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			p := e.withPolicy(rules...)
			e.idp.Script(c.login)
			_, rec := e.issued(e.signIn(e.discovered(p, "alice@example.com", c.family), "alice@example.com"))
			if rec.Profile != c.profile || rec.RequiredAppID != c.appID {
				t.Errorf("token profile %q app %d, want %q %d", rec.Profile, rec.RequiredAppID, c.profile, c.appID)
			}
		})
	}
}

// In the OAuth 2 flow the code carries the rule's profile and Required App
// to the token family and every access token issued in it.
func TestPolicyOAuth2CarriesProfile(t *testing.T) {
	e := newOAuthEnv(t, false)
	p := e.withPolicy(
		policy.Rule{Name: "no-contractors", Claims: groupRule("contractors"), Deny: true},
		policy.Rule{Name: "ipads", Families: []string{"iPad"}, Profile: "kiosk", RequiredAppID: 1234567890, Mode: "adde"},
	)
	flow := e.discovered(p, "alice@example.com", "iPad")
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(flow, "alice@example.com")), deviceState)
	codes := e.st.codeList()
	if len(codes) != 1 || codes[0].Profile != "kiosk" || codes[0].RequiredAppID != 1234567890 || codes[0].Mode != "adde" {
		t.Fatalf("stored codes %+v", codes)
	}
	tr := e.tokensIssued(e.tokenReq(iosCodeBody(code)))
	rec, err := e.web.OAuth2.Tokens.M.Lookup(e.ctx, tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Profile != "kiosk" || rec.RequiredAppID != 1234567890 || rec.Mode != "adde" || rec.ModelFamily != "iPad" {
		t.Errorf("access token %+v", rec)
	}
	if f := e.familyOf(tr.RefreshToken); f.Profile != "kiosk" || f.RequiredAppID != 1234567890 || f.Mode != "adde" {
		t.Errorf("family %+v", f)
	}
	tr2 := e.tokensIssued(e.tokenReq(iosRefreshBody(tr.RefreshToken)))
	rec2, err := e.web.OAuth2.Tokens.M.Lookup(e.ctx, tr2.AccessToken)
	if err != nil || rec2.Profile != "kiosk" || rec2.RequiredAppID != 1234567890 {
		t.Errorf("refreshed access token %+v, %v", rec2, err)
	}

	// A denied user gets a page: no code, no redirect to the device.
	e.idp.Script(member("contractors"))
	e.refused(e.deviceSignIn(e.deviceQuery(flow, "alice@example.com")), http.StatusForbidden, "policy_denied: no-contractors", e.st.tokenCount())
	if n := len(e.st.codeList()); n != 1 {
		t.Errorf("%d codes after a denied sign-in, want 1", n)
	}
}

// TestManagedAppleIDTemplate covers a Managed Apple ID built from claims,
// and every reason to refuse it.
func TestManagedAppleIDTemplate(t *testing.T) {
	const username = "{claim.preferred_username}@appleid.example.com"
	type tc struct {
		template string
		// lax drops RequireEmailVerified; match sets RequireIdentifierMatch.
		lax, match bool
		idClaims   map[string]any
		userInfo   map[string]any
		uiStatus   int
		typed      string

		status       int
		reason       string
		page         string
		maid         string
		userInfoHits int
	}
	cases := map[string]tc{
		"preferred_username": {template: username,
			idClaims: map[string]any{"preferred_username": "alice", "email": "alice@example.com", "email_verified": true},
			status:   308, maid: "alice@appleid.example.com"},
		"no email needed": {template: username,
			idClaims: map[string]any{"preferred_username": "alice"},
			status:   308, maid: "alice@appleid.example.com"},
		"two claims": {template: "{claim.given_name}.{claim.family_name}@appleid.example.com",
			idClaims: map[string]any{"given_name": "Alice", "family_name": "Liddell"},
			status:   308, maid: "Alice.Liddell@appleid.example.com"},
		"claim in the domain": {template: "{claim.preferred_username}@{claim.tenant}.example.com",
			idClaims: map[string]any{"preferred_username": "alice", "tenant": "wonderland"},
			status:   308, maid: "alice@wonderland.example.com"},
		"claim only in UserInfo": {template: username,
			idClaims: map[string]any{}, userInfo: map[string]any{"preferred_username": "alice"},
			status: 308, maid: "alice@appleid.example.com", userInfoHits: 1},
		"claim missing": {template: username,
			idClaims: map[string]any{}, userInfo: map[string]any{"name": "Alice"},
			status: 403, reason: "no_managed_apple_id", page: "Your account has no preferred_username", userInfoHits: 1},
		"claim empty": {template: username,
			idClaims: map[string]any{"preferred_username": ""}, userInfo: map[string]any{},
			status: 403, reason: "no_managed_apple_id"},
		"claim not a string": {template: username,
			idClaims: map[string]any{"preferred_username": 42},
			status:   403, reason: "no_managed_apple_id"},
		"claim a list": {template: username,
			idClaims: map[string]any{"preferred_username": []any{"alice"}},
			status:   403, reason: "no_managed_apple_id"},
		"second claim missing": {template: "{claim.given_name}.{claim.family_name}@appleid.example.com",
			idClaims: map[string]any{"given_name": "Alice"}, userInfo: map[string]any{},
			status: 403, reason: "no_managed_apple_id", page: "family_name", userInfoHits: 1},
		"UserInfo down": {template: username,
			idClaims: map[string]any{}, uiStatus: http.StatusBadGateway,
			status: 503, reason: "idp_unavailable", userInfoHits: 1},
		"result not an address: two @": {template: username,
			idClaims: map[string]any{"preferred_username": "alice@corp.example.com"},
			status:   403, reason: "bad_managed_apple_id"},
		"result not an address: space": {template: username,
			idClaims: map[string]any{"preferred_username": "al ice"},
			status:   403, reason: "bad_managed_apple_id"},
		"result not an address: display name": {template: username,
			idClaims: map[string]any{"preferred_username": "Alice <alice"},
			status:   403, reason: "bad_managed_apple_id"},
		"result not an address: no domain dot": {template: "{claim.preferred_username}@{claim.tenant}",
			idClaims: map[string]any{"preferred_username": "alice", "tenant": "localhost"},
			status:   403, reason: "bad_managed_apple_id"},
		"email, verified": {template: "{claim.email}",
			idClaims: map[string]any{"email": "alice@example.com", "email_verified": true},
			status:   308, maid: "alice@example.com"},
		"email, not verified": {template: "{claim.email}",
			idClaims: map[string]any{"email": "alice@example.com", "email_verified": false},
			status:   403, reason: "email_unverified"},
		"email, email_verified nowhere": {template: "{claim.email}",
			idClaims: map[string]any{"email": "alice@example.com"}, userInfo: map[string]any{},
			status: 403, reason: "email_unverified", userInfoHits: 1},
		"email, email_verified unavailable": {template: "{claim.email}",
			idClaims: map[string]any{"email": "alice@example.com"}, uiStatus: http.StatusServiceUnavailable,
			status: 503, reason: "idp_unavailable", userInfoHits: 1},
		"email, verification not required": {template: "{claim.email}", lax: true,
			idClaims: map[string]any{"email": "alice@example.com", "email_verified": false},
			status:   308, maid: "alice@example.com"},
		"identifier must match, matches": {template: username, match: true, typed: "ALICE@AppleID.example.com",
			idClaims: map[string]any{"preferred_username": "alice"},
			status:   308, maid: "alice@appleid.example.com"},
		"identifier must match, differs": {template: username, match: true, typed: "alice@example.com",
			idClaims: map[string]any{"preferred_username": "alice"},
			status:   403, reason: "identifier_mismatch"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.web.Claims = Claims{Template: c.template, RequireEmailVerified: !c.lax, RequireIdentifierMatch: c.match}
			l := fakeidp.Login{Subject: "alice-sub", IDClaims: map[string]any{"sid": "sid-alice"}, UserInfoClaims: c.userInfo, UserInfoStatus: c.uiStatus}
			for k, v := range c.idClaims {
				l.IDClaims[k] = v
			}
			e.idp.Script(l)
			typed := c.typed
			if typed == "" {
				typed = "alice@example.com"
			}
			w := e.signIn(enrollFlow, typed)
			if c.status == 308 {
				_, rec := e.issued(w)
				if rec.ManagedAppleID != c.maid || rec.UserIdentifier != typed {
					t.Errorf("token: Managed Apple ID %q, identifier %q; want %q, %q", rec.ManagedAppleID, rec.UserIdentifier, c.maid, typed)
				}
			} else {
				e.refused(w, c.status, c.reason, 0)
				if c.page != "" {
					wantInPage(t, w.Body.String(), c.page)
				}
			}
			if n := e.idp.Hits(fakeidp.UserInfo); n != c.userInfoHits {
				t.Errorf("UserInfo requests: %d, want %d", n, c.userInfoHits)
			}
		})
	}
}

func TestValidateTemplate(t *testing.T) {
	for tmpl, ok := range map[string]bool{
		"{claim.preferred_username}@appleid.example.com":             true,
		"{claim.given_name}.{claim.family_name}@appleid.example.com": true,
		"{claim.sub}@{claim.tenant}.example.com":                     true,
		"{claim.urn:example:upn}@appleid.example.com":                true,
		"{claim.x-id}@appleid.example.com":                           true,
		"":                                                           false, // no placeholder
		"alice@appleid.example.com":                                  false, // no placeholder
		"{claim.preferred_username}":                                 false, // no @
		"{claim.a}@{claim.b}@example.com":                            false, // two @
		"{claim.a}@b@example.com":                                    false,
		"{claim.a} @appleid.example.com":                             false, // a space
		"{claim.a}@apple\tid.example.com":                            false, // a tab
		"{user}@appleid.example.com":                                 false, // not a claim placeholder
		"{claim.a}@{user}.example.com":                               false, // another placeholder
		"{claim.}@appleid.example.com":                               false, // no claim name
		"{claim.a}{claim.}@example.com":                              false,
		"{claim.a}@appleid.example.com}":                             false, // stray brace
		"{claim.a b}@appleid.example.com":                            false,
		"{claim.a/b}@appleid.example.com":                            false,
		"{CLAIM.a}@appleid.example.com":                              false,
		"{claim.a}@appleid.example.com{":                             false,
		"{{claim.a}}@appleid.example.com":                            false,
		"{claim.a}@appleid.example.com\x20 ":                         false,
	} {
		err := ValidateTemplate(tmpl)
		if ok && err != nil {
			t.Errorf("ValidateTemplate(%q): %v", tmpl, err)
		}
		if !ok && err == nil {
			t.Errorf("ValidateTemplate(%q) accepted", tmpl)
		}
	}
}

// An enrollment keeps its Managed Apple ID for life: a re-authentication
// after the mapping changed gets a token with the enrollment's, and the
// change is logged for the administrator. A new enrollment takes the new
// mapping.
func TestReauthKeepsManagedAppleID(t *testing.T) {
	const kept = "alice@appleid.example.com"
	for name, c := range map[string]struct {
		claims Claims
		login  fakeidp.Login
		mapped string
	}{
		"template claim changed": {
			claims: Claims{Template: "{claim.preferred_username}@appleid.example.com"},
			login:  fakeidp.Login{Subject: "alice-sub", IDClaims: map[string]any{"preferred_username": "alice.liddell"}},
			mapped: "alice.liddell@appleid.example.com",
		},
		"email changed": {
			claims: Claims{RequireEmailVerified: true},
			login:  fakeidp.Login{Subject: "alice-sub", IDClaims: map[string]any{"email": "alice.liddell@appleid.example.com", "email_verified": true}},
			mapped: "alice.liddell@appleid.example.com",
		},
		"unchanged": {
			claims: Claims{Template: "{claim.preferred_username}@appleid.example.com"},
			login:  fakeidp.Login{Subject: "alice-sub", IDClaims: map[string]any{"preferred_username": "alice"}},
			mapped: kept,
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.web.Claims = c.claims
			e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", kept, "byod"))
			e.idp.Script(c.login)
			_, rec := e.issued(e.signIn(reauthFlow, "alice@example.com"))
			if rec.ManagedAppleID != kept {
				t.Errorf("re-authentication token Managed Apple ID %q, want the enrollment's %q", rec.ManagedAppleID, kept)
			}
			changed := e.logs.FilterMessage("the Managed Apple ID mapping changed; the enrollment keeps its own").All()
			if c.mapped == kept {
				if len(changed) != 0 {
					t.Errorf("mapping change logged although unchanged: %v", changed)
				}
			} else {
				if len(changed) != 1 {
					t.Fatalf("%d mapping change log lines, want 1", len(changed))
				}
				f := changed[0].ContextMap()
				if changed[0].Level != zapcore.WarnLevel || f["enrollment_id"] != reauthFlow.EnrollmentID ||
					f["enrollment_managed_apple_id"] != kept || f["mapped_managed_apple_id"] != c.mapped {
					t.Errorf("mapping change log: level %v, fields %v", changed[0].Level, f)
				}
			}

			// A new enrollment of the same user takes the current mapping.
			_, rec = e.issued(e.signIn(enrollFlow, "alice@example.com"))
			if rec.ManagedAppleID != c.mapped {
				t.Errorf("new enrollment token Managed Apple ID %q, want %q", rec.ManagedAppleID, c.mapped)
			}
		})
	}
}

// The same holds for an OAuth 2 re-authentication: the code, the family
// and the access token keep the enrollment's Managed Apple ID.
func TestOAuth2ReauthKeepsManagedAppleID(t *testing.T) {
	const kept = "alice@appleid.example.com"
	e := newOAuthEnv(t, false)
	e.web.Claims = Claims{Template: "{claim.preferred_username}@appleid.example.com"}
	e.seed(storeEnrollment(reauthFlow.EnrollmentID, e.idp.Issuer, "alice-sub", kept, "adde"))
	e.idp.Script(fakeidp.Login{Subject: "alice-sub", IDClaims: map[string]any{"preferred_username": "alice.liddell"}})
	code := e.codeIssued(e.deviceSignIn(e.deviceQuery(reauthFlow, "alice@example.com")), deviceState)
	if c := e.st.codeList()[0]; c.ManagedAppleID != kept || c.EnrollmentID != reauthFlow.EnrollmentID {
		t.Errorf("code Managed Apple ID %q enrollment %q", c.ManagedAppleID, c.EnrollmentID)
	}
	tr := e.tokensIssued(e.tokenReq(iosCodeBody(code)))
	rec, err := e.web.OAuth2.Tokens.M.Lookup(e.ctx, tr.AccessToken)
	if err != nil || rec.ManagedAppleID != kept {
		t.Errorf("access token %+v, %v", rec, err)
	}
	if f := e.familyOf(tr.RefreshToken); f.ManagedAppleID != kept {
		t.Errorf("family Managed Apple ID %q, want %q", f.ManagedAppleID, kept)
	}
	if n := e.logs.FilterMessage("the Managed Apple ID mapping changed; the enrollment keeps its own").Len(); n != 1 {
		t.Errorf("%d mapping change log lines, want 1", n)
	}
}
