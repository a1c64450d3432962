package gateway

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/store"
)

// refuseAccountDriven guards an MDM path of the other enrollments (profile-
// based, ADE): a request there that names an account-driven enrollment is
// refused with 403. Such a device must talk to its protected path, where
// its bearer is checked; here its device identity alone would reach the
// MDM, around revocation, reauth and block. A 401 is never sent on these
// paths: it would unenroll a profile-based or ADE device.
func (g *Gateway) refuseAccountDriven(w http.ResponseWriter, r *http.Request, next Next) error {
	body, msg, ok := g.readMessage(w, r)
	if !ok {
		return nil
	}
	if id := msg.EnrollmentKey(); id != "" {
		e, _, err := g.store.Lookup(r.Context(), id, store.Hash{})
		if err != nil {
			storeUnavailable(w, g.log, err)
			return nil
		}
		if e != nil && e.State != store.StateRemoved {
			g.log.Warn("mdm request refused", g.audit(audit.MDMRefused, r, []zap.Field{
				zap.String("enrollment_id", id), zap.String("message_type", msg.MessageType),
				zap.String("state", string(e.State)), zap.String("path", r.URL.Path),
				zap.String("reason", "account_driven_on_unprotected_path")})...)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "this enrollment must use its own MDM path", http.StatusForbidden)
			return nil
		}
	}
	passBody(r, &bodyReader{}, body)
	return next(w, r)
}
