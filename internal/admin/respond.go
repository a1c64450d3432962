package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// call is one request being served.
type call struct {
	h     *Handler
	w     http.ResponseWriter
	r     *http.Request
	st    store.Store
	sites []Site
	log   *zap.Logger
}

// changeContext is the context of a change: it outlives the client, so a
// state change always gets its revocations.
func (c *call) changeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.r.Context()), opTimeout)
}

// audit logs an audit entry about this request.
func (c *call) audit(msg, event string, fields ...zap.Field) {
	f := audit.Fields(event, c.r, c.h.ClientIP)
	if tls := c.r.TLS; tls != nil && len(tls.PeerCertificates) > 0 {
		f = append(f, zap.String("admin_cert", tls.PeerCertificates[0].Subject.String()))
	}
	c.log.Info(msg, append(f, fields...)...)
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// writeError answers status with {"error": message}.
func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	b, _ := json.Marshal(errorBody{Error: fmt.Sprintf(format, args...)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func (c *call) json(status int, v any) { writeJSON(c.w, status, v) }

func (c *call) fail(status int, format string, args ...any) {
	writeError(c.w, status, format, args...)
}

// storeError answers a store failure: 404 for a missing record, 409 for a
// refused transition, 503 for a closed store, 500 otherwise (logged).
func (c *call) storeError(what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.fail(http.StatusNotFound, "%s not found", what)
	case errors.Is(err, token.ErrTransition):
		c.fail(http.StatusConflict, "%v", err)
	case errors.Is(err, store.ErrClosed), errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrNoSpace),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		c.log.Warn("admin api: store unavailable", zap.String("path", c.r.URL.Path), zap.Error(err))
		c.fail(http.StatusServiceUnavailable, "the store is unavailable: %v", err)
	default:
		c.log.Error("admin api: store error", zap.String("path", c.r.URL.Path), zap.Error(err))
		c.fail(http.StatusInternalServerError, "store error: %v", err)
	}
}

// errBadRequest marks a client error found while reading a request.
type errBadRequest struct {
	status int
	msg    string
}

func (e *errBadRequest) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &errBadRequest{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// clientError answers err if it is a client error and reports whether it
// did.
func (c *call) clientError(err error) bool {
	var br *errBadRequest
	if errors.As(err, &br) {
		c.fail(br.status, "%s", br.msg)
		return true
	}
	return false
}

// readJSON decodes the body (at most MaxBody bytes, one JSON object, no
// unknown fields) into v. An empty body is accepted unless required.
func (c *call) readJSON(v any, required bool) error {
	if c.r.ContentLength > MaxBody {
		return &errBadRequest{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBody)}
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &errBadRequest{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBody)}
		}
		return badRequest("reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if required {
			return badRequest("a JSON body is required")
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("invalid JSON body: more than one value")
	}
	return nil
}

// query holds the request's query parameters and checks that each is
// known and given at most once.
type query struct {
	v url.Values
}

func (c *call) query(known ...string) (query, error) {
	v, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		return query{}, badRequest("malformed query: %v", err)
	}
	for k, vals := range v {
		ok := false
		for _, name := range known {
			ok = ok || k == name
		}
		if !ok {
			return query{}, badRequest("unknown parameter %q (known: %v)", k, known)
		}
		if len(vals) > 1 {
			return query{}, badRequest("parameter %q given more than once", k)
		}
	}
	return query{v}, nil
}

func (q query) get(name string) string { return q.v.Get(name) }

// limit reads limit (default DefaultLimit, 1 to MaxLimit).
func (q query) limit() (int, error) {
	s := q.get("limit")
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, badRequest("limit must be a number from 1 to %d", MaxLimit)
	}
	return n, nil
}

// page reads limit and cursor, a cursor of the given kind: the page size
// and the key the page starts at (nil for the first page).
func (q query) page(kind byte) (limit int, from []byte, err error) {
	if limit, err = q.limit(); err != nil {
		return 0, nil, err
	}
	if from, err = decodeCursor(kind, q.get("cursor")); err != nil {
		return 0, nil, err
	}
	return limit, from, nil
}

// user reads iss and sub, which go together.
func (q query) user() (iss, sub string, err error) {
	iss, sub = q.get("iss"), q.get("sub")
	if (iss == "") != (sub == "") {
		return "", "", badRequest("iss and sub go together")
	}
	return iss, sub, nil
}

// mode checks a mode filter.
func (q query) mode() (string, error) {
	m := q.get("mode")
	switch m {
	case "", "byod", "adde":
		return m, nil
	}
	return "", badRequest("mode must be byod or adde")
}

// parseState checks a state name.
func parseState(s string) (store.State, error) {
	switch st := store.State(s); st {
	case store.StateActive, store.StateReauth, store.StateBlocked, store.StateOffboarding, store.StateRemoved:
		return st, nil
	}
	return "", badRequest("state must be one of active, reauth, blocked, offboarding, removed")
}

// timeOrZero is for views: nil for the zero time.
func timeOrZero(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
