// Package audit names the security-relevant events mdmauth logs. Every
// audit entry carries a stable "event" field (documented in
// docs/audit-events.md) and, when it is about a request, the client's
// address and user agent. Tokens, codes and secrets never appear.
package audit

import (
	"net"
	"net/http"

	"go.uber.org/zap"
)

// Event names.
const (
	DiscoveryAnswered    = "discovery.answered"
	DiscoveryRedirected  = "discovery.redirected"
	DiscoveryRefused     = "discovery.refused"
	EnrollmentChallenged = "enrollment.challenged"
	EnrollmentRefused    = "enrollment.refused"
	ProfileServed        = "profile.served"
	SignInStarted        = "signin.started"
	SignInFailed         = "signin.failed"
	PolicyApplied        = "signin.policy_applied"
	ManagedAppleIDKept   = "signin.managed_apple_id_kept"
	TokenIssued          = "token.issued"
	CodeIssued           = "oauth2.code_issued"
	OAuthTokenIssued     = "oauth2.token_issued"
	OAuthTokenRefreshed  = "oauth2.token_refreshed"
	OAuthTokenRefused    = "oauth2.token_refused"
	IdPRevalidated       = "idp.revalidated"
	IdPRefused           = "idp.refused"
	IdPClaimsFailed      = "idp.claims_failed"
	IdPPostponed         = "idp.revalidation_postponed"
	MDMRejected          = "mdm.rejected"
	MDMChallenged        = "mdm.challenged"
	MDMNotAccepted       = "mdm.not_accepted_upstream"
	// MDMRefused: a request on an MDM path of the other enrollments named
	// an account-driven enrollment (403).
	MDMRefused           = "mdm.refused"
	TokenBound           = "token.bound"
	EnrollmentCheckedOut = "enrollment.checked_out"
	MacRecorded          = "enrollment.mac_recorded"
	// LogoutBackchannel: the identity provider ended a session through
	// back-channel logout; LogoutRefused: a logout request was refused.
	LogoutBackchannel = "logout.backchannel"
	LogoutRefused     = "logout.refused"
	// RateLimitExceeded: an abuse limit refused a request (429); logged
	// once per key until the key is allowed again.
	RateLimitExceeded = "ratelimit.exceeded"
)

// ClientIP returns the client's address for a request; the Caddy module
// sets it to Caddy's own notion (which honours trusted_proxies). Default:
// the connection's remote address.
type ClientIP func(*http.Request) string

// Addr returns the client's address: ip's answer, else the connection's
// remote host.
func Addr(r *http.Request, ip ClientIP) string {
	if ip != nil {
		if a := ip(r); a != "" {
			return a
		}
	}
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// Fields returns the event field and, with a request, client_ip and
// user_agent.
func Fields(event string, r *http.Request, ip ClientIP) []zap.Field {
	f := []zap.Field{zap.String("event", event)}
	if r == nil {
		return f
	}
	addr := Addr(r, ip)
	ua := r.UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	return append(f, zap.String("client_ip", addr), zap.String("user_agent", ua))
}

// Admin API events (logger admin.api.mdm_auth): an operator's change made
// through Caddy's admin endpoint. client_ip is the admin client's address
// and, on the remote (mTLS) endpoint, admin_cert names its certificate.
const (
	AdminStateChanged    = "admin.enrollment_state_changed"
	AdminGrantsRevoked   = "admin.grants_revoked"
	AdminTokenRevoked    = "admin.token_revoked"
	AdminProfileRendered = "admin.profile_rendered"
	AdminBackup          = "admin.backup"
)
