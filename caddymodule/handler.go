package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/esso"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/policy"
	"github.com/mdmauth/mdmauth/internal/profile"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
	"github.com/mdmauth/mdmauth/internal/webhook"
)

// DefaultAccessTokenTTL is the lifetime of tokens from web sign-in. Every
// expiry makes the user sign in again on the device, so it is long.
const DefaultAccessTokenTTL = 90 * 24 * time.Hour

// signInLinkMaxAge bounds how long a stored challenge's sign-in URL works.
const signInLinkMaxAge = 400 * 24 * time.Hour

// Handler is the mdm_auth HTTP handler. It serves Apple's account-driven
// enrollment (service discovery, the enrollment URL and its 401 challenge,
// web sign-in through an OIDC provider, the enrollment profile) and checks
// the bearer token on every request to the protected MDM paths. Everything
// else passes to the next handler untouched.
type Handler struct {
	// Prefix of the handler's own endpoints. Default: /mdmauth.
	Prefix string `json:"prefix,omitempty"`
	// PublicURL is the scheme://host[:port] devices and browsers reach this
	// server at. Default: taken from each request.
	PublicURL string `json:"public_url,omitempty"`
	// OIDC is the organization's identity provider.
	OIDC OIDC `json:"oidc"`
	// Discovery decides who is answered and in which mode.
	Discovery Discovery `json:"discovery"`
	// EnrollmentProfile is the path of the enrollment profile template
	// (.mobileconfig, XML). Its com.apple.mdm ServerURL/CheckInURL should
	// point at a protected path.
	EnrollmentProfile string `json:"enrollment_profile"`
	// AccessTokenTTL is the lifetime of access tokens (jittered ±10%).
	// Default: 90 days. Minimum: 1 hour.
	AccessTokenTTL caddy.Duration `json:"access_token_ttl,omitempty"`
	// Protect lists the path prefixes of the account-driven enrollments'
	// ServerURL/CheckInURL, matched by path segment against the request's
	// original path and its current one. Every request there needs a valid
	// bearer token. Never list paths that profile-based or ADE devices
	// use: a 401 makes those unenroll.
	Protect []string `json:"protect,omitempty"`
	// RefuseAccountDriven lists the path prefixes of the MDM endpoints the
	// other enrollments (profile-based, ADE) use, such as NanoMDM's /mdm.
	// A request there that names an enrollment this gateway knows as
	// account-driven (in any state but removed) is refused with 403, never
	// 401: its device identity would otherwise reach the MDM without a
	// bearer, around revocation, reauth and block. Costs one body scan and
	// one store read per request on those paths. Leaving it out while
	// Protect is set logs a warning at provisioning.
	RefuseAccountDriven []string `json:"refuse_account_driven,omitempty"`
	// ReauthMaxAge, when set, asks the provider for max_age=<this> on
	// re-authentication instead of prompt=login.
	ReauthMaxAge caddy.Duration `json:"reauth_max_age,omitempty"`
	// RequireIdentifierMatch requires the identifier typed on the device to
	// equal the signed-in user's Managed Apple ID.
	RequireIdentifierMatch bool `json:"require_identifier_match,omitempty"`
	// MaxEnrollBody limits enrollment request bodies (default 64 KiB).
	MaxEnrollBody int64 `json:"max_enroll_body,omitempty"`
	// MaxMDMBody limits protected MDM request bodies (default 8 MiB).
	MaxMDMBody int64 `json:"max_mdm_body,omitempty"`
	// ESSO offers Enrollment SSO (iOS/iPadOS 16+, visionOS 2+).
	ESSO *ESSO `json:"esso,omitempty"`
	// ProfileSigning, when set, signs every served profile with this
	// certificate (chain: leaf first, then intermediates) and key.
	ProfileSigning *ProfileSigning `json:"profile_signing,omitempty"`
	// EnrollmentProfiles are named templates that policy rules may choose
	// (name → file).
	EnrollmentProfiles map[string]string `json:"enrollment_profiles,omitempty"`
	// Policy decides who may enroll how. Without it, every user of the
	// discovery domains may enroll in the discovery modes.
	Policy *Policy `json:"policy,omitempty"`
	// SignIn is the sign-in method devices are challenged with: web
	// (apple-as-web, the default) or oauth2 (apple-oauth2, with silent
	// refresh).
	SignIn string `json:"sign_in,omitempty"`
	// OAuth2 configures the oauth2 method.
	OAuth2 *OAuth2 `json:"oauth2,omitempty"`
	// BindingWebhook, when set, is sent a signed event after every new
	// binding of an enrollment to a user.
	BindingWebhook *BindingWebhook `json:"binding_webhook,omitempty"`
	// Limits are the abuse limits (rate limits answered 429 and a bound on
	// pending sign-ins). Unset: the defaults; {"off": true}: none.
	Limits *Limits `json:"limits,omitempty"`

	gw        *gateway.Gateway
	webhook   *webhook.Sender
	eagerKeys bool // read the store's keys while provisioning
}

// secret returns the store's secret name (created on first use), read now
// when eagerKeys is set, else on first use.
func (h *Handler) secret(ctx context.Context, st store.Store, name string) (*store.SecretRef, error) {
	ref := store.NewSecretRef(st, name, func() ([]byte, error) { return randomBytes(32) })
	if h.eagerKeys {
		if _, err := ref.Get(ctx); err != nil {
			return nil, err
		}
	}
	return ref, nil
}

// ESSO configures Enrollment SSO: the enrollment 401 carries
// X-Apple-MDM-ESSO (X-Apple-MDM-ESSO-Developer in test mode) pointing at the
// EnrollmentSSODocument built from these settings and validated at load.
type ESSO struct {
	// ITunesStoreID is the App Store id of the app with the SSO extension.
	ITunesStoreID int64 `json:"itunes_store_id,omitempty"`
	// AssociatedDomains for the app, e.g. authsrv:login.example.com.
	AssociatedDomains []string `json:"associated_domains,omitempty"`
	// DirectDownloads sets AssociatedDomainsEnableDirectDownloads.
	DirectDownloads bool `json:"direct_downloads,omitempty"`
	// ConfigurationProfile is a .mobileconfig holding only
	// com.apple.extensiblesso and certificate payloads.
	ConfigurationProfile string `json:"configuration_profile,omitempty"`
	// Declarations are JSON declaration files (iOS 18.4+). The MDM must
	// serve the same declarations in its first declarative management sync.
	Declarations []string `json:"declarations,omitempty"`
	// AppIDs (TEAMID.bundle.id) are for test mode only.
	AppIDs []string `json:"app_ids,omitempty"`
	// TestMode is for test devices with Developer > Enrollment SSO on.
	TestMode bool `json:"test_mode,omitempty"`
}

// ProfileSigning names the PEM files of the profile signing identity.
type ProfileSigning struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// Policy is an ordered list of rules; the first that matches decides. A
// request no rule matches is refused.
type Policy struct {
	Rules []PolicyRule `json:"rules"`
}

// PolicyRule matches on the typed identifier's domain, the model family
// and (after sign-in) claims; discovery sees only domain and family, and
// the sign-in re-checks the rule with the claims.
type PolicyRule struct {
	// Name shows in logs and on refusal pages. Default: "rule N".
	Name string `json:"name,omitempty"`
	// Domains and Families to match; empty matches any.
	Domains  []string `json:"domains,omitempty"`
	Families []string `json:"families,omitempty"`
	// Claims must all hold: a claim equals (or, for a list such as groups,
	// contains) one of the values.
	Claims []RequireClaim `json:"claims,omitempty"`
	// Deny refuses, with Message shown to the user.
	Deny    bool   `json:"deny,omitempty"`
	Message string `json:"message,omitempty"`
	// Mode (byod or adde) overrides the discovery modes.
	Mode string `json:"mode,omitempty"`
	// Profile names one of EnrollmentProfiles.
	Profile string `json:"profile,omitempty"`
	// RequiredAppID sets RequiredAppIDForMDM (an App Store id).
	RequiredAppID int64 `json:"required_app_id,omitempty"`
	// MaxDevices bounds the enrollments a user may have (0: no limit).
	MaxDevices int `json:"max_devices,omitempty"`
}

// OAuth2 configures the apple-oauth2 method: the gateway is the device's
// OAuth 2 authorization server, the user signs in at the OIDC provider.
type OAuth2 struct {
	// ClientID the device uses (challenge client-id). Default: mdmauth.
	ClientID string `json:"client_id,omitempty"`
	// RedirectURL the device uses (challenge redirect-url). Default:
	// apple-remotemanagement-user-login:/oauth2/redirection.
	RedirectURL string `json:"redirect_url,omitempty"`
	// Scope sent in the challenge. Default: mdm.
	Scope string `json:"scope,omitempty"`
	// RefreshTokenTTL is the idle lifetime of a refresh token: a device
	// that does not refresh for this long must sign in. Devices talk to the
	// MDM only after a push, so keep it long. Default: 90 days.
	RefreshTokenTTL caddy.Duration `json:"refresh_token_ttl,omitempty"`
	// SignInEvery, when set, makes the user sign in interactively that
	// long after the last interactive sign-in. Default: off.
	SignInEvery caddy.Duration `json:"sign_in_every,omitempty"`
	// RefreshGrace is how long a just-rotated refresh token still gets the
	// same successor pair (a lost response, two refreshes at once).
	// Default: 60s.
	RefreshGrace caddy.Duration `json:"refresh_grace,omitempty"`
}

// OIDC configures the OpenID Connect relying party.
type OIDC struct {
	// Issuer URL, exactly as in the provider's discovery document.
	Issuer string `json:"issuer"`
	// ClientID and ClientSecret of the client registered at the provider,
	// whose redirect URI is https://<host><prefix>/oidc/callback.
	// {env.*} placeholders are expanded.
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	// Scopes requested. Default: openid email profile.
	Scopes []string `json:"scopes,omitempty"`
	// ManagedAppleIDClaim names the claim holding the Managed Apple ID.
	// Default: email.
	ManagedAppleIDClaim string `json:"managed_apple_id_claim,omitempty"`
	// ManagedAppleIDTemplate builds the Managed Apple ID from claims
	// instead, e.g. "{claim.preferred_username}@appleid.example.com".
	ManagedAppleIDTemplate string `json:"managed_apple_id_template,omitempty"`
	// AllowUnverifiedEmail accepts an email claim without email_verified.
	AllowUnverifiedEmail bool `json:"allow_unverified_email,omitempty"`
	// AuthParams are extra authorization request parameters, for provider
	// quirks such as Google's access_type=offline.
	AuthParams map[string]string `json:"auth_params,omitempty"`
	// RequireClaims must all be met at sign-in and at every re-validation.
	RequireClaims []RequireClaim `json:"require_claims,omitempty"`
	// RevalidateOnRefresh (sign_in oauth2 only) keeps the provider's
	// refresh token and re-checks the user at the provider when the device
	// refreshes, at most once per RevalidateEvery per token family. A user
	// the provider refuses is cut off at the next refresh.
	RevalidateOnRefresh bool `json:"revalidate_on_refresh,omitempty"`
	// RevalidateEvery defaults to 15 minutes.
	RevalidateEvery caddy.Duration `json:"revalidate_every,omitempty"`
	// RefreshTokenKeys encrypt the kept provider refresh tokens:
	// "id:base64key[,id:base64key...]", 32-byte keys, the first current.
	// {env.*} is expanded. Default: a key generated in the token store
	// (then a copy of the store holds the key too).
	RefreshTokenKeys string `json:"refresh_token_keys,omitempty"`
	// BackchannelLogout, when present, serves OpenID Connect Back-Channel
	// Logout 1.0 at https://<host><prefix>/oidc/backchannel-logout (register
	// that URL at the provider as the client's backchannel_logout_uri). A
	// logout token with a sid ends that sign-in's tokens and token families
	// and moves its enrollments to reauth.
	BackchannelLogout *BackchannelLogout `json:"backchannel_logout,omitempty"`
}

// BackchannelLogout configures OpenID Connect back-channel logout.
type BackchannelLogout struct {
	// AllSessions honours logout tokens that carry only sub (no sid) by
	// ending every session of the user, on all of their devices. Off (the
	// default), such tokens are refused with 400: some providers send them
	// whenever the user signs out of any application.
	AllSessions bool `json:"all_sessions,omitempty"`
	// MaxAge is how old (by iat) an accepted logout token may be.
	// Default: 10 minutes.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

// RequireClaim requires a claim to equal (or, for a list claim such as
// groups, to contain) one of Values.
type RequireClaim struct {
	Claim  string   `json:"claim"`
	Values []string `json:"values"`
}

// Discovery configures the answers to /.well-known/com.apple.remotemanagement.
type Discovery struct {
	// Domains of user identifiers that are answered; others are refused.
	Domains []string `json:"domains"`
	// Mode is the default enrollment mode: byod (User Enrollment) or adde
	// (account-driven Device Enrollment). Default: byod.
	Mode string `json:"mode,omitempty"`
	// ModelModes maps a model-family (iPhone, iPad, Mac, RealityDevice) to
	// its mode.
	ModelModes map[string]string `json:"model_modes,omitempty"`
	// Unknown is how unknown users and domains are answered: "403" (the
	// default: com.apple.well-known.failed, with UnknownMessage if set) or
	// "404" (iOS 18.2+ then asks Apple Business Manager).
	Unknown        string `json:"unknown,omitempty"`
	UnknownMessage string `json:"unknown_message,omitempty"`
}

// modes validates the discovery modes.
func (c *Discovery) modes() (apple.Mode, map[string]apple.Mode, error) {
	def := apple.ModeBYOD
	if c.Mode != "" {
		m, err := apple.ParseMode(c.Mode)
		if err != nil {
			return "", nil, fmt.Errorf("discovery mode: %v", err)
		}
		def = m
	}
	fm := map[string]apple.Mode{}
	for fam, m := range c.ModelModes {
		mode, err := apple.ParseMode(m)
		if err != nil {
			return "", nil, fmt.Errorf("discovery mode for %s: %v", fam, err)
		}
		if !apple.SupportsAccountDrivenEnrollment(fam) {
			return "", nil, fmt.Errorf("discovery mode: model family %q cannot enroll account-driven", fam)
		}
		switch fam {
		case "iPhone", "iPad", "Mac", "RealityDevice":
		default:
			return "", nil, fmt.Errorf("discovery mode: unknown model family %q (want iPhone, iPad, Mac or RealityDevice)", fam)
		}
		fm[fam] = mode
	}
	switch c.Unknown {
	case "", "403", "404":
	default:
		return "", nil, fmt.Errorf("discovery unknown: want 403 or 404, got %q", c.Unknown)
	}
	if c.Unknown == "404" && c.UnknownMessage != "" {
		return "", nil, fmt.Errorf("discovery unknown: a message goes with 403 only")
	}
	return def, fm, nil
}

// buildPolicy turns the configured rules (or, without any, the discovery
// domains) into the policy in force.
func buildPolicy(p *Policy, disc *Discovery, def apple.Mode, fm map[string]apple.Mode) (*policy.Policy, error) {
	pol := &policy.Policy{Modes: policy.Modes{Default: string(def), ByFamily: map[string]string{}}}
	for fam, m := range fm {
		pol.Modes.ByFamily[fam] = string(m)
	}
	if p == nil {
		if len(disc.Domains) == 0 {
			return nil, fmt.Errorf("discovery needs at least one domain (or a policy)")
		}
		pol.Rules = []policy.Rule{{Name: "domains", Domains: append([]string(nil), disc.Domains...)}}
		return pol, nil
	}
	if len(p.Rules) == 0 {
		return nil, fmt.Errorf("policy: at least one rule is needed")
	}
	for _, r := range p.Rules {
		pr := policy.Rule{Name: r.Name, Domains: append([]string(nil), r.Domains...), Families: r.Families,
			Deny: r.Deny, Message: r.Message, Mode: r.Mode, Profile: r.Profile,
			RequiredAppID: r.RequiredAppID, MaxDevices: r.MaxDevices}
		for _, c := range r.Claims {
			pr.Claims = append(pr.Claims, policy.ClaimMatch{Claim: c.Claim, Values: c.Values})
		}
		pol.Rules = append(pol.Rules, pr)
	}
	return pol, nil
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mdm_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the gateway. It reads local files and the store; it
// does no network I/O (OIDC discovery happens at the first sign-in).
func (h *Handler) Provision(ctx caddy.Context) error {
	method := methodWeb
	if h.SignIn == "oauth2" {
		method = methodOAuth2
	}
	log := procMetrics.logger(ctx.Logger(), method) // counts the audit entries
	appIface, err := ctx.App("mdm_auth")
	if err != nil {
		return fmt.Errorf("loading mdm_auth app: %v", err)
	}
	st := appIface.(*App).Store()
	// With PostgreSQL the keys are read from the store on first use, not
	// here, so that Caddy provisions and starts while the database is
	// unreachable (no network I/O in Provision); Badger's, on local disk,
	// are read now, so that a broken store fails the config at once.
	h.eagerKeys = appIface.(*App).Postgres == nil
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := procMetrics.register(reg); err != nil {
			return fmt.Errorf("registering metrics: %v", err)
		}
		if err := registerInventory(reg, newInventoryGauges(ctx, st, log)); err != nil {
			return fmt.Errorf("registering metrics: %v", err)
		}
	}
	st = procMetrics.timeStore(st)
	repl := caddy.NewReplacer()
	expand := func(s string) string { return repl.ReplaceKnown(s, "") }

	cfg := gateway.Config{
		Prefix:              h.Prefix,
		Domains:             append([]string(nil), h.Discovery.Domains...),
		Protect:             append([]string(nil), h.Protect...),
		RefuseAccountDriven: append([]string(nil), h.RefuseAccountDriven...),
		MaxEnrollBody:       h.MaxEnrollBody,
		MaxMDMBody:          h.MaxMDMBody,
		FamilyModes:         map[string]apple.Mode{},
	}
	if pu := expand(h.PublicURL); pu != "" {
		u, err := url.Parse(pu)
		if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("public_url %q must be scheme://host[:port]", pu)
		}
		cfg.PublicURL = u
	}
	if cfg.DefaultMode, cfg.FamilyModes, err = h.Discovery.modes(); err != nil {
		return err
	}
	cfg.DiscoveryNotFound = h.Discovery.Unknown == "404"
	cfg.DiscoveryUnknownMessage = h.Discovery.UnknownMessage
	path := expand(h.EnrollmentProfile)
	if path == "" {
		return fmt.Errorf("enrollment_profile is required")
	}
	if cfg.Template, err = loadTemplate("enrollment_profile", path, log); err != nil {
		return err
	}
	if e := h.ESSO; e != nil {
		ec := esso.Config{ITunesStoreID: e.ITunesStoreID, AssociatedDomains: e.AssociatedDomains,
			DirectDownloads: e.DirectDownloads, AppIDs: e.AppIDs, TestMode: e.TestMode}
		if e.ConfigurationProfile != "" {
			if ec.ConfigurationProfile, err = os.ReadFile(expand(e.ConfigurationProfile)); err != nil {
				return fmt.Errorf("esso configuration_profile: %v", err)
			}
		}
		for _, f := range e.Declarations {
			b, err := os.ReadFile(expand(f))
			if err != nil {
				return fmt.Errorf("esso declarations: %v", err)
			}
			ec.Declarations = append(ec.Declarations, b)
		}
		doc, err := esso.Build(ec)
		if err != nil {
			return err
		}
		cfg.ESSO = &gateway.ESSO{Header: esso.HeaderName(e.TestMode), Document: doc}
	}
	if ps := h.ProfileSigning; ps != nil {
		certPEM, err1 := os.ReadFile(expand(ps.CertFile))
		keyPEM, err2 := os.ReadFile(expand(ps.KeyFile))
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("profile signing: %v", err)
		}
		if cfg.Signer, err = profile.NewSigner(certPEM, keyPEM); err != nil {
			return err
		}
	}
	cfg.Templates = map[string]*profile.Template{}
	for name, p := range h.EnrollmentProfiles {
		if name == "" {
			return fmt.Errorf("enrollment_profiles: empty name")
		}
		if cfg.Templates[name], err = loadTemplate("enrollment_profiles "+name, expand(p), log); err != nil {
			return err
		}
	}
	if cfg.Policy, err = buildPolicy(h.Policy, &h.Discovery, cfg.DefaultMode, cfg.FamilyModes); err != nil {
		return err
	}

	oauthMode := false
	switch h.SignIn {
	case "", "web":
		if h.OAuth2 != nil || h.OIDC.RevalidateOnRefresh {
			return fmt.Errorf("oauth2 settings and revalidate_on_refresh need sign_in oauth2")
		}
	case "oauth2":
		oauthMode = true
	default:
		return fmt.Errorf("sign_in %q: want web or oauth2", h.SignIn)
	}
	ttl := time.Duration(h.AccessTokenTTL)
	lt := token.Lifetime{TTL: ttl, Jitter: 0.1, Floor: token.DefaultFloor}
	if oauthMode {
		lt.Floor = token.OAuthFloor
		if lt.TTL == 0 {
			lt.TTL = token.DefaultOAuthAccessTTL
		}
	} else if lt.TTL == 0 {
		lt.TTL = DefaultAccessTokenTTL
	}
	if err := lt.Validate(); err != nil {
		return fmt.Errorf("access_token_ttl: %v", err)
	}
	tokens := &token.Manager{Store: st, Lifetime: lt}

	scopes := h.OIDC.Scopes
	if h.OIDC.RevalidateOnRefresh && !contains(scopes, "offline_access") {
		if len(scopes) == 0 {
			scopes = []string{"openid", "email", "profile"}
		}
		scopes = append(append([]string(nil), scopes...), "offline_access")
	}
	rp, err := signin.NewRP(signin.OIDCConfig{
		Issuer:       expand(h.OIDC.Issuer),
		ClientID:     expand(h.OIDC.ClientID),
		ClientSecret: expand(h.OIDC.ClientSecret),
		Scopes:       scopes,
		AuthParams:   h.OIDC.AuthParams,
	})
	if err != nil {
		return fmt.Errorf("oidc: %v", err)
	}
	if bl := h.OIDC.BackchannelLogout; bl != nil {
		if bl.MaxAge < 0 {
			return fmt.Errorf("oidc backchannel_logout max_age must not be negative")
		}
		cfg.BackchannelLogout = &gateway.BackchannelLogout{
			Verifier:    &signin.Logout{RP: rp, MaxAge: time.Duration(bl.MaxAge)},
			AllSessions: bl.AllSessions,
		}
	}
	flowKey, err := h.secret(ctx, st, "signin-flow-hmac")
	if err != nil {
		return fmt.Errorf("loading the sign-in signing key: %v", err)
	}
	signer := signin.Signer{KeyRef: flowKey, MaxAge: signInLinkMaxAge}
	web := &signin.Web{
		RP: rp, Tokens: tokens, Store: st, Signer: signer,
		Claims: signin.Claims{
			ManagedAppleID:         h.OIDC.ManagedAppleIDClaim,
			Template:               h.OIDC.ManagedAppleIDTemplate,
			RequireEmailVerified:   !h.OIDC.AllowUnverifiedEmail,
			RequireIdentifierMatch: h.RequireIdentifierMatch,
		},
		ReauthMaxAge: time.Duration(h.ReauthMaxAge),
		Log:          log,
	}
	for _, rc := range h.OIDC.RequireClaims {
		if rc.Claim == "" || len(rc.Values) == 0 {
			return fmt.Errorf("require_claims: a claim name and at least one value are needed")
		}
		web.Require = append(web.Require, signin.ClaimRequirement{Claim: rc.Claim, Values: rc.Values})
	}
	if oauthMode {
		if cfg.OAuth2, web.OAuth2, err = h.provisionOAuth2(ctx, st, tokens, expand); err != nil {
			return err
		}
		if web.OAuth2.Revalidate {
			web.OAuth2.Tokens.Revalidate = web.Revalidator()
		}
	}
	if t := h.OIDC.ManagedAppleIDTemplate; t != "" {
		if h.OIDC.ManagedAppleIDClaim != "" {
			return fmt.Errorf("oidc: set managed_apple_id_claim or managed_apple_id_template, not both")
		}
		if err := signin.ValidateTemplate(t); err != nil {
			return fmt.Errorf("oidc: %v", err)
		}
	}
	h.gw, err = gateway.New(cfg, gateway.Deps{Web: web, Tokens: tokens, Store: st, Signer: signer, Log: log})
	if err != nil {
		return err
	}
	web.Policy = h.gw.Policy()
	if len(h.Protect) > 0 && len(h.RefuseAccountDriven) == 0 {
		ctx.Logger().Warn("refuse_account_driven is not set: an account-driven device identity can reach the MDM's other paths without a bearer, around revocation, reauth and block; name them (e.g. refuse_account_driven /mdm)")
	}
	h.gw.OriginalPath = originalPath
	h.gw.SetClientIP(clientIP)
	h.gw.SkipAccessLog = func(r *http.Request) { caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true) }
	appIface.(*App).addSite(h) // for the admin API's profile rendering
	h.gw.Hooks = gateway.Hooks{Allowed: procMetrics.countAllowed, Bound: h.bound, Limited: procMetrics.countLimited}
	lim, err := h.Limits.build()
	if err != nil {
		return err
	}
	if lim != nil {
		lim.PendingTTL = web.LoginTTL
		h.gw.SetLimits(*lim)
	}
	if h.BindingWebhook != nil {
		if h.webhook, err = h.BindingWebhook.provision(expand, log); err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) provisionOAuth2(ctx caddy.Context, st store.Store, tokens *token.Manager, expand func(string) string) (*gateway.OAuth2Challenge, *signin.OAuth2, error) {
	o := h.OAuth2
	if o == nil {
		o = new(OAuth2)
	}
	ch := &gateway.OAuth2Challenge{ClientID: o.ClientID, RedirectURL: o.RedirectURL, Scope: o.Scope}
	if ch.ClientID == "" {
		ch.ClientID = "mdmauth"
	}
	if ch.RedirectURL == "" {
		ch.RedirectURL = signin.DefaultRedirectURL
	}
	if ch.Scope == "" {
		ch.Scope = "mdm"
	}
	for _, v := range []string{ch.ClientID, ch.RedirectURL, ch.Scope} {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c <= 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return nil, nil, fmt.Errorf("oauth2: %q cannot be sent in a challenge (printable ASCII only, no spaces, quotes or backslashes)", v)
			}
		}
	}
	for name, d := range map[string]caddy.Duration{
		"refresh_token_ttl": o.RefreshTokenTTL, "sign_in_every": o.SignInEvery,
		"refresh_grace": o.RefreshGrace, "revalidate_every": h.OIDC.RevalidateEvery,
	} {
		if d < 0 {
			return nil, nil, fmt.Errorf("%s must not be negative", name)
		}
	}
	rotationKey, err := h.secret(ctx, st, "oauth2-rotation-hmac")
	if err != nil {
		return nil, nil, fmt.Errorf("loading the refresh-token rotation key: %v", err)
	}
	ot := &token.OAuth{
		M: tokens, KeyRef: rotationKey,
		RefreshTTL:      time.Duration(o.RefreshTokenTTL),
		SignInEvery:     time.Duration(o.SignInEvery),
		Grace:           time.Duration(o.RefreshGrace),
		RevalidateEvery: time.Duration(h.OIDC.RevalidateEvery),
	}
	so := &signin.OAuth2{ClientID: ch.ClientID, RedirectURL: ch.RedirectURL, Tokens: ot, Revalidate: h.OIDC.RevalidateOnRefresh}
	if !so.Revalidate && h.OIDC.RefreshTokenKeys != "" {
		return nil, nil, fmt.Errorf("refresh_token_keys needs revalidate_on_refresh")
	}
	if so.Revalidate {
		if spec := expand(h.OIDC.RefreshTokenKeys); spec != "" {
			var err error
			if so.Keyring, err = signin.ParseKeyring(spec); err != nil {
				return nil, nil, fmt.Errorf("refresh_token_keys: %v", err)
			}
		} else {
			k, err := st.Secret(ctx, "idp-refresh-key", func() ([]byte, error) { return randomBytes(32) })
			if err != nil {
				return nil, nil, fmt.Errorf("loading the provider refresh-token key: %v", err)
			}
			if so.Keyring, err = signin.NewKeyring("store", k); err != nil {
				return nil, nil, err
			}
		}
	}
	return ch, so, nil
}

// loadTemplate reads and checks a template; label names the option in
// errors.
func loadTemplate(label, path string, log *zap.Logger) (*profile.Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", label, err)
	}
	t, err := profile.ParseTemplate(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v", label, path, err)
	}
	if t.HasStaticSCEPChallenge() {
		log.Warn("the enrollment profile carries a static SCEP challenge: every signed-in user receives it", zap.String("file", path))
	}
	return t, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// clientIP is Caddy's client address (which honours trusted_proxies).
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

func originalPath(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.Path
	}
	return ""
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return h.gw.ServeHTTP(w, r, next.ServeHTTP)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
