package signin

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/policy"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

var unavailable = &refusal{http.StatusServiceUnavailable, "idp_unavailable", "Sign-in is temporarily unavailable", "The organization's sign-in service cannot be reached. Please try again in a few minutes."}

// applyPolicy re-checks the policy with the user's claims and records its
// choices in the grant.
func (s *Web) applyPolicy(ctx context.Context, st loginState, id *Identity, maid string, g *token.Grant) *refusal {
	domain := policy.DomainOf(st.UserIdentifier)
	if domain == "" {
		domain = policy.DomainOf(maid)
	}
	family := st.Flow.ModelFamily
	rule, err := s.Policy.SignIn(domain, family, func(name string) (any, error) { return id.Claim(ctx, name) })
	switch {
	case errors.Is(err, ErrUnavailable):
		return unavailable
	case errors.Is(err, policy.ErrNoRule):
		return &refusal{http.StatusForbidden, "policy_no_rule", "You cannot enroll this device", "Your organization's enrollment policy has no rule that lets your account enroll this device. Contact your IT administrator."}
	case err != nil:
		return &refusal{http.StatusForbidden, "claims_invalid", "Sign-in failed", "Your account's details could not be verified. Contact your IT administrator."}
	case rule.Deny:
		msg := rule.Message
		if msg == "" {
			msg = "Your organization's enrollment policy does not let your account enroll this device."
		}
		return &refusal{http.StatusForbidden, "policy_denied: " + rule.Name, "You cannot enroll this device", msg + " (policy rule: " + rule.Name + ")"}
	}
	if st.Flow.Kind == KindEnroll {
		if want := s.Policy.Modes.Mode(rule, family); want != st.Flow.Mode {
			return &refusal{http.StatusForbidden, "policy_mode: " + rule.Name, "You cannot enroll this device this way",
				"Your account may enroll this device only with " + modeName(want) + ", not " + modeName(st.Flow.Mode) + ". Contact your IT administrator (policy rule: " + rule.Name + ")."}
		}
		if rule.MaxDevices > 0 {
			n, err := s.activeEnrollments(ctx, id.Issuer, id.Subject)
			if err != nil {
				return &refusal{http.StatusServiceUnavailable, "store_unavailable", "Sign-in is temporarily unavailable", "Please try again in a few minutes."}
			}
			if n >= rule.MaxDevices {
				return &refusal{http.StatusForbidden, "device_limit: " + rule.Name, "You have enrolled as many devices as allowed",
					"Your account may have at most " + itoa(rule.MaxDevices) + " enrolled devices. Remove one from management, or contact your IT administrator."}
			}
		}
	}
	g.Profile, g.RequiredAppID = rule.Profile, rule.RequiredAppID
	s.Log.Info("policy rule applied", zap.String("event", audit.PolicyApplied), zap.String("rule", rule.Name), zap.String("sub", id.Subject), zap.String("mode", g.Mode))
	return nil
}

func (s *Web) activeEnrollments(ctx context.Context, iss, sub string) (int, error) {
	es, err := s.Store.EnrollmentsForUser(ctx, iss, sub)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range es {
		if e.State != store.StateRemoved {
			n++
		}
	}
	return n, nil
}

func modeName(m string) string {
	if m == "adde" {
		return "Device Enrollment"
	}
	return "User Enrollment"
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

var templateVar = regexp.MustCompile(`\{claim\.([A-Za-z0-9_:.-]+)\}`)

// ValidateTemplate checks a Managed Apple ID template.
func ValidateTemplate(t string) error {
	if !templateVar.MatchString(t) {
		return errors.New("managed_apple_id_template must use at least one {claim.NAME}")
	}
	rest := templateVar.ReplaceAllString(t, "x")
	if strings.ContainsAny(rest, "{} \t") || strings.Count(rest, "@") != 1 {
		return errors.New("managed_apple_id_template must read like an address: one @, no spaces, only {claim.NAME} placeholders")
	}
	return nil
}

// templatedAppleID builds the Managed Apple ID from the template.
func (s *Web) templatedAppleID(ctx context.Context, id *Identity, typed string) (string, *refusal) {
	var ref *refusal
	out := templateVar.ReplaceAllStringFunc(s.Claims.Template, func(m string) string {
		if ref != nil {
			return ""
		}
		name := templateVar.FindStringSubmatch(m)[1]
		v, err := id.Claim(ctx, name)
		if errors.Is(err, ErrUnavailable) {
			ref = unavailable
			return ""
		}
		str, _ := v.(string)
		if err != nil || str == "" {
			ref = &refusal{http.StatusForbidden, "no_managed_apple_id", "Your account cannot enroll devices", "Your account has no " + sanitize(name) + " to build the Managed Apple Account from. Contact your IT administrator."}
			return ""
		}
		if name == "email" && s.Claims.RequireEmailVerified {
			ev, err := id.Claim(ctx, "email_verified")
			if errors.Is(err, ErrUnavailable) {
				ref = unavailable
				return ""
			}
			if !truthy(ev) {
				ref = &refusal{http.StatusForbidden, "email_unverified", "Your account cannot enroll devices", "Your email address is not verified at the identity provider. Contact your IT administrator."}
				return ""
			}
		}
		return str
	})
	if ref != nil {
		return "", ref
	}
	if !isAddress(out) {
		return "", &refusal{http.StatusForbidden, "bad_managed_apple_id", "Your account cannot enroll devices", "The Managed Apple Account built for your account is not a valid address. Contact your IT administrator."}
	}
	if s.Claims.RequireIdentifierMatch && !strings.EqualFold(typed, out) {
		return "", &refusal{http.StatusForbidden, "identifier_mismatch", "Signed in with a different account", "You signed in with an account other than the one you typed on your device. Start again and sign in as " + sanitize(typed) + "."}
	}
	return out, nil
}
