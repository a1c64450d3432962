package gateway

import (
	"bytes"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/apple"
	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// guard checks the bearer of a protected MDM request and passes it on,
// committing what it changes only after the MDM answered 2xx.
func (g *Gateway) guard(w http.ResponseWriter, r *http.Request, next Next) error {
	body, msg, ok := g.readMessage(w, r)
	if !ok {
		return nil
	}
	bearer, _ := apple.ParseBearer(r.Header.Get("Authorization"))
	req := token.Request{
		Bearer:       bearer,
		MessageType:  msg.MessageType,
		EnrollmentID: msg.EnrollmentKey(),
		UserChannel:  msg.UserChannel(),
		MacModel:     apple.IsMacModel(msg.Model) || apple.IsMacModel(msg.ProductName),
	}
	dec, err := g.tokens.Authorize(r.Context(), req)
	if err != nil {
		storeUnavailable(w, g.log, err)
		return nil
	}
	// Built only when something is logged: the allowed request that
	// changes nothing, the bulk of the traffic, logs nothing.
	fields := func() []zap.Field {
		return []zap.Field{zap.String("enrollment_id", req.EnrollmentID), zap.String("message_type", msg.MessageType),
			zap.Bool("user_channel", req.UserChannel), zap.String("reason", string(dec.Reason)), tokenID(dec.Token)}
	}
	if !dec.Allow {
		if dec.Reason == token.ReasonNoEnrollmentID {
			g.log.Info("mdm request rejected", g.audit(audit.MDMRejected, r, fields())...)
			http.Error(w, "request names no enrollment", http.StatusBadRequest)
			return nil
		}
		if g.bearerFailure(w, r, dec.Reason) {
			return nil
		}
		g.log.Info("mdm request challenged", g.audit(audit.MDMChallenged, r, fields())...)
		g.challenge(w, r, g.reauthFlow(req, dec))
		return nil
	}

	if g.Hooks.Allowed != nil {
		g.Hooks.Allowed(dec.Reason)
	}
	r.Header.Del("Authorization")
	// The body reader and the status recorder share one allocation.
	fw := &forward{rec: statusRecorder{ResponseWriter: w}}
	passBody(r, &fw.body, body)
	rec := &fw.rec
	err = next(rec, r)
	if err != nil || rec.status < 200 || rec.status > 299 || !dec.Pending() {
		if dec.Pending() {
			g.log.Info("mdm request not accepted upstream; nothing recorded", append(g.audit(audit.MDMNotAccepted, r, fields()), zap.Int("status", rec.status))...)
		}
		return err
	}
	var fresh, replaced bool
	if g.Hooks.Bound != nil {
		fresh, replaced = newBinding(dec) // judged on what Authorize saw
	}
	if cerr := dec.Commit(r.Context()); cerr != nil {
		g.log.Warn("recording mdm request outcome failed", append(fields(), zap.Error(cerr))...)
		return nil
	}
	switch dec.Reason {
	case token.ReasonCheckOut:
		g.log.Info("enrollment checked out", g.audit(audit.EnrollmentCheckedOut, r, fields())...)
	case token.ReasonMacDevice:
		g.log.Info("mac device channel recorded", g.audit(audit.MacRecorded, r, fields())...)
	case token.ReasonOffboarding:
		if msg.MessageType == "CheckOut" {
			g.log.Info("enrollment checked out", g.audit(audit.EnrollmentCheckedOut, r, fields())...)
		}
	default:
		g.log.Info("token bound to enrollment", g.audit(audit.TokenBound, r, fields())...)
		if fresh {
			g.bound(r.Context(), dec.Token, req.EnrollmentID, replaced)
		}
	}
	return nil
}

// readMessage reads an MDM request's body (413 past MaxMDMBody) and peeks
// at its message (400 when it is not a property list dictionary). A
// malformed body is never passed on: the MDM's own parser might read what
// the scanner cannot (a binary plist, say) and act on an enrollment
// nobody checked. Devices send XML.
func (g *Gateway) readMessage(w http.ResponseWriter, r *http.Request) ([]byte, apple.Message, bool) {
	body, ok := readBody(w, r, g.cfg.MaxMDMBody)
	if !ok {
		return nil, apple.Message{}, false
	}
	msg, err := apple.PeekMessage(body)
	if err != nil {
		g.log.Info("mdm request rejected", append(g.audit(audit.MDMRejected, r, nil), zap.String("reason", "malformed_body"), zap.Error(err))...)
		http.Error(w, "request body is not a property list dictionary", http.StatusBadRequest)
		return nil, apple.Message{}, false
	}
	return body, msg, true
}

// reauthFlow builds the challenge of a protected request: a re-authentication
// of the named enrollment, in its mode.
func (g *Gateway) reauthFlow(req token.Request, d *token.Decision) signin.Flow {
	f := signin.Flow{Kind: signin.KindReauth, Mode: string(g.cfg.DefaultMode), EnrollmentID: req.EnrollmentID}
	switch {
	case d.Enrollment != nil && d.Enrollment.Mode != "":
		f.Mode = d.Enrollment.Mode
	case d.Token != nil:
		f.Mode = d.Token.Mode
	}
	if d.Token != nil {
		f.ModelFamily = d.Token.ModelFamily
	}
	if d.Enrollment != nil && d.Enrollment.State == store.StateRemoved {
		f.EnrollmentID = "" // a new enrollment of that device
	}
	return f
}

// statusRecorder remembers the status the next handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// forward is what the guard hands the next handler: the body it read and a
// writer that records the MDM's status.
type forward struct {
	body bodyReader
	rec  statusRecorder
}

// bodyReader passes the body read by the guard on.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// passBody makes body, read whole, r's body again (through rd), with a
// Content-Length that matches it.
func passBody(r *http.Request, rd *bodyReader, body []byte) {
	rd.Reset(body)
	r.Body = rd
	r.ContentLength = int64(len(body))
	if n, err := strconv.Atoi(r.Header.Get("Content-Length")); err != nil || n != len(body) {
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	r.TransferEncoding = nil
}
