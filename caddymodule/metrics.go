package caddymodule

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/token"
	"github.com/mdmauth/mdmauth/internal/webhook"
)

// Metrics are Prometheus collectors on Caddy's registry, served by the
// admin endpoint's /metrics (and the metrics handler).
//
// Caddy gives every loaded config a new registry
// (caddy.Context.GetMetricsRegistry), so the counters are process-wide
// objects registered into each config's registry: they keep counting
// across reloads, and a second mdm_auth handler of the same config finds
// them already registered. The inventory gauges are per config (see
// metrics_inventory.go).
//
// Counters are driven by the audit trail rather than by calls sprinkled
// through the core packages: the logger the handler gives the core is teed
// into a zapcore.Core (eventCore) that counts each entry with an audit
// "event" field, whatever the configured log level, so the metrics and the
// audit trail cannot disagree. The one outcome that is not logged, a
// protected request let through (the bulk of the traffic), comes from the
// gateway's Allowed hook, which increments a pre-resolved counter: no
// allocation, no lock. Label values are fixed sets; anything else becomes
// "other", so no request can create a series.
var procMetrics = newMetrics()

// Label values.
const (
	methodWeb    = "apple-as-web"
	methodOAuth2 = "apple-oauth2"
	labelOther   = "other"
	labelNone    = "none"
)

// mdmReasons are the reasons of protected MDM requests (token.Reason and
// the guard's malformed_body), the only values of the reason label of
// mdm_auth_mdm_requests_total and mdm_auth_challenges_total besides
// "enrollment".
var mdmReasons = func() map[string]bool {
	m := map[string]bool{"malformed_body": true, "account_driven_on_unprotected_path": true}
	for _, r := range []token.Reason{token.ReasonOK, token.ReasonNoBearer, token.ReasonMalformed, token.ReasonUnknown,
		token.ReasonExpired, token.ReasonRevoked, token.ReasonWrongEnrollment, token.ReasonWrongUser, token.ReasonReauth,
		token.ReasonBlocked, token.ReasonRemoved, token.ReasonOffboarding, token.ReasonMacDevice, token.ReasonCheckOut,
		token.ReasonNoEnrollmentID} {
		m[string(r)] = true
	}
	return m
}()

// familyRevocations are the token endpoint refusals that revoke a token
// family.
var familyRevocations = map[string]bool{"code_replay": true, "refresh_reuse": true, "idp_refused": true}

// metrics holds the collectors.
type metrics struct {
	discovery       *prometheus.CounterVec
	challenges      *prometheus.CounterVec
	signIns         *prometheus.CounterVec
	tokensIssued    *prometheus.CounterVec
	tokensRefreshed prometheus.Counter
	tokensRevoked   *prometheus.CounterVec
	mdmRequests     *prometheus.CounterVec
	profiles        *prometheus.CounterVec
	webhook         *prometheus.CounterVec
	rateLimited     *prometheus.CounterVec
	storeOps        *prometheus.HistogramVec

	// allowed, storeObs and limited are resolved once, for the request
	// path.
	allowed  map[token.Reason]prometheus.Counter
	storeObs map[string]prometheus.Observer
	limited  map[string]prometheus.Counter
}

// storeBuckets span a cached read (tens of µs) to a slow synced write.
var storeBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func newMetrics() *metrics {
	const ns = "mdm_auth"
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	m := &metrics{
		discovery: counter("discovery_total",
			"Service discovery answers by result (answered, redirected, refused, not_found) and mode (byod, adde, none).", "result", "mode"),
		challenges: counter("challenges_total",
			"401 challenges by method (apple-as-web, apple-oauth2) and reason (enrollment, or why the token was refused).", "method", "reason"),
		signIns: counter("sign_ins_total",
			"Web sign-ins by outcome: success, refused (the user, provider or policy said no) or error (provider or store unavailable).", "result"),
		tokensIssued: counter("tokens_issued_total",
			"Access tokens issued by an interactive sign-in, by flow (web, oauth2).", "flow"),
		tokensRefreshed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "tokens_refreshed_total",
			Help: "OAuth 2 refresh token rotations (each issues an access token)."}),
		tokensRevoked: counter("tokens_revoked_total",
			"Revocations (of a token, a token family or a user's grants) by reason.", "reason"),
		mdmRequests: counter("mdm_requests_total",
			"Protected MDM requests by result (allowed, denied with a challenge, rejected as malformed) and reason; refused: an account-driven enrollment on an MDM path of the other enrollments.", "result", "reason"),
		profiles: counter("profiles_served_total",
			"Enrollment profiles served, by mode.", "mode"),
		webhook: counter("binding_webhook_events_total",
			"Binding webhook events by outcome (delivered, failed, dropped).", "result"),
		rateLimited: counter("rate_limited_total",
			"Requests refused with 429 by an abuse limit, by limit.", "limit"),
		storeOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "store_operation_duration_seconds",
			Help: "Latency of token store operations, by operation.", Buckets: storeBuckets}, []string{"op"}),
		allowed:  map[token.Reason]prometheus.Counter{},
		storeObs: map[string]prometheus.Observer{},
		limited:  map[string]prometheus.Counter{},
	}
	for _, l := range []string{gateway.LimitDiscovery, gateway.LimitDiscoveryUser, gateway.LimitSignIn, gateway.LimitSignInUser,
		gateway.LimitCallback, gateway.LimitBearerFailures, gateway.LimitTokenPerFamily, gateway.LimitPendingSignIns} {
		m.limited[l] = m.rateLimited.WithLabelValues(l)
	}
	for _, r := range []token.Reason{token.ReasonOK, token.ReasonCheckOut, token.ReasonMacDevice, token.ReasonOffboarding} {
		m.allowed[r] = m.mdmRequests.WithLabelValues("allowed", string(r))
	}
	for _, op := range storeOps {
		m.storeObs[op] = m.storeOps.WithLabelValues(op)
	}
	for _, r := range []string{"success", "refused", "error"} {
		m.signIns.WithLabelValues(r)
	}
	for _, f := range []string{"web", "oauth2"} {
		m.tokensIssued.WithLabelValues(f)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.discovery, m.challenges, m.signIns, m.tokensIssued, m.tokensRefreshed,
		m.tokensRevoked, m.mdmRequests, m.profiles, m.webhook, m.rateLimited, m.storeOps}
}

// register adds the collectors to reg; registering them twice in the same
// registry (two mdm_auth handlers in one config) is not an error.
func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range m.collectors() {
		err := reg.Register(c)
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) && are.ExistingCollector == c {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// countAllowed is the gateway's Allowed hook.
func (m *metrics) countAllowed(r token.Reason) {
	if c, ok := m.allowed[r]; ok {
		c.Inc()
		return
	}
	m.mdmRequests.WithLabelValues("allowed", labelOther).Inc()
}

// countLimited is the gateway's Limited hook.
func (m *metrics) countLimited(limit string) {
	if c, ok := m.limited[limit]; ok {
		c.Inc()
		return
	}
	m.rateLimited.WithLabelValues(labelOther).Inc()
}

// countWebhook is the binding webhook's Observe function.
func (m *metrics) countWebhook(o webhook.Outcome) { m.webhook.WithLabelValues(string(o)).Inc() }

// logger returns log teed into the event counter; method is the challenge
// method of the handler (apple-as-web or apple-oauth2), "" where there is
// none.
func (m *metrics) logger(log *zap.Logger, method string) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, &eventCore{m: m, method: method})
	}))
}

// auditFields are the fields of an entry the counters read.
type auditFields struct {
	event, reason, mode, version string
	notFound                     bool
	status, tokens, families     int64
}

func (a *auditFields) add(fs []zapcore.Field) {
	for i := range fs {
		f := &fs[i]
		switch f.Type {
		case zapcore.StringType:
			switch f.Key {
			case "event":
				a.event = f.String
			case "reason":
				a.reason = f.String
			case "mode":
				a.mode = f.String
			case "version":
				a.version = f.String
			}
		case zapcore.BoolType:
			if f.Key == "not_found" {
				a.notFound = f.Integer == 1
			}
		case zapcore.Int64Type, zapcore.Int32Type, zapcore.Int16Type, zapcore.Int8Type:
			switch f.Key {
			case "status":
				a.status = f.Integer
			case "tokens", "tokens_revoked":
				a.tokens = f.Integer
			case "families", "families_revoked":
				a.families = f.Integer
			}
		}
	}
}

// eventCore counts audit entries. It is enabled at every level, so the
// configured log level does not change what is counted, and writes
// nothing.
type eventCore struct {
	m      *metrics
	method string
	with   auditFields
}

func (c *eventCore) Enabled(zapcore.Level) bool { return true }

func (c *eventCore) With(fs []zapcore.Field) zapcore.Core {
	cc := *c
	cc.with.add(fs)
	return &cc
}

func (c *eventCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c *eventCore) Write(_ zapcore.Entry, fs []zapcore.Field) error {
	a := c.with
	a.add(fs)
	if a.event != "" {
		c.m.count(c.method, &a)
	}
	return nil
}

func (c *eventCore) Sync() error { return nil }

// count maps one audit entry to the counters (docs/audit-events.md lists
// the events and their fields).
func (m *metrics) count(method string, a *auditFields) {
	switch a.event {
	case audit.DiscoveryAnswered:
		m.discovery.WithLabelValues("answered", mode(strings.TrimPrefix(a.version, "mdm-"))).Inc()
	case audit.DiscoveryRedirected:
		m.discovery.WithLabelValues("redirected", labelNone).Inc()
	case audit.DiscoveryRefused:
		result := "refused"
		if a.notFound {
			result = "not_found"
		}
		m.discovery.WithLabelValues(result, labelNone).Inc()
	case audit.EnrollmentChallenged:
		m.challenges.WithLabelValues(challengeMethod(method), "enrollment").Inc()
	case audit.EnrollmentRefused:
		// A refused token gets a new challenge (401); the other refusals
		// are 403s with a com.apple.* reason.
		if !strings.HasPrefix(a.reason, "com.apple.") {
			m.challenges.WithLabelValues(challengeMethod(method), mdmReason(a.reason)).Inc()
		}
	case audit.MDMChallenged:
		r := mdmReason(a.reason)
		m.challenges.WithLabelValues(challengeMethod(method), r).Inc()
		m.mdmRequests.WithLabelValues("denied", r).Inc()
	case audit.MDMRejected:
		m.mdmRequests.WithLabelValues("rejected", mdmReason(a.reason)).Inc()
	case audit.MDMRefused:
		m.mdmRequests.WithLabelValues("refused", mdmReason(a.reason)).Inc()
	case audit.SignInFailed:
		result := "refused"
		if a.status >= 500 {
			result = "error"
		}
		m.signIns.WithLabelValues(result).Inc()
	case audit.TokenIssued:
		m.signIns.WithLabelValues("success").Inc()
		m.tokensIssued.WithLabelValues("web").Inc()
	case audit.CodeIssued:
		m.signIns.WithLabelValues("success").Inc()
	case audit.OAuthTokenIssued:
		m.tokensIssued.WithLabelValues("oauth2").Inc()
	case audit.OAuthTokenRefreshed:
		m.tokensRefreshed.Inc()
	case audit.OAuthTokenRefused:
		if familyRevocations[a.reason] {
			m.tokensRevoked.WithLabelValues(a.reason).Inc()
		}
	case audit.EnrollmentCheckedOut:
		m.tokensRevoked.WithLabelValues("checkout").Inc()
	case audit.LogoutBackchannel:
		if a.tokens+a.families > 0 {
			m.tokensRevoked.WithLabelValues("backchannel_logout").Inc()
		}
	case audit.AdminStateChanged, audit.AdminGrantsRevoked, audit.AdminTokenRevoked:
		if a.tokens+a.families > 0 {
			m.tokensRevoked.WithLabelValues("admin").Inc()
		}
	case audit.ProfileServed:
		m.profiles.WithLabelValues(mode(a.mode)).Inc()
	}
}

func mode(m string) string {
	if m == "byod" || m == "adde" {
		return m
	}
	return labelOther
}

func challengeMethod(m string) string {
	if m == methodWeb || m == methodOAuth2 {
		return m
	}
	return labelOther
}

func mdmReason(r string) string {
	if mdmReasons[r] {
		return r
	}
	return labelOther
}
