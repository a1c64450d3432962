package fakeidp

import (
	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"time"
)

// BackchannelLogoutEvent is the member of a logout token's events claim
// that makes it a back-channel logout token.
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Logout scripts a back-channel logout token (OpenID Connect Back-Channel
// Logout 1.0, section 2.4).
type Logout struct {
	// Subject and SessionID are the sub and sid claims; empty leaves the
	// claim out.
	Subject   string
	SessionID string
	// Claims are laid over the defaults (iss, aud, iat, exp two minutes
	// later, a fresh jti, events with the back-channel logout member, and
	// sub and sid as above); a nil value removes the claim.
	Claims map[string]any
	// Type is the JOSE typ header. Default: logout+jwt; NoType leaves the
	// header out.
	Type   string
	NoType bool
	// SigningKey signs instead of the published key (with the published
	// key id), for forged tokens.
	SigningKey *rsa.PrivateKey
}

// LogoutToken returns a logout token signed with the provider's published
// key (RS256), as the provider would POST it to a relying party's
// back-channel logout URI. The token is recorded among Secrets.
func (p *Provider) LogoutToken(l Logout) (string, error) {
	now := p.now()
	claims := map[string]any{
		"iss":    p.Issuer,
		"aud":    p.ClientID,
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    "jti-" + rand.Text(),
		"events": map[string]any{BackchannelLogoutEvent: map[string]any{}},
	}
	if l.Subject != "" {
		claims["sub"] = l.Subject
	}
	if l.SessionID != "" {
		claims["sid"] = l.SessionID
	}
	overlay(claims, l.Claims)
	typ := cmp.Or(l.Type, "logout+jwt")
	if l.NoType {
		typ = ""
	}
	raw, err := p.sign(claims, l.SigningKey, typ)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.issued = append(p.issued, raw)
	p.mu.Unlock()
	return raw, nil
}
