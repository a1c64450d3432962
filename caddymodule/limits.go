package caddymodule

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/ratelimit"
)

// Limits are the abuse limits, kept in memory by each handler (a reload
// starts them afresh). Unset options keep their defaults; every rate is
// written "<events>/<period> [burst <n>]" (period s, m or h, optionally
// with a count: 10/30s) or "off". Thousands of devices can share one
// carrier or office NAT, so the per-address defaults are generous, and
// the MDM paths are never limited per address unless bearer_failures is
// set. A refused request is answered 429 with Retry-After and logged once
// per key as ratelimit.exceeded.
type Limits struct {
	// Off disables every limit.
	Off bool `json:"off,omitempty"`
	// Discovery: discovery requests per client address. Default 600/m burst 200.
	Discovery string `json:"discovery,omitempty"`
	// DiscoveryUser: discovery requests per user identifier (lower-cased).
	// Default 30/m burst 10.
	DiscoveryUser string `json:"discovery_user,omitempty"`
	// SignIn: sign-in starts (web sign-in URL, OAuth 2 authorization) per
	// client address. Default 300/m burst 100.
	SignIn string `json:"sign_in,omitempty"`
	// SignInUser: sign-in starts per user identifier. Default 20/m burst 10.
	SignInUser string `json:"sign_in_user,omitempty"`
	// Callback: identity-provider callbacks per client address. Default
	// 300/m burst 100.
	Callback string `json:"callback,omitempty"`
	// BearerFailures: protected requests refused for a malformed or unknown
	// bearer, or one presented by another enrollment or user, per client
	// address; past it those refusals get 429 instead of 401. Expired,
	// reauth and accepted requests are never counted. Default off.
	BearerFailures string `json:"bearer_failures,omitempty"`
	// TokenPerFamily: refresh_token grants per OAuth 2 token family (the
	// token endpoint is never limited per address). Default 30/m burst 10.
	TokenPerFamily string `json:"token_per_family,omitempty"`
	// PendingSignIns bounds the sign-ins started over the last 10 minutes
	// (the pending sign-in lifetime), counted in memory; past it every
	// sign-in start gets 429 until the oldest expire. Default 100000;
	// negative: unbounded.
	PendingSignIns int `json:"pending_sign_ins,omitempty"`
	// MaxKeys bounds the addresses, identifiers and families each limit
	// tracks (least recently seen forgotten first). Default 50000.
	MaxKeys int `json:"max_keys,omitempty"`
}

// build returns the gateway's limits; nil means none.
func (l *Limits) build() (*gateway.Limits, error) {
	g := gateway.DefaultLimits()
	if l == nil {
		return &g, nil
	}
	if l.Off {
		return nil, nil
	}
	for _, r := range []struct {
		name string
		val  string
		dst  *ratelimit.Rate
	}{
		{gateway.LimitDiscovery, l.Discovery, &g.Discovery},
		{gateway.LimitDiscoveryUser, l.DiscoveryUser, &g.DiscoveryUser},
		{gateway.LimitSignIn, l.SignIn, &g.SignIn},
		{gateway.LimitSignInUser, l.SignInUser, &g.SignInUser},
		{gateway.LimitCallback, l.Callback, &g.Callback},
		{gateway.LimitBearerFailures, l.BearerFailures, &g.BearerFailures},
		{gateway.LimitTokenPerFamily, l.TokenPerFamily, &g.TokenPerFamily},
	} {
		if r.val == "" {
			continue
		}
		rate, err := ratelimit.ParseRate(r.val)
		if err != nil {
			return nil, fmt.Errorf("limits %s: %v", r.name, err)
		}
		*r.dst = rate
	}
	switch {
	case l.PendingSignIns < 0:
		g.PendingSignIns = 0
	case l.PendingSignIns > 0:
		g.PendingSignIns = l.PendingSignIns
	}
	if l.MaxKeys < 0 {
		return nil, fmt.Errorf("limits max_keys must not be negative")
	}
	g.MaxKeys = l.MaxKeys
	return &g, nil
}

// unmarshal reads "limits off" or a limits block.
func (l *Limits) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Err("limits takes a block, or off")
		}
		l.Off = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		val := strings.Join(args, " ")
		var dst *string
		switch name {
		case gateway.LimitDiscovery:
			dst = &l.Discovery
		case gateway.LimitDiscoveryUser:
			dst = &l.DiscoveryUser
		case gateway.LimitSignIn:
			dst = &l.SignIn
		case gateway.LimitSignInUser:
			dst = &l.SignInUser
		case gateway.LimitCallback:
			dst = &l.Callback
		case gateway.LimitBearerFailures:
			dst = &l.BearerFailures
		case gateway.LimitTokenPerFamily:
			dst = &l.TokenPerFamily
		case gateway.LimitPendingSignIns, "max_keys":
			if len(args) != 1 {
				return d.ArgErr()
			}
			n, err := -1, error(nil)
			if val != "off" || name == "max_keys" {
				if n, err = strconv.Atoi(val); err != nil || n <= 0 {
					return d.Errf("%s: want a positive number%s, got %q", name, map[bool]string{true: " or off"}[name != "max_keys"], val)
				}
			}
			if name == "max_keys" {
				l.MaxKeys = n
			} else {
				l.PendingSignIns = n
			}
			continue
		default:
			return d.Errf("unknown limits option %q", name)
		}
		if _, err := ratelimit.ParseRate(val); err != nil {
			return d.Errf("limits %s: %v", name, err)
		}
		*dst = val
	}
	return nil
}
