package caddymodule

import (
	"context"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/gateway"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// errNotRunning answers admin requests while no config runs the mdm_auth
// app.
var errNotRunning = admin.ErrNotRunning

// AdminAPI is the admin.api.mdm_auth module: the operator's JSON API under
// /mdm_auth/ on Caddy's admin endpoint (enrollments, tokens, state
// changes, statistics, health, profile rendering, live backup). Caddy
// loads it by itself; it has no configuration.
//
// Caddy's admin endpoint has no authentication of its own: keep it on
// localhost or a unix socket, or expose it only as the remote admin
// endpoint with mutual TLS and access control.
type AdminAPI struct {
	h *admin.Handler
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mdm_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision builds the API. It keeps nothing of the config being loaded:
// Caddy provisions admin modules before that config's apps, and keeps
// them when the config then fails to load, so every request looks up the
// mdm_auth app that is running (see acquireRunning) and holds its store
// open until it is done.
func (a *AdminAPI) Provision(caddy.Context) error {
	a.h = &admin.Handler{
		Source: runningDeployment,
		Log:    procMetrics.logger(caddy.Log().Named("mdm_auth.admin"), ""),
	}
	return nil
}

// Routes returns the API's route.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: admin.DefaultPrefix,
		Handler: caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			a.h.ServeHTTP(w, r)
			return nil
		}),
	}}
}

// runningDeployment is the admin API's Source: the running app's store,
// pinned for the request, and its handlers.
func runningDeployment(context.Context) (*admin.Deployment, func(), error) {
	app, err := acquireRunning()
	if err != nil {
		return nil, nil, err
	}
	app.adm.mu.Lock()
	sites := make([]admin.Site, 0, len(app.adm.sites))
	for _, s := range app.adm.sites {
		sites = append(sites, admin.Site{Names: s.names, Profiles: profiles{s.gw}})
	}
	app.adm.mu.Unlock()
	d := &admin.Deployment{Store: app.store, Sites: sites}
	if app.log != nil {
		d.Log = procMetrics.logger(app.log.Named("admin"), "") // revocations count in the metrics
	}
	return d, app.release, nil
}

// profiles renders profiles through a gateway, its refusals answered 409.
type profiles struct{ gw *gateway.Gateway }

func (p profiles) RenderProfile(ctx context.Context, id string) ([]byte, error) {
	b, err := p.gw.RenderProfile(ctx, id)
	if errors.Is(err, gateway.ErrProfileUnavailable) {
		return nil, profileConflict{err}
	}
	return b, err
}

// profileConflict is a gateway refusal that the admin API answers 409.
type profileConflict struct{ error }

func (c profileConflict) Is(target error) bool { return target == admin.ErrProfileConflict }

func (c profileConflict) Unwrap() error { return c.error }

// Interface guards.
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
)
