// Package policy decides who may enroll how: ordered rules, first match
// wins, each matching on the user-identifier domain, the model family and
// (after sign-in) ID-token claims, and deciding allow or deny, the mode,
// the enrollment profile template, the Required App and the most devices
// one user may have enrolled.
//
// Discovery sees only the domain and the model family: a rule with claim
// conditions cannot be decided there, so discovery takes the first rule
// that matches on domain and family and either has no claim conditions or
// allows (an optimistic answer). The sign-in re-checks with the claims, and
// a mismatch (a deny, or another mode than discovery announced) ends the
// sign-in with no token.
package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Rule is one policy rule. Empty matchers match anything.
type Rule struct {
	// Name identifies the rule in logs and on refusal pages.
	Name string
	// Domains of the typed user identifier (lower case).
	Domains []string
	// Families are discovery model families (iPhone, iPad, Mac,
	// RealityDevice).
	Families []string
	// Claims must all be met by the signed-in user.
	Claims []ClaimMatch

	// Deny refuses; Message tells the user why, in terms an administrator
	// can act on.
	Deny    bool
	Message string
	// Mode is byod or adde; "" leaves the default mode.
	Mode string
	// Profile names the enrollment profile template; "" is the default.
	Profile string
	// RequiredAppID sets RequiredAppIDForMDM; 0 leaves the template's.
	RequiredAppID int64
	// MaxDevices bounds the enrollments one user may have; 0 is no limit.
	MaxDevices int
}

// ClaimMatch requires a claim to equal one of Values, or, for a list claim
// such as groups, to contain one of them.
type ClaimMatch struct {
	Claim  string
	Values []string
}

// Met reports whether the claim value v meets the match.
func (m ClaimMatch) Met(v any) bool {
	one := func(x any) bool {
		var s string
		switch t := x.(type) {
		case string:
			s = t
		case bool:
			s = fmt.Sprint(t)
		case float64:
			s = strconv.FormatFloat(t, 'f', -1, 64)
		default:
			return false
		}
		for _, want := range m.Values {
			if s == want {
				return true
			}
		}
		return false
	}
	if list, ok := v.([]any); ok {
		for _, x := range list {
			if one(x) {
				return true
			}
		}
		return false
	}
	return one(v)
}

// Policy is an ordered list of rules. A request no rule matches is denied.
type Policy struct {
	Rules []Rule
	// Modes are the modes of rules that set none.
	Modes Modes
}

// Validate checks the rules.
func (p *Policy) Validate(profiles func(name string) bool) error {
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("rule %d", i+1)
		}
		for j, d := range r.Domains {
			r.Domains[j] = strings.ToLower(strings.TrimSuffix(d, "."))
		}
		for _, f := range r.Families {
			switch f {
			case "iPhone", "iPad", "Mac", "RealityDevice":
			default:
				return fmt.Errorf("%s: unknown model family %q (want iPhone, iPad, Mac or RealityDevice)", r.Name, f)
			}
		}
		for _, c := range r.Claims {
			if c.Claim == "" || len(c.Values) == 0 {
				return fmt.Errorf("%s: a claim condition needs a claim and at least one value", r.Name)
			}
		}
		if r.Mode != "" && r.Mode != "byod" && r.Mode != "adde" {
			return fmt.Errorf("%s: mode %q: want byod or adde", r.Name, r.Mode)
		}
		if r.Deny && (r.Mode != "" || r.Profile != "" || r.MaxDevices != 0 || r.RequiredAppID != 0) {
			return fmt.Errorf("%s: a deny rule takes no mode, profile, max_devices or required_app_id", r.Name)
		}
		if r.MaxDevices < 0 || r.RequiredAppID < 0 {
			return fmt.Errorf("%s: max_devices and required_app_id must not be negative", r.Name)
		}
		if r.Profile != "" && profiles != nil && !profiles(r.Profile) {
			return fmt.Errorf("%s: unknown enrollment profile %q", r.Name, r.Profile)
		}
	}
	return nil
}

func (r *Rule) matchesDevice(domain, family string) bool {
	return in(r.Domains, strings.ToLower(domain)) && in(r.Families, family)
}

func in(list []string, s string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ErrNoRule: no rule matched.
var ErrNoRule = errors.New("policy: no rule matches")

// Discovery returns the rule that decides a discovery request. A deny rule
// is returned as is (the caller refuses); ErrNoRule when none matches.
func (p *Policy) Discovery(domain, family string) (*Rule, error) {
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.matchesDevice(domain, family) {
			continue
		}
		if len(r.Claims) > 0 && r.Deny {
			continue // undecidable before sign-in: the sign-in re-checks
		}
		return r, nil
	}
	return nil, ErrNoRule
}

// Claims looks up a claim of the signed-in user.
type Claims func(name string) (any, error)

// SignIn returns the rule that decides a signed-in user's request: the
// first rule matching on domain, family and claims. An error from claims
// is returned; ErrNoRule when none matches.
func (p *Policy) SignIn(domain, family string, claims Claims) (*Rule, error) {
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.matchesDevice(domain, family) {
			continue
		}
		ok := true
		for _, c := range r.Claims {
			v, err := claims(c.Claim)
			if err != nil {
				return nil, err
			}
			if !c.Met(v) {
				ok = false
				break
			}
		}
		if ok {
			return r, nil
		}
	}
	return nil, ErrNoRule
}

// Modes are the default enrollment modes: DefaultMode, or FamilyModes by
// model family. A rule's own Mode takes precedence.
type Modes struct {
	Default  string
	ByFamily map[string]string
}

// Mode returns the mode for a request decided by r.
func (m Modes) Mode(r *Rule, family string) string {
	if r != nil && r.Mode != "" {
		return r.Mode
	}
	if mode, ok := m.ByFamily[family]; ok {
		return mode
	}
	if m.Default != "" {
		return m.Default
	}
	return "byod"
}

// DomainOf returns the lower-cased domain of an address, or "".
func DomainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}
