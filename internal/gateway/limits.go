package gateway

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/ratelimit"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/token"
)

// Limits are the gateway's abuse limits, kept in memory (per gateway,
// reset by a reload). A disabled Rate (the zero value) limits nothing.
// Thousands of devices may share one carrier or office NAT, so the per-IP
// defaults are generous, and the MDM paths are never limited per IP unless
// BearerFailures is set.
type Limits struct {
	// Discovery limits discovery requests per client IP; DiscoveryUser per
	// user identifier (lower-cased; only a keyed hash is kept).
	Discovery, DiscoveryUser ratelimit.Rate
	// SignIn limits sign-in starts (the apple-as-web sign-in URL and the
	// apple-oauth2 authorization endpoint) per client IP; SignInUser per
	// user identifier (user-identifier or login_hint, lower-cased).
	SignIn, SignInUser ratelimit.Rate
	// Callback limits the identity provider's redirects back per client IP.
	Callback ratelimit.Rate
	// BearerFailures limits, per client IP, the protected requests refused
	// for a bearer that is malformed, unknown, or presented by another
	// enrollment or user; over it those refusals are answered 429 instead
	// of 401. Ordinary refusals (no bearer, expired, reauth, revoked,
	// blocked, removed) and accepted requests are never counted nor
	// limited. Off by default.
	BearerFailures ratelimit.Rate
	// TokenPerFamily limits refresh_token grants per OAuth 2 token family;
	// the token endpoint is never limited per IP.
	TokenPerFamily ratelimit.Rate
	// PendingSignIns bounds the sign-ins started (answered with a redirect
	// to the provider, so holding a stored login state) over the last
	// PendingTTL; past it every sign-in start is answered 429 until the
	// oldest leave the window. 0: unbounded.
	PendingSignIns int
	// PendingTTL is the lifetime of a pending sign-in (the sign-in's
	// LoginTTL; default 10 minutes).
	PendingTTL time.Duration
	// MaxKeys bounds the keys (addresses, identifiers, families) each limit
	// tracks; past it the least recently seen are forgotten (default
	// DefaultLimitKeys).
	MaxKeys int
}

// DefaultLimitKeys is the default of Limits.MaxKeys.
const DefaultLimitKeys = 50_000

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		Discovery:      ratelimit.Rate{Events: 600, Per: time.Minute, Burst: 200},
		DiscoveryUser:  ratelimit.Rate{Events: 30, Per: time.Minute, Burst: 10},
		SignIn:         ratelimit.Rate{Events: 300, Per: time.Minute, Burst: 100},
		SignInUser:     ratelimit.Rate{Events: 20, Per: time.Minute, Burst: 10},
		Callback:       ratelimit.Rate{Events: 300, Per: time.Minute, Burst: 100},
		TokenPerFamily: ratelimit.Rate{Events: 30, Per: time.Minute, Burst: 10},
		PendingSignIns: 100_000,
	}
}

// Names of the limits, as logged in ratelimit.exceeded entries and written
// in the configuration.
const (
	LimitDiscovery      = "discovery"
	LimitDiscoveryUser  = "discovery_user"
	LimitSignIn         = "sign_in"
	LimitSignInUser     = "sign_in_user"
	LimitCallback       = "callback"
	LimitBearerFailures = "bearer_failures"
	LimitTokenPerFamily = "token_per_family"
	LimitPendingSignIns = "pending_sign_ins"
)

// limiters are the running limits.
type limiters struct {
	discovery                                    *discoveryLimits
	signIn, signInUser, callback, bearer, family *ratelimit.Limiter
	pending                                      *ratelimit.Window
	maxPending                                   int64
	pendingLogged                                atomic.Int64 // unix seconds
}

// discoveryLimits are the discovery limits, per client IP and per user
// identifier.
type discoveryLimits struct{ perIP, perUser *ratelimit.Limiter }

func newLimiter(r ratelimit.Rate, maxKeys int, now func() time.Time) *ratelimit.Limiter {
	if !r.Enabled() {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = DefaultLimitKeys
	}
	return ratelimit.New(ratelimit.Config{Rate: r, MaxKeys: maxKeys, Now: now})
}

func newDiscoveryLimits(l Limits, now func() time.Time) *discoveryLimits {
	return &discoveryLimits{perIP: newLimiter(l.Discovery, l.MaxKeys, now), perUser: newLimiter(l.DiscoveryUser, l.MaxKeys, now)}
}

// admit applies the discovery limits to r, reporting refusals to s.
func (d *discoveryLimits) admit(w http.ResponseWriter, r *http.Request, s limitSink) bool {
	if d == nil {
		return true
	}
	if !s.check(w, r, d.perIP, LimitDiscovery, audit.Addr(r, s.ip)) {
		return false
	}
	if d.perUser == nil {
		return true
	}
	req, err := apple.ParseDiscoveryQuery(r.URL.RawQuery)
	if err != nil || req.UserIdentifier == "" {
		return true // refused by discovery itself
	}
	ui := normalizeUser(req.UserIdentifier)
	return s.check(w, r, d.perUser, LimitDiscoveryUser, ui, zap.String("user_identifier", ui))
}

// DiscoveryLimiter applies the discovery limits of a discovery handler
// that runs without a gateway (the website's mdm_discovery).
type DiscoveryLimiter struct {
	lim  *discoveryLimits
	sink limitSink
}

// NewDiscoveryLimiter returns the limiter of l's Discovery and
// DiscoveryUser rates; refusals are logged to log (ratelimit.exceeded) and
// reported to limited (optional).
func NewDiscoveryLimiter(l Limits, now func() time.Time, log *zap.Logger, ip audit.ClientIP, limited func(name string)) *DiscoveryLimiter {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &DiscoveryLimiter{lim: newDiscoveryLimits(l, now), sink: limitSink{log: log, ip: ip, limited: limited}}
}

// Admit applies the limits to r; on a refusal it has answered 429.
func (d *DiscoveryLimiter) Admit(w http.ResponseWriter, r *http.Request) bool {
	return d.lim.admit(w, r, d.sink)
}

// limitSink is where refusals go: the audit log and the Limited hook.
type limitSink struct {
	log     *zap.Logger
	ip      audit.ClientIP
	limited func(name string)
}

func (g *Gateway) sink() limitSink { return limitSink{log: g.log, ip: g.ClientIP, limited: g.limited} }

// SetLimits puts l in force (replacing any earlier limits). Call it before
// serving.
func (g *Gateway) SetLimits(l Limits) {
	if l.MaxKeys <= 0 {
		l.MaxKeys = DefaultLimitKeys
	}
	if l.PendingTTL <= 0 {
		l.PendingTTL = 10 * time.Minute
	}
	mk := func(r ratelimit.Rate) *ratelimit.Limiter { return newLimiter(r, l.MaxKeys, g.now) }
	lim := &limiters{
		discovery: newDiscoveryLimits(l, g.now),
		signIn:    mk(l.SignIn), signInUser: mk(l.SignInUser), callback: mk(l.Callback),
		bearer: mk(l.BearerFailures), family: mk(l.TokenPerFamily),
	}
	if l.PendingSignIns > 0 {
		lim.pending = ratelimit.NewWindow(l.PendingTTL, 20, g.now)
		lim.maxPending = int64(l.PendingSignIns)
	}
	g.lim = lim
	if g.web != nil && g.web.OAuth2 != nil {
		g.web.OAuth2.FamilyLimit = nil
		if lim.family != nil {
			g.web.OAuth2.FamilyLimit = func(r *http.Request, fam string) (time.Duration, bool) {
				res := lim.family.Allow(fam)
				if !res.OK {
					if res.First {
						g.sink().logLimited(r, LimitTokenPerFamily, res.RetryAfter, zap.String("family_id", fam))
					}
					g.limited(LimitTokenPerFamily)
				}
				return res.RetryAfter, res.OK
			}
		}
	}
}

// limited reports a refusal of the named limit to Hooks.Limited.
func (g *Gateway) limited(name string) {
	if g.Hooks.Limited != nil {
		g.Hooks.Limited(name)
	}
}

// tooMany answers 429 with Retry-After.
func tooMany(w http.ResponseWriter, wait time.Duration) {
	h := w.Header()
	h.Set("Retry-After", ratelimit.Seconds(wait))
	h.Set("Cache-Control", "no-store")
	http.Error(w, "too many requests; try again later", http.StatusTooManyRequests)
}

// logLimited writes the ratelimit.exceeded audit entry.
func (s limitSink) logLimited(r *http.Request, name string, wait time.Duration, fields ...zap.Field) {
	s.log.Warn("rate limit exceeded", append(audit.Fields(audit.RateLimitExceeded, r, s.ip),
		append([]zap.Field{zap.String("limit", name), zap.Int64("retry_after", int64((wait+time.Second-1)/time.Second))}, fields...)...)...)
}

// clientKey is the client address the limits count by.
func (g *Gateway) clientKey(r *http.Request) string {
	return audit.Addr(r, g.ClientIP)
}

// check takes one event of key from l; on a refusal it answers 429 and logs
// the first refusal of the key.
func (s limitSink) check(w http.ResponseWriter, r *http.Request, l *ratelimit.Limiter, name, key string, fields ...zap.Field) bool {
	if l == nil {
		return true
	}
	res := l.Allow(key)
	if res.OK {
		return true
	}
	if res.First {
		s.logLimited(r, name, res.RetryAfter, fields...)
	}
	if s.limited != nil {
		s.limited(name)
	}
	tooMany(w, res.RetryAfter)
	return false
}

func (g *Gateway) check(w http.ResponseWriter, r *http.Request, l *ratelimit.Limiter, name, key string, fields ...zap.Field) bool {
	return g.sink().check(w, r, l, name, key, fields...)
}

// normalizeUser is the key of a user identifier: trimmed and lower-cased.
func normalizeUser(ui string) string {
	if len(ui) > 320 {
		ui = ui[:320]
	}
	return strings.ToLower(strings.TrimSpace(ui))
}

// admitDiscovery applies the discovery limits.
func (g *Gateway) admitDiscovery(w http.ResponseWriter, r *http.Request) bool {
	if g.lim == nil {
		return true
	}
	return g.lim.discovery.admit(w, r, g.sink())
}

// admitSignIn applies the sign-in start limits; param names the query
// parameter holding the user identifier. It returns the writer to serve the
// start with (counting pending sign-ins) and whether to go on.
func (g *Gateway) admitSignIn(w http.ResponseWriter, r *http.Request, param string) (http.ResponseWriter, bool) {
	if g.lim == nil {
		return w, true
	}
	if !g.check(w, r, g.lim.signIn, LimitSignIn, g.clientKey(r)) {
		return w, false
	}
	if g.lim.signInUser != nil {
		q, _ := signin.ParseParams(r.URL.RawQuery, 32)
		if ui := normalizeUser(q[param]); ui != "" &&
			!g.check(w, r, g.lim.signInUser, LimitSignInUser, ui, zap.String("user_identifier", ui)) {
			return w, false
		}
	}
	p := g.lim.pending
	if p == nil {
		return w, true
	}
	if p.Count() >= g.lim.maxPending {
		wait := p.Drain(g.lim.maxPending)
		// One entry a minute at most: this limit is shared by everyone.
		if now := g.now().Unix(); g.lim.pendingLogged.Load() < now-60 {
			g.lim.pendingLogged.Store(now)
			g.sink().logLimited(r, LimitPendingSignIns, wait, zap.Int64("pending", p.Count()))
		}
		g.limited(LimitPendingSignIns)
		tooMany(w, wait)
		return w, false
	}
	return &pendingWriter{ResponseWriter: w, win: p}, true
}

// admitCallback applies the callback limit.
func (g *Gateway) admitCallback(w http.ResponseWriter, r *http.Request) bool {
	if g.lim == nil {
		return true
	}
	return g.check(w, r, g.lim.callback, LimitCallback, g.clientKey(r))
}

// bearerFailure counts a refused protected request against its client's
// budget of bearer failures and, past it, answers 429. It reports whether
// it answered.
func (g *Gateway) bearerFailure(w http.ResponseWriter, r *http.Request, reason token.Reason) bool {
	if g.lim == nil || g.lim.bearer == nil {
		return false
	}
	switch reason {
	case token.ReasonMalformed, token.ReasonUnknown, token.ReasonWrongEnrollment, token.ReasonWrongUser:
	default:
		return false // the ordinary refusals of real devices
	}
	return !g.check(w, r, g.lim.bearer, LimitBearerFailures, g.clientKey(r), zap.String("reason", string(reason)))
}

// pendingWriter counts a sign-in start that redirected to the provider:
// one more stored login state.
type pendingWriter struct {
	http.ResponseWriter
	win   *ratelimit.Window
	wrote bool
}

func (p *pendingWriter) WriteHeader(code int) {
	if !p.wrote {
		p.wrote = true
		if code == http.StatusFound {
			p.win.Add(1)
		}
	}
	p.ResponseWriter.WriteHeader(code)
}

func (p *pendingWriter) Write(b []byte) (int, error) {
	if !p.wrote {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (p *pendingWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
