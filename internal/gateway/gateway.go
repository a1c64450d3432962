// Package gateway is the HTTP core of mdmauth, free of Caddy: it routes the
// discovery, enrollment and sign-in endpoints, and guards the protected MDM
// paths before the next handler (the reverse proxy to the MDM) runs.
package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/policy"
	"github.com/mdmauth/mdmauth/internal/profile"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// Defaults.
const (
	DefaultPrefix        = "/mdmauth"
	DefaultMaxEnrollBody = 64 << 10
	DefaultMaxMDMBody    = 8 << 20
)

// Config is the gateway's validated configuration.
type Config struct {
	// Prefix of the gateway's own endpoints (default /mdmauth).
	Prefix string
	// PublicURL, when set, is the scheme://host[:port] of public URLs;
	// otherwise they are derived from each request.
	PublicURL *url.URL
	// Domains are the user-identifier domains discovery answers.
	Domains []string
	// DefaultMode and FamilyModes choose the enrollment mode.
	DefaultMode apple.Mode
	FamilyModes map[string]apple.Mode
	// Template is the default enrollment profile template; Templates are
	// the named ones policy rules may choose.
	Template  *profile.Template
	Templates map[string]*profile.Template
	// ESSO, when set, offers Enrollment SSO on the enrollment 401.
	ESSO *ESSO
	// Signer, when set, signs every served profile (CMS SignedData with
	// the chain).
	Signer *profile.Signer
	// Policy decides who may enroll how. Without one, every user of
	// Domains may enroll in the modes DefaultMode and FamilyModes give;
	// with one, those two are ignored (Policy.Modes counts).
	Policy *policy.Policy
	// Protect lists the path prefixes (matched by segment) of the
	// account-driven enrollments' ServerURL/CheckInURL.
	Protect []string
	// RefuseAccountDriven lists the MDM path prefixes (matched by segment)
	// that profile-based and ADE enrollments use. A request there that
	// names an enrollment the store knows as account-driven (in any state
	// but removed) is refused with 403, never 401: its device identity
	// could otherwise reach the MDM around the bearer check, and so around
	// revocation, reauth and block. Protected paths below them stay
	// protected.
	RefuseAccountDriven []string
	// DiscoveryNotFound answers unknown users and domains 404 instead of
	// 403, so that iOS 18.2+ falls back to Apple Business Manager.
	DiscoveryNotFound bool
	// DiscoveryUnknownMessage replaces the 403 message for unknown users
	// and domains.
	DiscoveryUnknownMessage string
	// Body limits.
	MaxEnrollBody int64
	MaxMDMBody    int64
	// OAuth2, when set, makes challenges use apple-oauth2 with this client
	// id and redirect URL (the sign-in's OAuth2 must be set too);
	// otherwise they use apple-as-web.
	OAuth2 *OAuth2Challenge
	// BackchannelLogout, when set, serves OpenID Connect back-channel
	// logout at <prefix>/oidc/backchannel-logout.
	BackchannelLogout *BackchannelLogout
}

// ESSO is Enrollment SSO: the header put on the enrollment 401 (never for a
// Mac: macOS has no Enrollment SSO) and the EnrollmentSSODocument served at
// <prefix>/esso.
type ESSO struct {
	Header   string // X-Apple-MDM-ESSO or X-Apple-MDM-ESSO-Developer
	Document []byte // JSON
}

// OAuth2Challenge is what an apple-oauth2 challenge tells the device.
type OAuth2Challenge struct {
	ClientID    string
	RedirectURL string
	Scope       string
}

// Gateway serves the endpoints and guards the protected paths.
type Gateway struct {
	cfg    Config
	web    *signin.Web
	tokens *token.Manager
	store  store.Store
	signer signin.Signer
	log    *zap.Logger
	now    func() time.Time
	disc   *Discovery

	// OriginalPath returns the path the client sent, before any rewrite;
	// protected paths are checked against it too, so that a rewrite can
	// never take a request around the bearer check. Optional.
	OriginalPath func(*http.Request) string
	// ClientIP gives the client address for audit entries (optional; the
	// Caddy module uses Caddy's, which honours trusted_proxies).
	ClientIP audit.ClientIP
	// SkipAccessLog marks a response that carries a credential (the 308
	// with the access token, the callback URL with the code) so that the
	// server's access log leaves it out. Optional.
	SkipAccessLog func(*http.Request)
	// Hooks observe the guard's outcomes (optional).
	Hooks Hooks

	lim *limiters // abuse limits (SetLimits); nil: none
}

// Deps are the gateway's collaborators.
type Deps struct {
	Web    *signin.Web
	Tokens *token.Manager
	Store  store.Store
	Signer signin.Signer
	Log    *zap.Logger
	Now    func() time.Time
}

// New validates cfg and returns a gateway.
func New(cfg Config, d Deps) (*Gateway, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("prefix %q must start with / and not end with /", cfg.Prefix)
	}
	if cfg.MaxEnrollBody <= 0 {
		cfg.MaxEnrollBody = DefaultMaxEnrollBody
	}
	if cfg.MaxMDMBody <= 0 {
		cfg.MaxMDMBody = DefaultMaxMDMBody
	}
	if cfg.DefaultMode == "" {
		cfg.DefaultMode = apple.ModeBYOD
	}
	cfg.Domains = append([]string(nil), cfg.Domains...)
	for i, d := range cfg.Domains {
		cfg.Domains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	if cfg.Policy == nil {
		if len(cfg.Domains) == 0 {
			return nil, errors.New("discovery needs at least one domain")
		}
		fm := map[string]string{}
		for f, m := range cfg.FamilyModes {
			fm[f] = string(m)
		}
		cfg.Policy = &policy.Policy{
			Rules: []policy.Rule{{Name: "domains", Domains: cfg.Domains}},
			Modes: policy.Modes{Default: string(cfg.DefaultMode), ByFamily: fm},
		}
	}
	if err := cfg.Policy.Validate(func(name string) bool { return cfg.Templates[name] != nil }); err != nil {
		return nil, fmt.Errorf("policy: %v", err)
	}
	if cfg.Template == nil {
		return nil, errors.New("an enrollment profile template is required")
	}
	cfg.Protect = append([]string(nil), cfg.Protect...)
	for i, p := range cfg.Protect {
		p = strings.ToLower(strings.TrimSuffix(p, "/"))
		if !strings.HasPrefix(p, "/") || p == "" {
			return nil, fmt.Errorf("protect path %q must start with / and not be the root", cfg.Protect[i])
		}
		if segmentMatch(p, cfg.Prefix) || segmentMatch(cfg.Prefix, p) || segmentMatch(apple.WellKnownPath, p) {
			return nil, fmt.Errorf("protect path %q overlaps the gateway's own endpoints", p)
		}
		cfg.Protect[i] = p
	}
	cfg.RefuseAccountDriven = append([]string(nil), cfg.RefuseAccountDriven...)
	for i, p := range cfg.RefuseAccountDriven {
		p = strings.ToLower(strings.TrimSuffix(p, "/"))
		if !strings.HasPrefix(p, "/") || p == "" {
			return nil, fmt.Errorf("refuse_account_driven path %q must start with / and not be the root", cfg.RefuseAccountDriven[i])
		}
		if segmentMatch(p, cfg.Prefix) || segmentMatch(cfg.Prefix, p) || segmentMatch(apple.WellKnownPath, p) || segmentMatch(p, apple.WellKnownPath) {
			return nil, fmt.Errorf("refuse_account_driven path %q overlaps the gateway's own endpoints", p)
		}
		for _, pr := range cfg.Protect {
			if segmentMatch(p, pr) {
				return nil, fmt.Errorf("refuse_account_driven path %q lies under the protected path %q", p, pr)
			}
		}
		cfg.RefuseAccountDriven[i] = p
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	g := &Gateway{cfg: cfg, web: d.Web, tokens: d.Tokens, store: d.Store, signer: d.Signer, log: d.Log, now: d.Now}
	g.disc = &Discovery{Policy: cfg.Policy, Domains: cfg.Domains, NotFound: cfg.DiscoveryNotFound, UnknownMessage: cfg.DiscoveryUnknownMessage, Log: d.Log,
		BaseURL: func(r *http.Request) string { return g.base(r) + cfg.Prefix }}
	return g, nil
}

// Policy returns the policy in force (the implicit one without a policy
// block), for the sign-in's re-check.
func (g *Gateway) Policy() *policy.Policy { return g.cfg.Policy }

// audit returns the audit fields of an event about r, then fields.
func (g *Gateway) audit(event string, r *http.Request, fields []zap.Field) []zap.Field {
	return append(audit.Fields(event, r, g.ClientIP), fields...)
}

// SetClientIP sets the client address function of the gateway, its
// discovery and its sign-in.
func (g *Gateway) SetClientIP(f audit.ClientIP) {
	g.ClientIP = f
	g.disc.ClientIP = f
	if g.web != nil {
		g.web.ClientIP = f
	}
}

// Next is the rest of the handler chain.
type Next func(http.ResponseWriter, *http.Request) error

// Paths under the prefix.
const (
	pathEnroll   = "/enroll/"
	pathSignIn   = "/sign-in/"
	pathCallback = "/oidc/callback"
	pathLogout   = "/oidc/backchannel-logout"
	pathESSO     = "/esso"
	pathAuthz    = "/oauth2/authorize"
	pathToken    = "/oauth2/token"
)

// ServeHTTP handles the gateway's endpoints and protected paths and passes
// everything else to next untouched.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next Next) error {
	p := r.URL.Path
	// Public URLs are built from the Host unless PublicURL is set: a Host
	// that could change their meaning (user info, a path) is refused before
	// anything is built from it. net/http refuses most; this does not
	// depend on which server stack read the request.
	if g.cfg.PublicURL == nil && !validHost(r.Host) &&
		(p == apple.WellKnownPath || segmentMatch(p, g.cfg.Prefix) || g.protected(r)) {
		http.Error(w, "invalid Host", http.StatusBadRequest)
		return nil
	}
	switch {
	case p == apple.WellKnownPath:
		if g.admitDiscovery(w, r) {
			g.disc.ServeHTTP(w, r)
		}
		return nil
	case segmentMatch(p, g.cfg.Prefix):
		g.own(w, r, strings.TrimPrefix(p, g.cfg.Prefix))
		return nil
	case g.protected(r):
		return g.guard(w, r, next)
	case g.shielded(r):
		return g.refuseAccountDriven(w, r, next)
	}
	return next(w, r)
}

func (g *Gateway) own(w http.ResponseWriter, r *http.Request, rest string) {
	switch {
	case strings.HasPrefix(rest, pathEnroll):
		g.enroll(w, r, strings.TrimPrefix(rest, pathEnroll))
	case strings.HasPrefix(rest, pathSignIn):
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		w, ok := g.admitSignIn(w, r, "user-identifier")
		if !ok {
			return
		}
		g.web.Start(w, r, strings.TrimPrefix(rest, pathSignIn), g.callbackURL(r))
	case rest == pathESSO && g.cfg.ESSO != nil:
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(g.cfg.ESSO.Document)
	case rest == pathAuthz && g.cfg.OAuth2 != nil:
		if !allow(w, r, http.MethodGet) {
			return
		}
		w, ok := g.admitSignIn(w, r, "login_hint")
		if !ok {
			return
		}
		g.web.Authorize(w, r, g.callbackURL(r))
	case rest == pathToken && g.cfg.OAuth2 != nil:
		g.web.TokenEndpoint(w, r)
	case rest == pathLogout && g.logoutEnabled():
		g.backchannelLogout(w, r)
	case rest == pathCallback:
		if g.SkipAccessLog != nil {
			g.SkipAccessLog(r) // its URL holds the code, its answer the token
		}
		if !allow(w, r, http.MethodGet) || !g.admitCallback(w, r) {
			return
		}
		g.web.Callback(w, r, g.callbackURL(r))
	default:
		http.NotFound(w, r)
	}
}

func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// base returns scheme://host of public URLs.
func (g *Gateway) base(r *http.Request) string {
	if g.cfg.PublicURL != nil {
		return g.cfg.PublicURL.Scheme + "://" + g.cfg.PublicURL.Host
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// CallbackPath is the OIDC redirect path under the prefix.
func (g *Gateway) callbackURL(r *http.Request) string {
	return g.base(r) + g.cfg.Prefix + pathCallback
}

// challenge answers 401 with exactly one challenge: apple-oauth2 when
// configured, else apple-as-web.
func (g *Gateway) challenge(w http.ResponseWriter, r *http.Request, f signin.Flow) {
	f.IssuedAt = g.now()
	var ch string
	v, err := g.signer.Encode(f)
	if err == nil {
		base := g.base(r) + g.cfg.Prefix
		if o := g.cfg.OAuth2; o != nil {
			params := []apple.Param{
				{Name: "authorization-url", Value: base + pathAuthz + "?flow=" + v},
				{Name: "token-url", Value: base + pathToken},
				{Name: "redirect-url", Value: o.RedirectURL},
				{Name: "client-id", Value: o.ClientID},
			}
			if o.Scope != "" {
				params = append(params, apple.Param{Name: "scope", Value: o.Scope})
			}
			ch, err = apple.RenderChallenge("apple-oauth2", params...)
		} else {
			ch, err = apple.WebChallenge(base + pathSignIn + v)
		}
	}
	if errors.Is(err, signin.ErrKeyUnavailable) {
		storeUnavailable(w, g.log, err) // 503, never a challenge without its key
		return
	}
	if err != nil {
		g.log.Error("rendering challenge", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("WWW-Authenticate", ch)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, "authentication required\n")
}

// readBody reads at most max bytes of the body; 413 past that.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, bool) {
	if r.ContentLength > max {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return nil, false
	}
	var (
		b   []byte
		err error
	)
	if r.ContentLength >= 0 {
		// The usual case (devices send Content-Length): one exact
		// allocation, then make sure nothing follows.
		b = make([]byte, r.ContentLength)
		if _, err = io.ReadFull(r.Body, b); err == nil {
			var one [1]byte
			if n, _ := r.Body.Read(one[:]); n > 0 {
				err = errors.New("body longer than its Content-Length")
			}
		}
	} else {
		b, err = io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "cannot read request body", http.StatusBadRequest)
		}
		return nil, false
	}
	return b, true
}

// validHost reports whether h is a host[:port] safe to put in a URL.
func validHost(h string) bool {
	return h != "" && httpguts.ValidHostHeader(h) && !strings.ContainsAny(h, "@/\\\"#?%")
}

// segmentMatch reports whether path is prefix or lies below it.
func segmentMatch(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

func (g *Gateway) protected(r *http.Request) bool {
	return g.matches(r, g.cfg.Protect)
}

// shielded reports whether r goes to an MDM path of the other enrollments
// (RefuseAccountDriven), as sent or as rewritten.
func (g *Gateway) shielded(r *http.Request) bool {
	return g.matches(r, g.cfg.RefuseAccountDriven)
}

// matches reports whether r's path, or the path the client sent before a
// rewrite, lies under one of prefixes.
func (g *Gateway) matches(r *http.Request, prefixes []string) bool {
	if len(prefixes) == 0 {
		return false
	}
	if under(r.URL.Path, prefixes) {
		return true
	}
	if g.OriginalPath != nil {
		if op := g.OriginalPath(r); op != "" && op != r.URL.Path && under(op, prefixes) {
			return true
		}
	}
	return false
}

// under reports whether p lies under one of prefixes, either as sent or
// read the way path matchers (Caddy's among them) read it: lower-cased,
// with repeated slashes merged and dot segments resolved. Otherwise
// /MDM/AD or /mdm//ad could be rewritten to the MDM without a check.
func under(p string, prefixes []string) bool {
	n := normalizePath(p)
	for _, pr := range prefixes {
		if segmentMatch(p, pr) || segmentMatch(n, pr) {
			return true
		}
	}
	return false
}

// normalizePath lower-cases p and cleans it as a rooted path; it does not
// allocate when p is already in that form.
func normalizePath(p string) string {
	p = strings.ToLower(p)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return path.Clean(p)
}

func storeUnavailable(w http.ResponseWriter, log *zap.Logger, err error) {
	log.Error("store unavailable", zap.Error(err))
	w.Header().Set("Retry-After", "30")
	http.Error(w, "service temporarily unavailable", http.StatusServiceUnavailable)
}
