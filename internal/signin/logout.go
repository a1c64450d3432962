package signin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// LogoutEvent is the member of a logout token's events claim that makes it
// a back-channel logout token (OpenID Connect Back-Channel Logout 1.0,
// section 2.4).
const LogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Limits of logout token verification.
const (
	// MaxLogoutTokenSize bounds the raw logout token.
	MaxLogoutTokenSize = 16 << 10
	// DefaultLogoutMaxAge is how old (by iat) a logout token may be.
	DefaultLogoutMaxAge = 10 * time.Minute
	// DefaultLogoutLeeway absorbs clock skew on iat and exp.
	DefaultLogoutLeeway = time.Minute
	// maxJOSEHeader bounds the encoded JOSE header read before the
	// signature is checked.
	maxJOSEHeader = 2 << 10
)

// ErrLogoutToken is the class of every logout token refusal: errors.Is
// reports it for a *LogoutError.
var ErrLogoutToken = errors.New("invalid logout token")

// LogoutReason names why a logout token was refused. The values are stable:
// they appear in audit entries.
type LogoutReason string

// Logout token refusals.
const (
	LogoutOversized LogoutReason = "oversized"        // larger than MaxLogoutTokenSize
	LogoutMalformed LogoutReason = "malformed"        // not a JWS compact JWT, or claims of the wrong type
	LogoutType      LogoutReason = "wrong_typ"        // typ header present but not logout+jwt
	LogoutAlg       LogoutReason = "alg_not_allowed"  // none, HMAC, or an algorithm the provider does not advertise
	LogoutSignature LogoutReason = "bad_signature"    // not signed by a key of the provider's key set
	LogoutIssuer    LogoutReason = "wrong_issuer"     // iss is not the provider
	LogoutAudience  LogoutReason = "wrong_audience"   // aud does not contain our client id
	LogoutIssuedAt  LogoutReason = "bad_iat"          // iat missing or in the future
	LogoutTooOld    LogoutReason = "too_old"          // iat older than the maximum age
	LogoutExpired   LogoutReason = "expired"          // exp missing or past
	LogoutNoJTI     LogoutReason = "missing_jti"      // no jti
	LogoutEvents    LogoutReason = "bad_events"       // events missing, or without the back-channel logout member object
	LogoutNonce     LogoutReason = "nonce_present"    // a nonce claim (an ID token, not a logout token)
	LogoutNoSubject LogoutReason = "no_sub_or_sid"    // neither sub nor sid
	LogoutEncrypted LogoutReason = "encrypted_token"  // a JWE: encrypted logout tokens are not supported
	LogoutBadHeader LogoutReason = "malformed_header" // JOSE header unreadable or too large
)

// LogoutError is a refused logout token. Detail never contains the token.
type LogoutError struct {
	Reason LogoutReason
	Detail string
}

func (e *LogoutError) Error() string {
	if e.Detail == "" {
		return "invalid logout token: " + string(e.Reason)
	}
	return "invalid logout token: " + string(e.Reason) + ": " + e.Detail
}

// Unwrap makes errors.Is(err, ErrLogoutToken) hold.
func (e *LogoutError) Unwrap() error { return ErrLogoutToken }

// LogoutReasonOf returns the reason of a *LogoutError in err's chain, or "".
func LogoutReasonOf(err error) LogoutReason {
	var le *LogoutError
	if errors.As(err, &le) {
		return le.Reason
	}
	return ""
}

func refuse(r LogoutReason, format string, args ...any) error {
	return &LogoutError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// LogoutToken is a verified back-channel logout token.
type LogoutToken struct {
	Issuer string
	// Subject and SessionID are the sub and sid claims; at least one is
	// set.
	Subject   string
	SessionID string
	// JTI is the token's unique identifier.
	JTI      string
	Audience []string
	IssuedAt time.Time
	Expiry   time.Time
	// ReplayUntil is the last moment the token could still be accepted:
	// remember its JTI until then.
	ReplayUntil time.Time
}

// ReplayKey is the key under which the token's use is remembered: a
// namespaced hash of iss and jti (never the jti itself).
func (t *LogoutToken) ReplayKey() string {
	h := sha256.New()
	h.Write([]byte(t.Issuer))
	h.Write([]byte{0})
	h.Write([]byte(t.JTI))
	return "bcl:" + hex.EncodeToString(h.Sum(nil))
}

// Logout verifies back-channel logout tokens from the relying party's
// provider. The zero MaxAge and Leeway are DefaultLogoutMaxAge and
// DefaultLogoutLeeway.
type Logout struct {
	RP     *RP
	MaxAge time.Duration
	Leeway time.Duration
}

// VerifyLogoutToken verifies raw with the default limits; see
// (*Logout).VerifyLogoutToken.
func (rp *RP) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	return (&Logout{RP: rp}).VerifyLogoutToken(ctx, raw)
}

// VerifyLogoutToken checks a logout token as OpenID Connect Back-Channel
// Logout 1.0 section 2.6 requires: a JWS (not encrypted) whose typ header,
// when present, is logout+jwt, signed with an algorithm the provider
// advertises (never none or HMAC) by a key of its key set; iss is the
// provider, aud contains the client id, iat is present, not in the future
// and not older than MaxAge, exp is present and not past, jti is present,
// events is an object holding the back-channel logout member (an object),
// nonce is absent, and sub or sid is present. Refusals are *LogoutError
// (errors.Is ErrLogoutToken); a provider that cannot be reached is
// ErrUnavailable. The caller checks jti replay (ReplayKey).
func (l *Logout) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	rp := l.RP
	maxAge, leeway := l.MaxAge, l.Leeway
	if maxAge <= 0 {
		maxAge = DefaultLogoutMaxAge
	}
	if leeway <= 0 {
		leeway = DefaultLogoutLeeway
	}
	if len(raw) > MaxLogoutTokenSize {
		return nil, refuse(LogoutOversized, "%d bytes", len(raw))
	}
	alg, err := joseHeader(raw)
	if err != nil {
		return nil, err
	}
	p, _, err := rp.load(ctx)
	if err != nil {
		return nil, err
	}
	if !algAllowed(p, alg) {
		return nil, refuse(LogoutAlg, "%q", sanitize(alg))
	}
	// Signature only: the claims are checked below, each with its reason.
	v := p.Verifier(&oidc.Config{SkipClientIDCheck: true, SkipIssuerCheck: true, SkipExpiryCheck: true, Now: rp.cfg.Now})
	idt, err := v.Verify(rp.ctx(ctx), raw)
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "fetching keys"):
			return nil, fmt.Errorf("%w: jwks: %v", ErrUnavailable, redactErr(err))
		case strings.Contains(msg, "failed to unmarshal claims"):
			return nil, refuse(LogoutMalformed, "claims")
		case strings.Contains(msg, "malformed jwt"):
			return nil, refuse(LogoutMalformed, "%v", err)
		}
		return nil, refuse(LogoutSignature, "%v", err)
	}
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil || claims == nil {
		return nil, refuse(LogoutMalformed, "claims are not a JSON object")
	}
	return checkLogoutClaims(claims, rp.cfg.Issuer, rp.cfg.ClientID, rp.cfg.Now(), maxAge, leeway)
}

// joseHeader reads the JOSE header of a compact JWS before anything else:
// it returns alg, and refuses encrypted tokens, typ other than logout+jwt
// and alg none.
func joseHeader(raw string) (string, error) {
	switch strings.Count(raw, ".") {
	case 2:
	case 4:
		return "", refuse(LogoutEncrypted, "")
	default:
		return "", refuse(LogoutMalformed, "not a compact JWS")
	}
	seg, _, _ := strings.Cut(raw, ".")
	if seg == "" || len(seg) > maxJOSEHeader {
		return "", refuse(LogoutBadHeader, "empty or over %d bytes", maxJOSEHeader)
	}
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "", refuse(LogoutBadHeader, "not base64url")
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(b, &h); err != nil || h == nil {
		return "", refuse(LogoutBadHeader, "not a JSON object")
	}
	var alg string
	if err := json.Unmarshal(h["alg"], &alg); err != nil || alg == "" {
		return "", refuse(LogoutBadHeader, "no alg")
	}
	if strings.EqualFold(alg, "none") {
		return "", refuse(LogoutAlg, "none")
	}
	if rt, ok := h["typ"]; ok {
		var typ string
		if err := json.Unmarshal(rt, &typ); err != nil {
			return "", refuse(LogoutType, "typ is not a string")
		}
		// RFC 7515 section 4.1.9: case-insensitive, "application/" may be
		// left out.
		if !strings.EqualFold(typ, "logout+jwt") && !strings.EqualFold(typ, "application/logout+jwt") {
			return "", refuse(LogoutType, "%q", sanitize(typ))
		}
	}
	if _, ok := h["enc"]; ok {
		return "", refuse(LogoutEncrypted, "")
	}
	return alg, nil
}

// algAllowed reports whether alg is an asymmetric algorithm the provider
// advertises for ID tokens (RS256 when it advertises none).
func algAllowed(p *oidc.Provider, alg string) bool {
	if strings.HasPrefix(strings.ToUpper(alg), "HS") {
		return false
	}
	var doc struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&doc); err != nil || len(doc.Algs) == 0 {
		return alg == oidc.RS256
	}
	return slices.Contains(doc.Algs, alg)
}

// checkLogoutClaims applies the claim rules of section 2.6 to a token
// whose signature was verified.
func checkLogoutClaims(c map[string]json.RawMessage, issuer, clientID string, now time.Time, maxAge, leeway time.Duration) (*LogoutToken, error) {
	t := &LogoutToken{}
	var err error
	if t.Issuer, err = optString(c, "iss"); err != nil {
		return nil, err
	}
	if t.Issuer != issuer {
		return nil, refuse(LogoutIssuer, "%q, want %q", sanitize(t.Issuer), issuer)
	}
	if t.Audience, err = audienceOf(c["aud"]); err != nil {
		return nil, err
	}
	if !slices.Contains(t.Audience, clientID) {
		return nil, refuse(LogoutAudience, "client id not among %d audience(s)", len(t.Audience))
	}
	iat, ok, err := numericDate(c, "iat")
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, refuse(LogoutIssuedAt, "missing")
	case iat.After(now.Add(leeway)):
		return nil, refuse(LogoutIssuedAt, "in the future")
	case now.Sub(iat) > maxAge:
		return nil, refuse(LogoutTooOld, "issued %s ago, at most %s", now.Sub(iat).Round(time.Second), maxAge)
	}
	t.IssuedAt = iat
	exp, ok, err := numericDate(c, "exp")
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, refuse(LogoutExpired, "no exp")
	case now.After(exp.Add(leeway)):
		return nil, refuse(LogoutExpired, "expired %s ago", now.Sub(exp).Round(time.Second))
	}
	t.Expiry = exp
	if t.JTI, err = optString(c, "jti"); err != nil {
		return nil, err
	}
	if t.JTI == "" {
		return nil, refuse(LogoutNoJTI, "")
	}
	if err := checkEvents(c["events"]); err != nil {
		return nil, err
	}
	if _, ok := c["nonce"]; ok {
		return nil, refuse(LogoutNonce, "")
	}
	if t.Subject, err = optString(c, "sub"); err != nil {
		return nil, err
	}
	if t.SessionID, err = optString(c, "sid"); err != nil {
		return nil, err
	}
	if t.Subject == "" && t.SessionID == "" {
		return nil, refuse(LogoutNoSubject, "")
	}
	until := exp
	if u := iat.Add(maxAge); u.Before(until) {
		until = u
	}
	t.ReplayUntil = until.Add(leeway)
	return t, nil
}

// optString returns the string claim name, "" when absent; a claim of
// another type is malformed.
func optString(c map[string]json.RawMessage, name string) (string, error) {
	raw, ok := c[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", refuse(LogoutMalformed, "%s is not a string", name)
	}
	return s, nil
}

// audienceOf reads aud: a string or an array of strings.
func audienceOf(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, refuse(LogoutAudience, "missing")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || many == nil {
		return nil, refuse(LogoutMalformed, "aud is neither a string nor an array of strings")
	}
	return many, nil
}

// numericDate reads a NumericDate claim (seconds since the epoch, possibly
// fractional).
func numericDate(c map[string]json.RawMessage, name string) (time.Time, bool, error) {
	raw, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	var f *float64
	if err := json.Unmarshal(raw, &f); err != nil || f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) ||
		*f < 0 || *f > 1<<40 {
		return time.Time{}, false, refuse(LogoutMalformed, "%s is not a NumericDate", name)
	}
	sec, frac := math.Modf(*f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// checkEvents requires events to be a JSON object with the back-channel
// logout member, itself a JSON object.
func checkEvents(raw json.RawMessage) error {
	if !isObject(raw) {
		return refuse(LogoutEvents, "events is missing or not an object")
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ev); err != nil {
		return refuse(LogoutEvents, "events is not an object")
	}
	m, ok := ev[LogoutEvent]
	if !ok {
		return refuse(LogoutEvents, "no back-channel logout event")
	}
	if !isObject(m) {
		return refuse(LogoutEvents, "the back-channel logout event is not an object")
	}
	return nil
}

func isObject(raw json.RawMessage) bool {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil
}
