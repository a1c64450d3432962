package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterDirective("mdm_auth", parseCaddyfile)
	// Before the authentication handlers (and so before handle, route and
	// reverse_proxy): no `order` line needed.
	httpcaddyfile.RegisterDirectiveOrder("mdm_auth", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterGlobalOption("mdm_auth", parseGlobalOption)
}

// parseCaddyfile takes no matcher: the handler must see every request of
// the site to answer discovery, its own endpoints and the protected paths.
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return h.NewRoute(nil, m), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	mdm_auth {
//		prefix             /mdmauth
//		public_url         https://mdm.example.com
//		oidc {
//			issuer                 https://idp.example.com/
//			client_id              mdmauth
//			client_secret          {env.MDMAUTH_OIDC_SECRET}
//			scopes                 openid email profile
//			managed_apple_id_claim email
//			allow_unverified_email
//			auth_param             access_type offline
//			require_claim          groups mdm-users
//			revalidate_on_refresh  15m
//			refresh_token_keys     {env.MDMAUTH_IDP_TOKEN_KEYS}
//		}
//		discovery {
//			domains example.com example.org
//			mode    byod
//			mode    Mac RealityDevice adde
//		}
//		enrollment_profile /etc/mdmauth/enroll.mobileconfig
//		sign_in            web|oauth2
//		oauth2 {
//			client_id         mdmauth
//			redirect_url      apple-remotemanagement-user-login:/oauth2/redirection
//			scope             mdm
//			refresh_token_ttl 90d
//			sign_in_every     30d
//			refresh_grace     60s
//		}
//		access_token_ttl   90d
//		protect            /mdm/ad
//		reauth_max_age     5m
//		require_identifier_match
//		max_enroll_body    64KiB
//		max_mdm_body       8MiB
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("mdm_auth takes no matcher or arguments (got %q): it must see every request of the site", d.Val())
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "prefix":
			if !d.AllArgs(&h.Prefix) {
				return d.ArgErr()
			}
		case "public_url":
			if !d.AllArgs(&h.PublicURL) {
				return d.ArgErr()
			}
		case "enrollment_profile":
			if !d.AllArgs(&h.EnrollmentProfile) {
				return d.ArgErr()
			}
		case "access_token_ttl", "reauth_max_age":
			name := d.Val()
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			if name == "access_token_ttl" {
				h.AccessTokenTTL = caddy.Duration(dur)
			} else {
				h.ReauthMaxAge = caddy.Duration(dur)
			}
		case "protect":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Protect = append(h.Protect, args...)
		case "require_identifier_match":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.RequireIdentifierMatch = true
		case "max_enroll_body", "max_mdm_body":
			name := d.Val()
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(s)
			if err != nil || n == 0 || n > 1<<30 {
				return d.Errf("%s: invalid size %q", name, s)
			}
			if name == "max_enroll_body" {
				h.MaxEnrollBody = int64(n)
			} else {
				h.MaxMDMBody = int64(n)
			}
		case "sign_in":
			if !d.AllArgs(&h.SignIn) {
				return d.ArgErr()
			}
		case "oauth2":
			if h.OAuth2 == nil {
				h.OAuth2 = new(OAuth2)
			}
			if err := h.OAuth2.unmarshal(d); err != nil {
				return err
			}
		case "oidc":
			if err := h.OIDC.unmarshal(d); err != nil {
				return err
			}
		case "discovery":
			if err := h.Discovery.unmarshal(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown mdm_auth option %q", d.Val())
		}
	}
	return nil
}

func (o *OIDC) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "issuer":
			if !d.AllArgs(&o.Issuer) {
				return d.ArgErr()
			}
		case "client_id":
			if !d.AllArgs(&o.ClientID) {
				return d.ArgErr()
			}
		case "client_secret":
			if !d.AllArgs(&o.ClientSecret) {
				return d.ArgErr()
			}
		case "scopes":
			o.Scopes = d.RemainingArgs()
			if len(o.Scopes) == 0 {
				return d.ArgErr()
			}
		case "managed_apple_id_claim":
			if !d.AllArgs(&o.ManagedAppleIDClaim) {
				return d.ArgErr()
			}
		case "allow_unverified_email":
			if d.NextArg() {
				return d.ArgErr()
			}
			o.AllowUnverifiedEmail = true
		case "auth_param":
			var k, v string
			if !d.AllArgs(&k, &v) {
				return d.ArgErr()
			}
			if o.AuthParams == nil {
				o.AuthParams = map[string]string{}
			}
			o.AuthParams[k] = v
		case "require_claim":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			o.RequireClaims = append(o.RequireClaims, RequireClaim{Claim: args[0], Values: args[1:]})
		case "revalidate_on_refresh":
			o.RevalidateOnRefresh = true
			if d.NextArg() {
				dur, err := caddy.ParseDuration(d.Val())
				if err != nil || dur <= 0 {
					return d.Errf("revalidate_on_refresh: invalid duration %q", d.Val())
				}
				o.RevalidateEvery = caddy.Duration(dur)
				if d.NextArg() {
					return d.ArgErr()
				}
			}
		case "refresh_token_keys":
			if !d.AllArgs(&o.RefreshTokenKeys) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown oidc option %q", d.Val())
		}
	}
	return nil
}

func (o *OAuth2) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		switch name {
		case "client_id":
			if !d.AllArgs(&o.ClientID) {
				return d.ArgErr()
			}
		case "redirect_url":
			if !d.AllArgs(&o.RedirectURL) {
				return d.ArgErr()
			}
		case "scope":
			if !d.AllArgs(&o.Scope) {
				return d.ArgErr()
			}
		case "refresh_token_ttl", "sign_in_every", "refresh_grace":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("%s: invalid duration %q", name, v)
			}
			switch name {
			case "refresh_token_ttl":
				o.RefreshTokenTTL = caddy.Duration(dur)
			case "sign_in_every":
				o.SignInEvery = caddy.Duration(dur)
			default:
				o.RefreshGrace = caddy.Duration(dur)
			}
		default:
			return d.Errf("unknown oauth2 option %q", name)
		}
	}
	return nil
}

func (c *Discovery) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "domains":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			c.Domains = append(c.Domains, args...)
		case "mode":
			args := d.RemainingArgs()
			switch len(args) {
			case 0:
				return d.ArgErr()
			case 1:
				c.Mode = args[0]
			default:
				if c.ModelModes == nil {
					c.ModelModes = map[string]string{}
				}
				mode := args[len(args)-1]
				for _, fam := range args[:len(args)-1] {
					c.ModelModes[fam] = mode
				}
			}
		default:
			return d.Errf("unknown discovery option %q", d.Val())
		}
	}
	return nil
}

// parseGlobalOption parses the mdm_auth global option:
//
//	{
//		mdm_auth {
//			storage_dir /var/lib/mdmauth
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	d.Next()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "storage_dir":
			if !d.AllArgs(&app.StorageDir) {
				return nil, d.ArgErr()
			}
		default:
			return nil, d.Errf("unknown mdm_auth global option %q", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "mdm_auth", Value: caddyconfig.JSON(app, nil)}, nil
}

// Interface guards.
var _ caddyfile.Unmarshaler = (*Handler)(nil)
