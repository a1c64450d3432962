package caddymodule

import (
	"strconv"

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
//			backchannel_logout     [all_sessions] {
//				max_age 10m
//			}
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
//		refuse_account_driven /mdm
//		reauth_max_age     5m
//		require_identifier_match
//		max_enroll_body    64KiB
//		max_mdm_body       8MiB
//		binding_webhook    https://mdm.example.com/hooks/bound {
//			secret  {env.MDMAUTH_WEBHOOK_SECRET}
//			timeout 5s
//		}
//		limits {              # or: limits off
//			discovery        600/m burst 200
//			discovery_user   30/m burst 10
//			sign_in          300/m burst 100
//			sign_in_user     20/m burst 10
//			callback         300/m burst 100
//			bearer_failures  off
//			token_per_family 30/m burst 10
//			pending_sign_ins 100000
//			max_keys         50000
//		}
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
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.EnrollmentProfile = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if h.ProfileSigning == nil {
					h.ProfileSigning = new(ProfileSigning)
				}
				switch d.Val() {
				case "sign_cert":
					if !d.AllArgs(&h.ProfileSigning.CertFile) {
						return d.ArgErr()
					}
				case "sign_key":
					if !d.AllArgs(&h.ProfileSigning.KeyFile) {
						return d.ArgErr()
					}
				default:
					return d.Errf("unknown enrollment_profile option %q (want sign_cert, sign_key)", d.Val())
				}
			}
			if ps := h.ProfileSigning; ps != nil && (ps.CertFile == "" || ps.KeyFile == "") {
				return d.Err("enrollment_profile: sign_cert and sign_key go together")
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
		case "refuse_account_driven":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.RefuseAccountDriven = append(h.RefuseAccountDriven, args...)
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
		case "enrollment_profiles":
			if d.NextArg() {
				return d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				name := d.Val()
				var path string
				if !d.AllArgs(&path) {
					return d.ArgErr()
				}
				if h.EnrollmentProfiles == nil {
					h.EnrollmentProfiles = map[string]string{}
				}
				if _, dup := h.EnrollmentProfiles[name]; dup {
					return d.Errf("enrollment_profiles: %q given twice", name)
				}
				h.EnrollmentProfiles[name] = path
			}
		case "policy":
			if h.Policy == nil {
				h.Policy = new(Policy)
			}
			if err := h.Policy.unmarshal(d); err != nil {
				return err
			}
		case "esso":
			if h.ESSO == nil {
				h.ESSO = new(ESSO)
			}
			if err := h.ESSO.unmarshal(d); err != nil {
				return err
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
		case "binding_webhook":
			if h.BindingWebhook != nil {
				return d.Err("binding_webhook given twice")
			}
			h.BindingWebhook = new(BindingWebhook)
			if err := h.BindingWebhook.unmarshal(d); err != nil {
				return err
			}
		case "discovery":
			if err := h.Discovery.unmarshal(d); err != nil {
				return err
			}
		case "limits":
			if h.Limits != nil {
				return d.Err("limits given twice")
			}
			h.Limits = new(Limits)
			if err := h.Limits.unmarshal(d); err != nil {
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
		case "managed_apple_id_template":
			if !d.AllArgs(&o.ManagedAppleIDTemplate) {
				return d.ArgErr()
			}
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
		case "backchannel_logout":
			if o.BackchannelLogout != nil {
				return d.Err("backchannel_logout given twice")
			}
			o.BackchannelLogout = new(BackchannelLogout)
			if err := o.BackchannelLogout.unmarshal(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown oidc option %q", d.Val())
		}
	}
	return nil
}

// unmarshal parses the rest of
//
//	backchannel_logout [all_sessions] {
//		all_sessions
//		max_age 10m
//	}
func (b *BackchannelLogout) unmarshal(d *caddyfile.Dispenser) error {
	for d.NextArg() {
		if d.Val() != "all_sessions" {
			return d.Errf("backchannel_logout: unknown argument %q (want all_sessions)", d.Val())
		}
		b.AllSessions = true
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "all_sessions":
			if d.NextArg() {
				return d.ArgErr()
			}
			b.AllSessions = true
		case "max_age":
			dur, err := positiveDuration(d, "backchannel_logout max_age")
			if err != nil {
				return err
			}
			b.MaxAge = dur
		default:
			return d.Errf("unknown backchannel_logout option %q (want all_sessions, max_age)", d.Val())
		}
	}
	return nil
}

// unmarshal parses
//
//	esso {
//		itunes_store_id       <App Store id>
//		associated_domains    authsrv:login.example.com ...
//		direct_downloads
//		configuration_profile <file>
//		declarations          <file> ...
//		app_ids               TEAMID.bundle.id ...    # test mode only
//		test_mode
//	}
func (e *ESSO) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		switch name {
		case "itunes_store_id":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return d.Errf("itunes_store_id: want a positive integer, got %q", v)
			}
			e.ITunesStoreID = n
		case "associated_domains", "declarations", "app_ids":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			switch name {
			case "associated_domains":
				e.AssociatedDomains = append(e.AssociatedDomains, args...)
			case "declarations":
				e.Declarations = append(e.Declarations, args...)
			default:
				e.AppIDs = append(e.AppIDs, args...)
			}
		case "configuration_profile":
			if !d.AllArgs(&e.ConfigurationProfile) {
				return d.ArgErr()
			}
		case "direct_downloads", "test_mode":
			if d.NextArg() {
				return d.ArgErr()
			}
			if name == "test_mode" {
				e.TestMode = true
			} else {
				e.DirectDownloads = true
			}
		default:
			return d.Errf("unknown esso option %q", name)
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
			dur, err := positiveDuration(d, name)
			if err != nil {
				return err
			}
			switch name {
			case "refresh_token_ttl":
				o.RefreshTokenTTL = dur
			case "sign_in_every":
				o.SignInEvery = dur
			default:
				o.RefreshGrace = dur
			}
		default:
			return d.Errf("unknown oauth2 option %q", name)
		}
	}
	return nil
}

// unmarshal parses
//
//	policy {
//		rule [name] {
//			domains         example.com ...
//			families        Mac RealityDevice
//			claim           groups mdm-adde ...
//			mode            byod|adde
//			profile         <name from enrollment_profiles>
//			required_app_id <App Store id>
//			max_devices     <n>
//			deny            ["message shown to the user"]
//		}
//	}
func (p *Policy) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "rule" {
			return d.Errf("unknown policy option %q (want rule)", d.Val())
		}
		var r PolicyRule
		if d.NextArg() {
			r.Name = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		}
		for n2 := d.Nesting(); d.NextBlock(n2); {
			name := d.Val()
			switch name {
			case "domains", "families":
				args := d.RemainingArgs()
				if len(args) == 0 {
					return d.ArgErr()
				}
				if name == "domains" {
					r.Domains = append(r.Domains, args...)
				} else {
					r.Families = append(r.Families, args...)
				}
			case "claim":
				args := d.RemainingArgs()
				if len(args) < 2 {
					return d.ArgErr()
				}
				r.Claims = append(r.Claims, RequireClaim{Claim: args[0], Values: args[1:]})
			case "mode", "profile":
				var v string
				if !d.AllArgs(&v) {
					return d.ArgErr()
				}
				if name == "mode" {
					r.Mode = v
				} else {
					r.Profile = v
				}
			case "required_app_id", "max_devices":
				var v string
				if !d.AllArgs(&v) {
					return d.ArgErr()
				}
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n <= 0 {
					return d.Errf("%s: want a positive integer, got %q", name, v)
				}
				if name == "required_app_id" {
					r.RequiredAppID = n
				} else {
					r.MaxDevices = int(n)
				}
			case "deny":
				r.Deny = true
				if d.NextArg() {
					r.Message = d.Val()
					if d.NextArg() {
						return d.ArgErr()
					}
				}
			default:
				return d.Errf("unknown policy rule option %q", name)
			}
		}
		p.Rules = append(p.Rules, r)
	}
	return nil
}

func (c *Discovery) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := c.option(d); err != nil {
			return err
		}
	}
	return nil
}

// option parses one discovery option: domains, mode or unknown.
func (c *Discovery) option(d *caddyfile.Dispenser) error {
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
	case "unknown":
		args := d.RemainingArgs()
		switch {
		case len(args) == 1 && (args[0] == "403" || args[0] == "404"):
			c.Unknown = args[0]
		case len(args) == 2 && args[0] == "403":
			c.Unknown, c.UnknownMessage = args[0], args[1]
		default:
			return d.Errf("unknown: want 403 [\"message\"] or 404")
		}
	default:
		return d.Errf("unknown discovery option %q", d.Val())
	}
	return nil
}

// parseGlobalOption parses the mdm_auth global option:
//
//	{
//		mdm_auth {
//			storage_dir    /var/lib/mdmauth
//			min_free_space 64MiB   # or off
//			# or, for several instances on one database:
//			storage postgres {
//				dsn       {env.MDMAUTH_PG_DSN}
//				schema    mdmauth
//				max_conns 20
//				timeout   5s
//			}
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
		case "storage":
			if !d.NextArg() || d.Val() != "postgres" || d.NextArg() {
				return nil, d.Err("storage takes one backend: postgres (Badger, the default, is set with storage_dir)")
			}
			pg := new(PostgresStorage)
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "dsn":
					if !d.AllArgs(&pg.DSN) {
						return nil, d.ArgErr()
					}
				case "schema":
					if !d.AllArgs(&pg.Schema) {
						return nil, d.ArgErr()
					}
				case "max_conns":
					var s string
					if !d.AllArgs(&s) {
						return nil, d.ArgErr()
					}
					n, err := strconv.ParseInt(s, 10, 32)
					if err != nil || n <= 0 {
						return nil, d.Errf("max_conns: want a positive number, got %q", s)
					}
					pg.MaxConns = int32(n)
				case "timeout":
					dur, err := positiveDuration(d, "timeout")
					if err != nil {
						return nil, err
					}
					pg.Timeout = dur
				default:
					return nil, d.Errf("unknown postgres storage option %q", d.Val())
				}
			}
			if pg.DSN == "" {
				return nil, d.Err("storage postgres: dsn is required")
			}
			app.Postgres = pg
		case "min_free_space":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.ArgErr()
			}
			if s == "off" {
				app.MinFreeSpace = -1
				break
			}
			n, err := humanize.ParseBytes(s)
			if err != nil || n == 0 || n > 1<<40 {
				return nil, d.Errf("min_free_space: invalid size %q", s)
			}
			app.MinFreeSpace = int64(n)
		default:
			return nil, d.Errf("unknown mdm_auth global option %q", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "mdm_auth", Value: caddyconfig.JSON(app, nil)}, nil
}

// Interface guards.
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// positiveDuration reads an option's one argument, a positive duration;
// what names the option in the error.
func positiveDuration(d *caddyfile.Dispenser, what string) (caddy.Duration, error) {
	var v string
	if !d.AllArgs(&v) {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: invalid duration %q", what, v)
	}
	return caddy.Duration(dur), nil
}
