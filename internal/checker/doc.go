// Package checker checks a live account-driven enrollment deployment the
// way a device meets it, and says what to fix.
//
// Check walks service discovery and the first enrollment POST like an
// iPhone, iPad or Mac: it asks
// https://<domain>/.well-known/com.apple.remotemanagement with
// user-identifier and model-family (User-Agent DeviceManagementClient/1.0,
// no cookies), follows redirects without copying the query, then POSTs a
// CMS-signed enrollment request to the advertised BaseURL without
// Authorization and reads the 401 challenge, and fetches the Enrollment SSO
// document when the 401 names one. Unlike the device emulator, which stops
// at the first deviation, it keeps going where it can and reports every
// deviation from Apple's rules as a Finding with a concrete fix:
//
//   - TLS: version 1.2 or later, a certificate the device trusts (chain,
//     host name, validity, Apple's key size, extended key usage and
//     lifetime rules), expiry soon (a warning);
//   - discovery: redirects that drop user-identifier or model-family,
//     status (403 com.apple.well-known.failed with its message, 404 and
//     Apple Business Manager's fallback), Content-Type application/json,
//     exactly {"Servers":[{"Version":…,"BaseURL":…}]} (every extra or
//     missing key, zero or several servers, unknown Version, non-https
//     BaseURL), Cache-Control: no-store (a warning);
//   - the first enrollment POST: redirects that drop the body, 401 and not
//     anything else, exactly one WWW-Authenticate with one challenge,
//     scheme "Bearer" in that case, lower-case parameter names, quoted
//     values without escapes, ", " separators, the parameters each method
//     requires (apple-as-web: url; apple-oauth2: authorization-url,
//     token-url, redirect-url, client-id), redirect-uri instead of
//     redirect-url, https URLs;
//   - Enrollment SSO: X-Apple-MDM-ESSO never sent to a Mac, and the
//     document it names valid (device.ParseESSODocument).
//
// A Finding is Fatal when a device would fail there; Report.OK is true only
// when there is none. Check sends no credentials and never signs in: it
// stops at the challenge.
package checker
