package device

import (
	"net/url"
	"strings"
)

// CallbackHost is the host of the web sign-in callback URL.
const CallbackHost = "authentication-results"

// ParseSignInCallback extracts the access token from the URL that ends an
// apple-as-web sign-in:
// apple-remotemanagement-user-login://authentication-results?access-token=…
// The scheme and host are checked and the first access-token item is taken,
// percent-decoded without turning '+' into a space.
func ParseSignInCallback(raw string) (string, error) {
	if !strings.HasPrefix(raw, CallbackScheme+"://") {
		return "", deviation(StepCallback, "callback %q does not start with %s://", clipURL(raw), CallbackScheme)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", &ProtocolError{Step: StepCallback, Reason: "callback is not a URL", Err: err}
	}
	if u.Host != CallbackHost {
		return "", deviation(StepCallback, "callback host %q, want %q", u.Host, CallbackHost)
	}
	tok, ok, err := rawQueryFirst(u.RawQuery, "access-token")
	if err != nil {
		return "", &ProtocolError{Step: StepCallback, Reason: "access-token is not correctly percent-encoded", Err: err}
	}
	if !ok || tok == "" {
		return "", deviation(StepCallback, "callback without an access-token item")
	}
	return tok, nil
}

// parseOAuthCallback checks the authorization response the device receives
// at its redirect-url: the URL up to the query must equal redirectURL, and
// the query must carry code and exactly the state the device sent. An
// error=… answer is an *OAuthError.
func parseOAuthCallback(raw, redirectURL, state string) (string, error) {
	base, query, _ := strings.Cut(raw, "?")
	if base != redirectURL {
		return "", deviation(StepCallback, "authorization redirect to %q, want the redirect-url %q", clipURL(raw), redirectURL)
	}
	if e, ok, _ := rawQueryFirst(query, "error"); ok {
		desc, _, _ := rawQueryFirst(query, "error_description")
		return "", &OAuthError{Step: StepCallback, Code: e, Description: desc}
	}
	code, ok, err := rawQueryFirst(query, "code")
	if err != nil || !ok || code == "" {
		return "", deviation(StepCallback, "authorization response without code")
	}
	got, ok, err := rawQueryFirst(query, "state")
	if err != nil || !ok {
		return "", deviation(StepCallback, "authorization response without state")
	}
	if got != state {
		return "", deviation(StepCallback, "authorization response state does not echo the state sent")
	}
	return code, nil
}

// clipURL drops the query of a URL for error messages (it may hold tokens).
func clipURL(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i] + "?…"
	}
	return raw
}
