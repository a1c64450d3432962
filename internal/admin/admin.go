// Package admin is the operator's JSON API over the token store: list and
// show enrollments and tokens, move enrollments through their states, for
// one device or every device of a user, revoke tokens, render an
// enrollment's profile again, counts, health and a live backup. It is an
// http.Handler free of Caddy; the Caddy module mounts it on Caddy's admin
// endpoint under /mdm_auth/.
//
// Responses never carry a token, a refresh token, a token hash or an
// identity provider's token: a token is named by its token id (the first
// 12 bytes of its hash, hex) and a family by its id. Errors are JSON
// objects {"error": "..."}.
package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/audit"
	"github.com/mdmauth/mdmauth/internal/store"
)

// Defaults and limits.
const (
	// DefaultPrefix is the path the API is mounted at.
	DefaultPrefix = "/mdm_auth/"
	// DefaultLimit and MaxLimit bound a list page.
	DefaultLimit = 100
	MaxLimit     = 1000
	// MaxBody bounds a request body.
	MaxBody = 64 << 10
	// DefaultOffboardWithin is the offboarding deadline when a request
	// names none.
	DefaultOffboardWithin = 7 * 24 * time.Hour
	// opTimeout bounds a change once started: it runs to its end even if
	// the client goes away, so that a state change is never left without
	// its revocations.
	opTimeout = time.Minute
)

// BackupTrailer is the HTTP trailer a complete backup ends with (value
// "complete"); a stream cut short lacks it and its connection is aborted.
const BackupTrailer = "Mdm-Auth-Backup"

// ErrNotRunning is returned by a Source when no configuration with the
// mdm_auth app is running; the API answers 503.
var ErrNotRunning = errors.New("admin: mdm_auth is not running")

// Deployment is what one request works on: the store and the sites of the
// configuration in force.
type Deployment struct {
	Store store.Store
	// Sites are the configured gateways, for rendering profiles.
	Sites []Site
	// Log, when set, receives the audit entries instead of Handler.Log.
	Log *zap.Logger
}

// Site is one configured gateway that renders enrollment profiles.
type Site struct {
	// Names select the site with the site parameter (compared ignoring
	// case): its public host and its user-identifier domains.
	Names []string
	// Profiles renders an enrollment's profile again.
	Profiles ProfileRenderer
}

// ProfileRenderer renders the enrollment profile of an existing
// enrollment. It returns an error wrapping store.ErrNotFound for an unknown
// enrollment and one wrapping ErrProfileConflict when the enrollment's
// profile cannot be rendered now.
type ProfileRenderer interface {
	RenderProfile(ctx context.Context, enrollmentID string) ([]byte, error)
}

// ErrProfileConflict may be wrapped by a ProfileRenderer's errors that the
// API answers with 409 (the enrollment's state or record does not allow a
// profile now).
var ErrProfileConflict = errors.New("admin: profile unavailable")

// Source returns the deployment a request works on and a function to call
// once the request is done with it (the store stays open until then).
type Source func(ctx context.Context) (*Deployment, func(), error)

// Handler serves the admin API.
type Handler struct {
	// Source gives each request the deployment in force. Required.
	Source Source
	// Prefix the API is mounted at; default DefaultPrefix.
	Prefix string
	// Log receives audit entries and store errors; default a no-op.
	Log *zap.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ClientIP gives the admin client's address for audit entries;
	// default the connection's remote address.
	ClientIP audit.ClientIP
	// StallAfter is passed to the statistics' funnel; default
	// inventory.DefaultStallAfter.
	StallAfter time.Duration
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) prefix() string {
	if h.Prefix != "" {
		return h.Prefix
	}
	return DefaultPrefix
}

// endpoint is one route: the methods it answers and its function.
type endpoint struct {
	methods []string
	serve   func(c *call, args []string)
}

// route finds the endpoint of the path segments after the prefix and the
// arguments (ids, actions) taken from them.
func route(segs []string) (*endpoint, []string) {
	get := func(f func(*call, []string)) *endpoint { return &endpoint{[]string{http.MethodGet}, f} }
	post := func(f func(*call, []string)) *endpoint { return &endpoint{[]string{http.MethodPost}, f} }
	switch {
	case len(segs) == 1 && segs[0] == "enrollments":
		return get((*call).listEnrollments), nil
	case len(segs) == 2 && segs[0] == "enrollments":
		return get((*call).showEnrollment), segs[1:]
	case len(segs) == 3 && segs[0] == "enrollments" && segs[2] == "profile":
		return post((*call).renderProfile), segs[1:2]
	case len(segs) == 3 && segs[0] == "enrollments" && actions[segs[2]] != nil:
		return post((*call).enrollmentAction), segs[1:]
	case len(segs) == 2 && segs[0] == "users" && actions[segs[1]] != nil:
		return post((*call).userAction), segs[1:]
	case len(segs) == 1 && segs[0] == "tokens":
		return get((*call).listTokens), nil
	case len(segs) == 2 && segs[0] == "tokens":
		return get((*call).showToken), segs[1:]
	case len(segs) == 3 && segs[0] == "tokens" && segs[2] == "revoke":
		return post((*call).revokeToken), segs[1:2]
	case len(segs) == 1 && segs[0] == "stats":
		return get((*call).stats), nil
	case len(segs) == 1 && segs[0] == "health":
		return get((*call).health), nil
	case len(segs) == 1 && segs[0] == "backup":
		return get((*call).backup), nil
	}
	return nil, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	segs, ok := h.segments(r)
	if !ok {
		writeError(w, http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
		return
	}
	ep, args := route(segs)
	if ep == nil {
		writeError(w, http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
		return
	}
	allowed := false
	for _, m := range ep.methods {
		allowed = allowed || r.Method == m
	}
	if !allowed {
		w.Header().Set("Allow", strings.Join(ep.methods, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, strings.Join(ep.methods, ", "))
		return
	}
	if h.Source == nil {
		writeError(w, http.StatusServiceUnavailable, "%v", ErrNotRunning)
		return
	}
	d, release, err := h.Source(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	if release != nil {
		defer release()
	}
	log := d.Log
	if log == nil {
		log = h.Log
	}
	if log == nil {
		log = zap.NewNop()
	}
	c := &call{h: h, w: w, r: r, st: d.Store, sites: d.Sites, log: log}
	ep.serve(c, args)
}

// segments splits the escaped path after the prefix into unescaped
// segments, so that an id may hold an escaped "/".
func (h *Handler) segments(r *http.Request) ([]string, bool) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), h.prefix())
	if !ok {
		return nil, false
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return nil, false
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" {
			return nil, false
		}
		segs[i] = u
	}
	return segs, true
}
