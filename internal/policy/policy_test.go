package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// groups is a rule condition on the groups claim.
func groups(values ...string) []ClaimMatch {
	return []ClaimMatch{{Claim: "groups", Values: values}}
}

// validated returns a policy of rules that passed Validate.
func validated(t *testing.T, rules ...Rule) *Policy {
	t.Helper()
	p := &Policy{Rules: rules}
	if err := p.Validate(nil); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return p
}

// nameOf is the decision of a lookup: the rule's name, or the error.
func nameOf(r *Rule, err error) string {
	switch {
	case errors.Is(err, ErrNoRule):
		return "ErrNoRule"
	case err != nil:
		return "error: " + err.Error()
	case r == nil:
		return "nil rule without error"
	}
	return r.Name
}

// Discovery sees the domain and the model family only: the first rule
// matching them decides, except a deny that depends on claims, which only
// the sign-in can decide.
func TestDiscovery(t *testing.T) {
	for name, c := range map[string]struct {
		rules          []Rule
		domain, family string
		want           string // rule name or ErrNoRule
	}{
		"first match wins": {
			rules:  []Rule{{Name: "first", Domains: []string{"example.com"}}, {Name: "second", Domains: []string{"example.com"}, Mode: "adde"}},
			domain: "example.com", family: "iPhone", want: "first",
		},
		"earlier rules that do not match are passed over": {
			rules:  []Rule{{Name: "corp", Domains: []string{"corp.example.com"}}, {Name: "macs", Families: []string{"Mac"}}, {Name: "rest"}},
			domain: "example.com", family: "iPhone", want: "rest",
		},
		"empty matchers match any domain and family": {
			rules:  []Rule{{Name: "any"}},
			domain: "anything.example.org", family: "RealityDevice", want: "any",
		},
		"empty matchers match a request without domain or family": {
			rules:  []Rule{{Name: "any"}},
			domain: "", family: "", want: "any",
		},
		"domain matched case-insensitively": {
			rules:  []Rule{{Name: "example", Domains: []string{"Example.COM"}}},
			domain: "EXAMPLE.com", family: "iPad", want: "example",
		},
		"a rule domain with a trailing dot": {
			rules:  []Rule{{Name: "example", Domains: []string{"example.com."}}},
			domain: "example.com", family: "iPad", want: "example",
		},
		"one of several domains": {
			rules:  []Rule{{Name: "both", Domains: []string{"example.com", "example.net"}}},
			domain: "example.net", family: "iPad", want: "both",
		},
		"a subdomain is another domain": {
			rules:  []Rule{{Name: "example", Domains: []string{"example.com"}}},
			domain: "sub.example.com", family: "iPhone", want: "ErrNoRule",
		},
		"a parent domain is another domain": {
			rules:  []Rule{{Name: "corp", Domains: []string{"corp.example.com"}}},
			domain: "example.com", family: "iPhone", want: "ErrNoRule",
		},
		"family must be listed": {
			rules:  []Rule{{Name: "phones", Families: []string{"iPhone", "iPad"}}},
			domain: "example.com", family: "Mac", want: "ErrNoRule",
		},
		"family listed": {
			rules:  []Rule{{Name: "phones", Families: []string{"iPhone", "iPad"}}},
			domain: "example.com", family: "iPad", want: "phones",
		},
		"family compared exactly": {
			rules:  []Rule{{Name: "phones", Families: []string{"iPhone"}}},
			domain: "example.com", family: "iphone", want: "ErrNoRule",
		},
		"a rule with families does not match an unknown family": {
			rules:  []Rule{{Name: "phones", Families: []string{"iPhone"}}},
			domain: "example.com", family: "", want: "ErrNoRule",
		},
		"domain and family must both match": {
			rules:  []Rule{{Name: "corp macs", Domains: []string{"example.com"}, Families: []string{"Mac"}}, {Name: "rest"}},
			domain: "example.com", family: "iPhone", want: "rest",
		},
		"an unconditioned deny is returned": {
			rules:  []Rule{{Name: "no vision", Families: []string{"RealityDevice"}, Deny: true}, {Name: "rest"}},
			domain: "example.com", family: "RealityDevice", want: "no vision",
		},
		"a deny depending on claims is left to the sign-in": {
			rules:  []Rule{{Name: "no contractors", Claims: groups("contractors"), Deny: true}, {Name: "staff"}},
			domain: "example.com", family: "iPhone", want: "staff",
		},
		"an allow depending on claims is answered optimistically": {
			rules:  []Rule{{Name: "adde staff", Claims: groups("mdm-adde"), Mode: "adde"}, {Name: "byod"}},
			domain: "example.com", family: "iPhone", want: "adde staff",
		},
		"only a deny depending on claims": {
			rules:  []Rule{{Name: "no contractors", Claims: groups("contractors"), Deny: true}},
			domain: "example.com", family: "iPhone", want: "ErrNoRule",
		},
		"no rules": {
			domain: "example.com", family: "iPhone", want: "ErrNoRule",
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := validated(t, c.rules...)
			r, err := p.Discovery(c.domain, c.family)
			if got := nameOf(r, err); got != c.want {
				t.Errorf("Discovery(%q, %q) = %s, want %s", c.domain, c.family, got, c.want)
			}
			if err == nil && r != &p.Rules[slices.IndexFunc(p.Rules, func(x Rule) bool { return x.Name == r.Name })] {
				t.Errorf("Discovery returned a copy, not the policy's rule")
			}
		})
	}
}

// lookups is a claims source over a fixed set of claims that records every
// lookup.
type lookups struct {
	claims map[string]any
	asked  []string
}

func (l *lookups) claim(name string) (any, error) {
	l.asked = append(l.asked, name)
	return l.claims[name], nil
}

// SignIn decides with the claims: list claims contain a value, strings,
// booleans and numbers equal one; every condition of a rule must be met.
func TestSignIn(t *testing.T) {
	adde := []Rule{
		{Name: "adde staff", Claims: groups("mdm-adde"), Mode: "adde"},
		{Name: "byod"},
	}
	byClaim := func(claim string, values ...string) []Rule {
		return []Rule{{Name: "match", Claims: []ClaimMatch{{Claim: claim, Values: values}}}, {Name: "fallback"}}
	}
	for name, c := range map[string]struct {
		rules          []Rule
		domain, family string
		claims         map[string]any
		want           string
	}{
		"list claim contains the value": {
			rules: adde, claims: map[string]any{"groups": []any{"staff", "mdm-adde"}}, want: "adde staff",
		},
		"list claim without the value": {
			rules: adde, claims: map[string]any{"groups": []any{"staff", "mdm-adde-old", "MDM-ADDE"}}, want: "byod",
		},
		"empty list claim": {
			rules: adde, claims: map[string]any{"groups": []any{}}, want: "byod",
		},
		"list claim of mixed types": {
			rules: byClaim("groups", "7", "true"), claims: map[string]any{"groups": []any{map[string]any{"x": "7"}, 7.0}}, want: "match",
		},
		"list claim with a nested list": {
			rules: adde, claims: map[string]any{"groups": []any{[]any{"mdm-adde"}}}, want: "byod",
		},
		"missing claim": {
			rules: adde, claims: map[string]any{}, want: "byod",
		},
		"string claim equal to one of the values": {
			rules: byClaim("department", "Sales", "IT"), claims: map[string]any{"department": "IT"}, want: "match",
		},
		"string claim compared exactly": {
			rules: byClaim("department", "IT"), claims: map[string]any{"department": "it"}, want: "fallback",
		},
		"a string claim is not a list": {
			rules: byClaim("groups", "mdm-adde"), claims: map[string]any{"groups": "mdm-adde,staff"}, want: "fallback",
		},
		"bool claim true": {
			rules: byClaim("mdm_allowed", "true"), claims: map[string]any{"mdm_allowed": true}, want: "match",
		},
		"bool claim false": {
			rules: byClaim("mdm_allowed", "true"), claims: map[string]any{"mdm_allowed": false}, want: "fallback",
		},
		"bool claim false wanted": {
			rules: byClaim("contractor", "false"), claims: map[string]any{"contractor": false}, want: "match",
		},
		"bool claim as a string": {
			rules: byClaim("mdm_allowed", "true"), claims: map[string]any{"mdm_allowed": "true"}, want: "match",
		},
		"number claim": {
			rules: byClaim("level", "3"), claims: map[string]any{"level": 3.0}, want: "match",
		},
		"number claim with a fraction": {
			rules: byClaim("level", "2.5"), claims: map[string]any{"level": 2.5}, want: "match",
		},
		"number claim not equal": {
			rules: byClaim("level", "3"), claims: map[string]any{"level": 4.0}, want: "fallback",
		},
		"number claim of seven digits": {
			rules: byClaim("employee_number", "1234567"), claims: map[string]any{"employee_number": 1234567.0}, want: "match",
		},
		"number claim of a million": {
			rules: byClaim("cost_center", "1000000"), claims: map[string]any{"cost_center": 1e6}, want: "match",
		},
		"object claim never matches": {
			rules: byClaim("address", "x"), claims: map[string]any{"address": map[string]any{"x": "x"}}, want: "fallback",
		},
		"null claim never matches": {
			rules: byClaim("department", ""), claims: map[string]any{"department": nil}, want: "fallback",
		},
		"every condition must be met": {
			rules: []Rule{
				{Name: "both", Claims: []ClaimMatch{{Claim: "groups", Values: []string{"mdm-adde"}}, {Claim: "department", Values: []string{"IT"}}}},
				{Name: "fallback"},
			},
			claims: map[string]any{"groups": []any{"mdm-adde"}, "department": "Sales"}, want: "fallback",
		},
		"every condition met": {
			rules: []Rule{
				{Name: "both", Claims: []ClaimMatch{{Claim: "groups", Values: []string{"mdm-adde"}}, {Claim: "department", Values: []string{"IT"}}}},
				{Name: "fallback"},
			},
			claims: map[string]any{"groups": []any{"mdm-adde"}, "department": "IT"}, want: "both",
		},
		"a deny depending on claims applies at sign-in": {
			rules:  []Rule{{Name: "no contractors", Claims: groups("contractors"), Deny: true}, {Name: "staff"}},
			claims: map[string]any{"groups": []any{"staff", "contractors"}}, want: "no contractors",
		},
		"a deny depending on claims passed over": {
			rules:  []Rule{{Name: "no contractors", Claims: groups("contractors"), Deny: true}, {Name: "staff"}},
			claims: map[string]any{"groups": []any{"staff"}}, want: "staff",
		},
		"domain still matters": {
			rules:  []Rule{{Name: "corp adde", Domains: []string{"corp.example.com"}, Claims: groups("mdm-adde"), Mode: "adde"}, {Name: "byod"}},
			domain: "example.com", claims: map[string]any{"groups": []any{"mdm-adde"}}, want: "byod",
		},
		"family still matters": {
			rules:  []Rule{{Name: "mac adde", Families: []string{"Mac"}, Claims: groups("mdm-adde"), Mode: "adde"}},
			family: "iPhone", claims: map[string]any{"groups": []any{"mdm-adde"}}, want: "ErrNoRule",
		},
		"no rule matches": {
			rules:  []Rule{{Name: "adde staff", Claims: groups("mdm-adde"), Mode: "adde"}},
			claims: map[string]any{"groups": []any{"staff"}}, want: "ErrNoRule",
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := validated(t, c.rules...)
			domain, family := c.domain, c.family
			if domain == "" {
				domain = "example.com"
			}
			if family == "" {
				family = "iPhone"
			}
			l := &lookups{claims: c.claims}
			if got := nameOf(p.SignIn(domain, family, l.claim)); got != c.want {
				t.Errorf("SignIn = %s, want %s", got, c.want)
			}
		})
	}
}

// SignIn asks for a claim only when a rule that matches the device needs
// it, and stops at the first rule that decides: every lookup may cost a
// UserInfo request.
func TestSignInLooksUpOnlyNeededClaims(t *testing.T) {
	p := validated(t,
		Rule{Name: "corp", Domains: []string{"corp.example.com"}, Claims: []ClaimMatch{{Claim: "corp_role", Values: []string{"x"}}}},
		Rule{Name: "macs", Families: []string{"Mac"}, Claims: []ClaimMatch{{Claim: "mac_role", Values: []string{"x"}}}},
		Rule{Name: "both", Claims: []ClaimMatch{{Claim: "department", Values: []string{"IT"}}, {Claim: "groups", Values: []string{"mdm-adde"}}}},
		Rule{Name: "open"},
		Rule{Name: "never reached", Claims: []ClaimMatch{{Claim: "unreached", Values: []string{"x"}}}},
	)
	l := &lookups{claims: map[string]any{"department": "Sales"}}
	if got := nameOf(p.SignIn("example.com", "iPhone", l.claim)); got != "open" {
		t.Fatalf("SignIn = %s, want open", got)
	}
	// department is not met, so groups is not asked for either.
	if want := []string{"department"}; !slices.Equal(l.asked, want) {
		t.Errorf("claims looked up: %q, want %q", l.asked, want)
	}
}

// An error looking up a claim (say, UserInfo is down) is the caller's to
// handle: it is returned as is, and no rule is picked.
func TestSignInClaimsError(t *testing.T) {
	errDown := errors.New("userinfo unavailable")
	p := validated(t,
		Rule{Name: "adde staff", Claims: groups("mdm-adde"), Mode: "adde"},
		Rule{Name: "byod"},
	)
	r, err := p.SignIn("example.com", "iPhone", func(string) (any, error) { return nil, errDown })
	if !errors.Is(err, errDown) || r != nil {
		t.Errorf("SignIn = %v, %v; want nil, the claims error", r, err)
	}
	if errors.Is(err, ErrNoRule) {
		t.Errorf("a claims error reported as no rule: %v", err)
	}

	// A rule without claims before it decides without any lookup.
	p = validated(t, Rule{Name: "open"}, Rule{Name: "adde staff", Claims: groups("mdm-adde")})
	r, err = p.SignIn("example.com", "iPhone", func(string) (any, error) { return nil, errDown })
	if got := nameOf(r, err); got != "open" {
		t.Errorf("SignIn = %s, want open", got)
	}
}

func TestClaimMatchMet(t *testing.T) {
	m := ClaimMatch{Claim: "c", Values: []string{"a", "true", "42"}}
	for _, c := range []struct {
		v    any
		want bool
	}{
		{"a", true},
		{"b", false},
		{"A", false},
		{"", false},
		{true, true},
		{false, false},
		{42.0, true},
		{42.5, false},
		{[]any{"b", "a"}, true},
		{[]any{"b", "c"}, false},
		{[]any{false, true}, true},
		{[]any{}, false},
		{nil, false},
		{map[string]any{"a": "a"}, false},
		// Only what encoding/json produces counts.
		{[]string{"a"}, false},
		{42, false},
	} {
		if got := m.Met(c.v); got != c.want {
			t.Errorf("Met(%#v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	profiles := func(name string) bool { return name == "default" || name == "kiosk" }
	for name, c := range map[string]struct {
		rules []Rule
		// err is a part of the error; "" for none.
		err string
	}{
		"valid": {rules: []Rule{
			{Name: "no contractors", Claims: groups("contractors"), Deny: true, Message: "Contractors enroll through the vendor portal."},
			{Name: "adde staff", Domains: []string{"example.com"}, Families: []string{"iPhone", "iPad", "Mac", "RealityDevice"},
				Claims: groups("mdm-adde"), Mode: "adde", Profile: "kiosk", RequiredAppID: 1234567890, MaxDevices: 3},
			{Name: "byod", Mode: "byod"},
			{Name: "everyone else"},
		}},
		"unknown family": {
			rules: []Rule{{Name: "phones", Families: []string{"iPhone", "iPod"}}},
			err:   `phones: unknown model family "iPod"`,
		},
		"family in the wrong case": {
			rules: []Rule{{Name: "phones", Families: []string{"iphone"}}},
			err:   `phones: unknown model family "iphone"`,
		},
		"bad mode": {
			rules: []Rule{{Name: "ade", Mode: "ade"}},
			err:   `ade: mode "ade": want byod or adde`,
		},
		"mode in the wrong case": {
			rules: []Rule{{Name: "upper", Mode: "ADDE"}},
			err:   `upper: mode "ADDE"`,
		},
		"deny with a mode": {
			rules: []Rule{{Name: "no", Deny: true, Mode: "byod"}},
			err:   "no: a deny rule takes no mode",
		},
		"deny with a profile": {
			rules: []Rule{{Name: "no", Deny: true, Profile: "kiosk"}},
			err:   "no: a deny rule takes no mode, profile",
		},
		"deny with max_devices": {
			rules: []Rule{{Name: "no", Deny: true, MaxDevices: 1}},
			err:   "no: a deny rule takes no mode, profile, max_devices",
		},
		"deny with required_app_id": {
			rules: []Rule{{Name: "no", Deny: true, RequiredAppID: 1}},
			err:   "no: a deny rule takes no mode, profile, max_devices or required_app_id",
		},
		"negative max_devices": {
			rules: []Rule{{Name: "limit", MaxDevices: -1}},
			err:   "limit: max_devices and required_app_id must not be negative",
		},
		"negative required_app_id": {
			rules: []Rule{{Name: "app", RequiredAppID: -5}},
			err:   "app: max_devices and required_app_id must not be negative",
		},
		"unknown profile": {
			rules: []Rule{{Name: "kiosks"}, {Name: "shared", Profile: "shared-ipad"}},
			err:   `shared: unknown enrollment profile "shared-ipad"`,
		},
		"claim without values": {
			rules: []Rule{{Name: "adde staff", Claims: []ClaimMatch{{Claim: "groups"}}}},
			err:   "adde staff: a claim condition needs a claim and at least one value",
		},
		"claim with an empty value list": {
			rules: []Rule{{Name: "adde staff", Claims: []ClaimMatch{{Claim: "groups", Values: []string{}}}}},
			err:   "adde staff: a claim condition needs a claim and at least one value",
		},
		"values without a claim": {
			rules: []Rule{{Name: "adde staff", Claims: []ClaimMatch{{Values: []string{"mdm-adde"}}}}},
			err:   "adde staff: a claim condition needs a claim and at least one value",
		},
		"errors name a rule by its position when it has no name": {
			rules: []Rule{{Name: "first"}, {Mode: "adde"}, {Mode: "kiosk"}},
			err:   `rule 3: mode "kiosk"`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := &Policy{Rules: c.rules}
			err := p.Validate(profiles)
			switch {
			case c.err == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case c.err != "" && err == nil:
				t.Errorf("Validate accepted the rules, want an error with %q", c.err)
			case c.err != "" && !strings.Contains(err.Error(), c.err):
				t.Errorf("Validate: %v, want an error with %q", err, c.err)
			}
		})
	}
}

// Without a profile lookup, any profile name is accepted (the caller has
// none to check against).
func TestValidateWithoutProfiles(t *testing.T) {
	p := &Policy{Rules: []Rule{{Name: "kiosks", Profile: "whatever"}}}
	if err := p.Validate(nil); err != nil {
		t.Errorf("Validate(nil): %v", err)
	}
	asked := []string{}
	p = &Policy{Rules: []Rule{{Name: "default profile"}, {Name: "kiosks", Profile: "kiosk"}}}
	if err := p.Validate(func(name string) bool { asked = append(asked, name); return true }); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if !slices.Equal(asked, []string{"kiosk"}) {
		t.Errorf("profiles looked up: %q, want only the named one", asked)
	}
}

// Validate names unnamed rules "rule N" (by position, from 1) for logs and
// refusal pages, and normalizes domains.
func TestValidateDefaults(t *testing.T) {
	p := &Policy{Rules: []Rule{
		{},
		{Name: "staff", Domains: []string{"Example.COM.", "corp.EXAMPLE.com"}},
		{Deny: true},
	}}
	if err := p.Validate(nil); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range p.Rules {
		names = append(names, r.Name)
	}
	if want := []string{"rule 1", "staff", "rule 3"}; !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
	if want := []string{"example.com", "corp.example.com"}; !slices.Equal(p.Rules[1].Domains, want) {
		t.Errorf("domains %q, want %q", p.Rules[1].Domains, want)
	}
	// Validating again changes nothing.
	if err := p.Validate(nil); err != nil || p.Rules[0].Name != "rule 1" || p.Rules[2].Name != "rule 3" {
		t.Errorf("second Validate: %v, names %q %q", err, p.Rules[0].Name, p.Rules[2].Name)
	}
}

// A rule's mode comes first, then the family's, then the default, then
// byod.
func TestModes(t *testing.T) {
	full := Modes{Default: "adde", ByFamily: map[string]string{"Mac": "byod", "iPad": "adde"}}
	for name, c := range map[string]struct {
		modes  Modes
		rule   *Rule
		family string
		want   string
	}{
		"rule mode over family mode":         {full, &Rule{Mode: "adde"}, "Mac", "adde"},
		"rule mode over default":             {Modes{Default: "adde"}, &Rule{Mode: "byod"}, "iPhone", "byod"},
		"family mode over default":           {full, &Rule{}, "Mac", "byod"},
		"family mode when the rule has none": {full, &Rule{}, "iPad", "adde"},
		"default for another family":         {full, &Rule{}, "iPhone", "adde"},
		"default without a rule":             {full, nil, "RealityDevice", "adde"},
		"family mode without a rule":         {full, nil, "Mac", "byod"},
		"byod without any setting":           {Modes{}, &Rule{}, "iPhone", "byod"},
		"byod without rule and setting":      {Modes{}, nil, "", "byod"},
		"rule mode without settings":         {Modes{}, &Rule{Mode: "adde"}, "iPhone", "adde"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := c.modes.Mode(c.rule, c.family); got != c.want {
				t.Errorf("Mode = %q, want %q", got, c.want)
			}
		})
	}
}

func TestDomainOf(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":      "example.com",
		"Alice@Example.COM":      "example.com",
		"alice@corp.example.com": "corp.example.com",
		`"a@b"@example.com`:      "example.com",
		"alice":                  "",
		"":                       "",
		"alice@":                 "",
		"@example.com":           "example.com",
		"alice@bob@EXAMPLE.net":  "example.net",
	} {
		if got := DomainOf(in); got != want {
			t.Errorf("DomainOf(%q) = %q, want %q", in, got, want)
		}
	}
}
