package gateway

import (
	"errors"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/apple"
)

// discovery answers GET /.well-known/com.apple.remotemanagement.
func (g *Gateway) discovery(w http.ResponseWriter, r *http.Request) {
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
		g.refuseDiscovery(w, reason, msg, req)
		return
	}
	if !g.domainAllowed(req.Domain) {
		g.refuseDiscovery(w, "domain not served", "Accounts of "+req.Domain+" cannot enroll devices with this organization.", req)
		return
	}
	if req.ModelFamily != "" && !apple.SupportsAccountDrivenEnrollment(req.ModelFamily) {
		g.refuseDiscovery(w, "model family cannot enroll account-driven", "This kind of device cannot be enrolled with an account.", req)
		return
	}
	mode := g.cfg.DefaultMode
	if m, ok := g.cfg.FamilyModes[req.ModelFamily]; ok {
		mode = m
	}
	base := g.base(r) + g.cfg.Prefix + pathEnroll + string(mode)
	if req.ModelFamily != "" {
		base += "?model-family=" + url.QueryEscape(req.ModelFamily)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(apple.DiscoveryResponse(mode, base))
	g.log.Info("discovery answered", zap.String("user_identifier", req.UserIdentifier),
		zap.String("model_family", req.ModelFamily), zap.String("version", mode.Version()))
}

func (g *Gateway) domainAllowed(d string) bool {
	for _, x := range g.cfg.Domains {
		if x == d {
			return true
		}
	}
	return false
}

func (g *Gateway) refuseDiscovery(w http.ResponseWriter, reason, msg string, req apple.DiscoveryRequest) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write(apple.WellKnownFailed(reason, msg))
	g.log.Info("discovery refused", zap.String("reason", reason),
		zap.String("user_identifier", req.UserIdentifier), zap.String("model_family", req.ModelFamily))
}
