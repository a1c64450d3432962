package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/gateway"
)

func init() {
	caddy.RegisterModule(DiscoveryHandler{})
	httpcaddyfile.RegisterDirective("mdm_discovery", parseDiscoveryDirective)
	httpcaddyfile.RegisterDirectiveOrder("mdm_discovery", httpcaddyfile.Before, "basic_auth")
}

// DiscoveryHandler serves Apple's service discovery
// (/.well-known/com.apple.remotemanagement) on the organization's own
// website, e.g. example.com, so that users can type name@example.com.
// Either it redirects devices to the MDM host, carrying user-identifier and
// model-family in Location (devices do not copy the query), or it answers
// itself with the MDM host's enrollment URL. Other requests pass through.
type DiscoveryHandler struct {
	// Redirect is the MDM host (scheme://host[:port]) that answers
	// discovery; requests are redirected there (308).
	Redirect string `json:"redirect,omitempty"`
	// BaseURL, instead of Redirect, answers in place: the MDM host and the
	// mdm_auth prefix, e.g. https://mdm.example.com/mdmauth.
	BaseURL string `json:"base_url,omitempty"`
	// Discovery: the domains answered, the modes, and how unknown users and
	// domains are answered (403 or 404).
	Discovery Discovery `json:"discovery"`
	// Policy decides who is answered and in which mode (as in mdm_auth; use
	// the same rules there, which re-checks them at sign-in).
	Policy *Policy `json:"policy,omitempty"`
	// Limits: the discovery rate limits, per client address (discovery,
	// default 600/m burst 200) and per user identifier (discovery_user,
	// default 30/m burst 10), as in mdm_auth; "off" disables both. Other
	// limits do not apply here.
	Limits *Limits `json:"limits,omitempty"`

	disc *gateway.Discovery
	lim  *gateway.DiscoveryLimiter
}

// CaddyModule returns the Caddy module information.
func (DiscoveryHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mdm_discovery",
		New: func() caddy.Module { return new(DiscoveryHandler) },
	}
}

// Provision validates the configuration.
func (h *DiscoveryHandler) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	def, fm, err := h.Discovery.modes()
	if err != nil {
		return err
	}
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := procMetrics.register(reg); err != nil {
			return fmt.Errorf("registering metrics: %v", err)
		}
	}
	d := &gateway.Discovery{
		Domains:        lower(h.Discovery.Domains),
		NotFound:       h.Discovery.Unknown == "404",
		UnknownMessage: h.Discovery.UnknownMessage,
		Log:            procMetrics.logger(ctx.Logger(), ""), // counts the discovery answers
		ClientIP:       clientIP,
	}
	redirect, base := repl.ReplaceKnown(h.Redirect, ""), repl.ReplaceKnown(h.BaseURL, "")
	switch {
	case (redirect == "") == (base == ""):
		return fmt.Errorf("mdm_discovery: set exactly one of redirect and base_url")
	case redirect != "":
		u, err := url.Parse(redirect)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("mdm_discovery: redirect %q must be https://host[:port]", redirect)
		}
		d.Redirect = "https://" + u.Host
		if h.Policy != nil {
			if d.Policy, err = buildPolicy(h.Policy, &h.Discovery, def, fm); err != nil {
				return err
			}
		} else if len(d.Domains) == 0 {
			return fmt.Errorf("mdm_discovery: list the domains to redirect (discovery { domains … }) or a policy")
		}
	default:
		u, err := url.Parse(base)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
			u.Fragment != "" || strings.HasSuffix(u.Path, "/") || u.String() != base {
			return fmt.Errorf("mdm_discovery: base_url %q must be https://host[:port]/prefix, without a trailing slash", base)
		}
		d.BaseURL = func(*http.Request) string { return base }
		if d.Policy, err = buildPolicy(h.Policy, &h.Discovery, def, fm); err != nil {
			return err
		}
	}
	if d.Policy != nil {
		if err := d.Policy.Validate(nil); err != nil {
			return fmt.Errorf("mdm_discovery policy: %v", err)
		}
	}
	h.disc = d
	if l := h.Limits; l != nil && (l.SignIn != "" || l.SignInUser != "" || l.Callback != "" || l.BearerFailures != "" ||
		l.TokenPerFamily != "" || l.PendingSignIns != 0) {
		return fmt.Errorf("mdm_discovery limits: only discovery, discovery_user and max_keys apply")
	}
	lim, err := h.Limits.build()
	if err != nil {
		return fmt.Errorf("mdm_discovery %v", err)
	}
	if lim != nil {
		h.lim = gateway.NewDiscoveryLimiter(*lim, nil, d.Log, clientIP, procMetrics.countLimited)
	}
	return nil
}

func lower(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToLower(strings.TrimSuffix(s, "."))
	}
	return out
}

// ServeHTTP answers the well-known path and passes everything else on.
func (h *DiscoveryHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path != apple.WellKnownPath {
		return next.ServeHTTP(w, r)
	}
	if h.lim != nil && !h.lim.Admit(w, r) {
		return nil
	}
	h.disc.ServeHTTP(w, r)
	return nil
}

func parseDiscoveryDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	m := new(DiscoveryHandler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return h.NewRoute(nil, m), nil
}

// UnmarshalCaddyfile parses
//
//	mdm_discovery {
//		redirect https://mdm.example.com      # or: base_url https://mdm.example.com/mdmauth
//		domains  example.com ...
//		mode     byod
//		mode     Mac adde
//		unknown  403 ["message"] | 404
//		policy { rule … }                     # as in mdm_auth
//	}
func (h *DiscoveryHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.Errf("mdm_discovery takes no matcher or arguments (got %q)", d.Val())
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "redirect":
			if !d.AllArgs(&h.Redirect) {
				return d.ArgErr()
			}
		case "base_url":
			if !d.AllArgs(&h.BaseURL) {
				return d.ArgErr()
			}
		case "domains", "mode", "unknown":
			if err := h.Discovery.option(d); err != nil {
				return err
			}
		case "policy":
			if h.Policy == nil {
				h.Policy = new(Policy)
			}
			if err := h.Policy.unmarshal(d); err != nil {
				return err
			}
		case "limits":
			if h.Limits == nil {
				h.Limits = new(Limits)
			}
			if err := h.Limits.unmarshal(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown mdm_discovery option %q", d.Val())
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*DiscoveryHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*DiscoveryHandler)(nil)
	_ caddyfile.Unmarshaler       = (*DiscoveryHandler)(nil)
)
