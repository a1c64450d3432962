package device

import (
	"net/http"
	"net/url"
	"strings"
)

// Challenge methods.
const (
	MethodWeb    = "apple-as-web"
	MethodOAuth2 = "apple-oauth2"
)

// CallbackScheme is the custom URL scheme that ends a web sign-in or an
// OAuth 2 authorization.
const CallbackScheme = "apple-remotemanagement-user-login"

// Challenge is a parsed WWW-Authenticate: Bearer challenge.
type Challenge struct {
	Method string // MethodWeb or MethodOAuth2

	URL string // apple-as-web: the sign-in page

	AuthorizationURL string // apple-oauth2
	TokenURL         string
	RedirectURL      string
	ClientID         string
	Scope            string // optional
}

// challengeParams are the parameter names a challenge may carry.
var challengeParams = map[string]bool{
	"method": true, "url": true, "authorization-url": true, "token-url": true,
	"redirect-url": true, "client-id": true, "scope": true,
}

// ParseChallenge reads the WWW-Authenticate header of a 401 the way a
// device does: exactly one header holding exactly one challenge, scheme
// "Bearer" (case-sensitive), lower-case hyphenated parameter names, every
// value quoted without '"' or '\', parameters separated by ", ", and the
// parameters its method requires. It does not check URL schemes.
func ParseChallenge(h http.Header) (*Challenge, error) {
	vals := h.Values("WWW-Authenticate")
	switch len(vals) {
	case 0:
		return nil, deviation(StepChallenge, "401 without a WWW-Authenticate header")
	case 1:
	default:
		return nil, deviation(StepChallenge, "%d WWW-Authenticate headers: the device joins them and cancels; send exactly one", len(vals))
	}
	return parseChallengeValue(vals[0])
}

func parseChallengeValue(v string) (*Challenge, error) {
	scheme, rest, _ := strings.Cut(v, " ")
	if scheme != "Bearer" {
		if strings.EqualFold(scheme, "Bearer") {
			return nil, deviation(StepChallenge, "auth scheme %q: the device compares \"Bearer\" case-sensitively", scheme)
		}
		return nil, deviation(StepChallenge, "auth scheme %q, want \"Bearer\"", scheme)
	}
	params := map[string]string{}
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return nil, deviation(StepChallenge, "malformed parameter list at %q (one challenge of name=\"value\" pairs separated by \", \")", rest)
		}
		name := rest[:eq]
		if strings.ContainsAny(name, " ,\t") {
			return nil, deviation(StepChallenge, "a second challenge or a malformed parameter at %q: exactly one challenge is allowed", clip(rest, 30))
		}
		if err := checkParamName(name); err != nil {
			return nil, err
		}
		rest = rest[eq+1:]
		if !strings.HasPrefix(rest, `"`) {
			return nil, deviation(StepChallenge, "value of %s is not quoted", name)
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, deviation(StepChallenge, "value of %s has no closing quote", name)
		}
		value := rest[1 : 1+end]
		if strings.ContainsRune(value, '\\') {
			return nil, deviation(StepChallenge, "value of %s contains a backslash", name)
		}
		rest = rest[end+2:]
		if _, dup := params[name]; dup {
			return nil, deviation(StepChallenge, "parameter %s appears twice", name)
		}
		params[name] = value
		if rest == "" {
			break
		}
		if !strings.HasPrefix(rest, ", ") || len(rest) == 2 {
			return nil, deviation(StepChallenge, "parameters must be separated by \", \" (found %q after %s)", clip(rest, 20), name)
		}
		rest = rest[2:]
	}
	for name := range params {
		if name == "redirect-uri" {
			return nil, deviation(StepChallenge, "parameter redirect-uri: the device reads redirect-url")
		}
		if !challengeParams[name] {
			return nil, deviation(StepChallenge, "unknown parameter %q", name)
		}
	}
	c := &Challenge{
		Method:           params["method"],
		URL:              params["url"],
		AuthorizationURL: params["authorization-url"],
		TokenURL:         params["token-url"],
		RedirectURL:      params["redirect-url"],
		ClientID:         params["client-id"],
		Scope:            params["scope"],
	}
	switch c.Method {
	case MethodWeb:
		if err := requireAbs("url", c.URL); err != nil {
			return nil, err
		}
	case MethodOAuth2:
		for _, p := range [][2]string{{"authorization-url", c.AuthorizationURL}, {"token-url", c.TokenURL}} {
			if err := requireAbs(p[0], p[1]); err != nil {
				return nil, err
			}
		}
		if c.ClientID == "" {
			return nil, deviation(StepChallenge, "apple-oauth2 challenge without client-id")
		}
		if c.RedirectURL == "" {
			return nil, deviation(StepChallenge, "apple-oauth2 challenge without redirect-url")
		}
		if !strings.HasPrefix(c.RedirectURL, CallbackScheme+":") {
			return nil, deviation(StepChallenge, "redirect-url %q does not use the %s: scheme", c.RedirectURL, CallbackScheme)
		}
	case "":
		return nil, deviation(StepChallenge, "challenge without method")
	default:
		return nil, deviation(StepChallenge, "method %q, want %q or %q", c.Method, MethodWeb, MethodOAuth2)
	}
	return c, nil
}

func checkParamName(name string) error {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', c == '-':
		case 'A' <= c && c <= 'Z':
			return deviation(StepChallenge, "parameter name %q must be lower-case (compared case-sensitively)", name)
		default:
			return deviation(StepChallenge, "invalid parameter name %q", clip(name, 30))
		}
	}
	return nil
}

func requireAbs(name, v string) error {
	if v == "" {
		return deviation(StepChallenge, "challenge without %s", name)
	}
	u, err := url.Parse(v)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return deviation(StepChallenge, "%s %q is not an absolute URL", name, v)
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
