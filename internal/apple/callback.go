package apple

import "net/url"

// CallbackScheme is the URL scheme that ends a simple web sign-in: the
// device's web view stops when it is redirected to a URL with this scheme.
const CallbackScheme = "apple-remotemanagement-user-login"

// AuthenticationResultsURL returns the Location of the final 308 of a simple
// web sign-in:
// apple-remotemanagement-user-login://authentication-results?access-token=<token>,
// with the token percent-encoded as a query value.
func AuthenticationResultsURL(accessToken string) string {
	return CallbackScheme + "://authentication-results?access-token=" + url.QueryEscape(accessToken)
}
