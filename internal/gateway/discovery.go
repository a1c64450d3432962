package gateway

import (
	"errors"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/policy"
)

// Discovery answers GET /.well-known/com.apple.remotemanagement, on the MDM
// host (inside the gateway) or on the organization's own website (the
// mdm_discovery handler): either itself, from the policy, or by
// redirecting to the MDM host with the query carried in Location (devices
// do not copy it).
type Discovery struct {
	// Policy decides who is answered and in which mode (required when
	// answering).
	Policy *policy.Policy
	// Domains, when set, are the only user-identifier domains answered.
	Domains []string
	// BaseURL returns the enrollment URL prefix for a request (scheme, host
	// and the gateway's prefix); the mode is appended.
	BaseURL func(*http.Request) string
	// Redirect, when set, is the scheme://host[:port] of the MDM host that
	// answers instead: requests of served domains are redirected there.
	Redirect string
	// NotFound answers unknown users and domains 404 instead of 403
	// com.apple.well-known.failed, so that iOS 18.2+ asks Apple Business
	// Manager instead.
	NotFound bool
	// UnknownMessage, when set, is the message of the 403 for unknown
	// users and domains.
	UnknownMessage string
	// Log receives the audit entries; nil discards them.
	Log *zap.Logger
	// ClientIP gives the client address for audit entries (optional).
	ClientIP audit.ClientIP
}

// ServeHTTP answers the discovery request.
func (dc *Discovery) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	req, err := apple.ParseDiscoveryQuery(r.URL.RawQuery)
	if err != nil {
		var re *apple.RequestError
		msg := "This account cannot be used to enroll a device."
		reason := err.Error()
		if errors.As(err, &re) {
			msg, reason = re.Message, re.Reason
		}
		dc.refuse(w, r, reason, msg, req, false)
		return
	}
	if len(dc.Domains) > 0 && !contains(dc.Domains, req.Domain) {
		dc.refuse(w, r, "domain not served", "Accounts of "+req.Domain+" cannot enroll devices with this organization.", req, true)
		return
	}
	if req.ModelFamily != "" && !apple.SupportsAccountDrivenEnrollment(req.ModelFamily) {
		dc.refuse(w, r, "model family cannot enroll account-driven", "This kind of device cannot be enrolled with an account.", req, false)
		return
	}
	if dc.Redirect != "" && dc.Policy == nil {
		dc.redirect(w, r, req)
		return
	}
	rule, err := dc.Policy.Discovery(req.Domain, req.ModelFamily)
	switch {
	case err != nil:
		dc.refuse(w, r, "no policy rule", "Accounts of "+req.Domain+" cannot enroll this device with this organization.", req, true)
		return
	case rule.Deny:
		msg := rule.Message
		if msg == "" {
			msg = "Your organization does not allow enrolling this device."
		}
		dc.refuse(w, r, "denied by policy: "+rule.Name, msg, req, false)
		return
	}
	if dc.Redirect != "" {
		dc.redirect(w, r, req)
		return
	}
	mode, err := apple.ParseMode(dc.Policy.Modes.Mode(rule, req.ModelFamily))
	if err != nil {
		dc.log().Error("policy mode", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	base := dc.BaseURL(r) + pathEnroll + string(mode)
	if req.ModelFamily != "" {
		base += "?model-family=" + url.QueryEscape(req.ModelFamily)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(apple.DiscoveryResponse(mode, base))
	dc.log().Info("discovery answered", append(audit.Fields(audit.DiscoveryAnswered, r, dc.ClientIP), zap.String("user_identifier", req.UserIdentifier),
		zap.String("model_family", req.ModelFamily), zap.String("version", mode.Version()), zap.String("rule", rule.Name))...)
}

// redirect sends the device to the MDM host, the query carried over.
func (dc *Discovery) redirect(w http.ResponseWriter, r *http.Request, req apple.DiscoveryRequest) {
	q := "user-identifier=" + apple.Escape(req.UserIdentifier, "@+")
	if req.ModelFamily != "" {
		q += "&model-family=" + apple.Escape(req.ModelFamily, "")
	}
	w.Header().Set("Location", dc.Redirect+apple.WellKnownPath+"?"+q)
	w.WriteHeader(http.StatusPermanentRedirect)
	dc.log().Info("discovery redirected", append(audit.Fields(audit.DiscoveryRedirected, r, dc.ClientIP), zap.String("user_identifier", req.UserIdentifier),
		zap.String("model_family", req.ModelFamily), zap.String("to", dc.Redirect))...)
}

// refuse answers 403 com.apple.well-known.failed, or 404 for an unknown
// user or domain when NotFound is set.
func (dc *Discovery) refuse(w http.ResponseWriter, r *http.Request, reason, msg string, req apple.DiscoveryRequest, unknown bool) {
	if unknown && dc.UnknownMessage != "" {
		msg = dc.UnknownMessage
	}
	if unknown && dc.NotFound {
		http.NotFound(w, r)
	} else {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(apple.WellKnownFailed(reason, msg))
	}
	dc.log().Info("discovery refused", append(audit.Fields(audit.DiscoveryRefused, r, dc.ClientIP), zap.String("reason", reason), zap.Bool("not_found", unknown && dc.NotFound),
		zap.String("user_identifier", req.UserIdentifier), zap.String("model_family", req.ModelFamily))...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (dc *Discovery) log() *zap.Logger {
	if dc.Log == nil {
		return zap.NewNop()
	}
	return dc.Log
}
