// Package caddymodule is the Caddy glue of mdmauth: the mdm_auth app (the
// token store shared by all sites and across reloads), the mdm_auth HTTP
// handler, and their Caddyfile syntax. Everything else lives in the
// Caddy-free packages under internal/.
package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/gateway"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/store/postgres"
)

func init() {
	caddy.RegisterModule(App{})
	caddy.RegisterModule(Handler{})
}

// stores holds one open Badger database per directory, shared by every
// config that uses it, so a reload never opens the directory twice (Badger
// locks it).
var stores = caddy.NewUsagePool()

// App is the mdm_auth app: it owns the token store. Configure it with the
// mdm_auth global option; without one it uses the defaults.
type App struct {
	// StorageDir is the directory of the embedded token store. Default:
	// Caddy's data directory + /mdm_auth. {env.*} placeholders are expanded.
	StorageDir string `json:"storage_dir,omitempty"`
	// MinFreeSpace is the free space (bytes) the store's file system must
	// keep: below it the store refuses writes (sign-ins and bindings fail
	// with 503, validation of issued tokens goes on) rather than let a full
	// disk crash Caddy. Default 64 MiB; -1 disables the check. Read when
	// the store is opened: a reload that changes it takes effect once the
	// directory is reopened.
	MinFreeSpace int64 `json:"min_free_space,omitempty"`
	// Postgres, when set, keeps the store in PostgreSQL instead of Badger,
	// so that several Caddy instances share one fleet (StorageDir and
	// MinFreeSpace then do not apply).
	Postgres *PostgresStorage `json:"postgres,omitempty"`

	dir   string
	store store.Store
	log   *zap.Logger

	// adm is the admin API's use of the app.
	adm *appAdmin
}

// appAdmin is what the admin API shares with an app: users counts the
// requests holding the store, cleaned is set by Cleanup, and sites lists
// the handlers provisioned with the app.
type appAdmin struct {
	mu      sync.Mutex
	users   int
	cleaned bool
	sites   []*site
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mdm_auth",
		New: func() caddy.Module { return new(App) },
	}
}

type sharedStore struct{ store.Store }

// PostgresStorage configures the PostgreSQL store.
type PostgresStorage struct {
	// DSN is the connection string (URL or key=value; pgxpool's pool_*
	// settings allowed). {env.*} placeholders are expanded; keep the
	// password out of the Caddyfile.
	DSN string `json:"dsn"`
	// Schema holds mdmauth's tables, created and migrated by the gateway
	// (default "mdmauth"), so the database may be shared, with NanoMDM's
	// for instance.
	Schema string `json:"schema,omitempty"`
	// MaxConns bounds this instance's connection pool (default: the
	// DSN's pool_max_conns, else the larger of 4 and the CPU count).
	MaxConns int32 `json:"max_conns,omitempty"`
	// Timeout bounds every store operation, the wait for a connection
	// included (default 5s): with the database down, requests fail fast
	// with 503 instead of hanging.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

func (s sharedStore) Destruct() error { return s.Store.Close() }

// Provision opens (or joins) the store.
func (a *App) Provision(ctx caddy.Context) error {
	a.log = ctx.Logger()
	if a.Postgres != nil {
		return a.provisionPostgres(ctx)
	}
	dir := caddy.NewReplacer().ReplaceKnown(a.StorageDir, "")
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "mdm_auth")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	val, loaded, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) {
		s, err := badger.Open(badger.Options{Dir: dir, Logger: slogOf(a.log), MinFreeSpace: a.MinFreeSpace})
		if err != nil {
			return nil, err
		}
		return sharedStore{s}, nil
	})
	if err != nil {
		return fmt.Errorf("opening token store in %s: %v", dir, err)
	}
	a.dir = dir
	a.store = val.(sharedStore).Store
	a.adm = new(appAdmin)
	a.log.Info("token store ready", zap.String("dir", dir), zap.Bool("shared", loaded))
	return nil
}

// provisionPostgres opens (or joins) the PostgreSQL store. Opening does not
// connect: Caddy starts while the database is down, and the store
// connects, and creates or migrates its schema, on first use.
func (a *App) provisionPostgres(ctx caddy.Context) error {
	if a.StorageDir != "" {
		return fmt.Errorf("mdm_auth: storage_dir and postgres exclude each other")
	}
	p := a.Postgres
	dsn := caddy.NewReplacer().ReplaceKnown(p.DSN, "")
	if dsn == "" {
		return fmt.Errorf("mdm_auth postgres: dsn is empty (after expanding %q)", p.DSN)
	}
	if p.MaxConns < 0 || p.Timeout < 0 {
		return fmt.Errorf("mdm_auth postgres: max_conns and timeout must not be negative")
	}
	schema := p.Schema
	if schema == "" {
		schema = postgres.DefaultSchema
	}
	// The pool key names the database without holding the DSN's password.
	sum := sha256.Sum256([]byte(dsn + "\x00" + schema))
	key := "postgres:" + hex.EncodeToString(sum[:])
	val, loaded, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := postgres.Open(context.Background(), postgres.Options{
			DSN: dsn, Schema: schema, MaxConns: p.MaxConns, OpTimeout: time.Duration(p.Timeout), Logger: slogOf(a.log),
		})
		if err != nil {
			return nil, err
		}
		return sharedStore{s}, nil
	})
	if err != nil {
		return fmt.Errorf("opening the PostgreSQL token store: %v", err)
	}
	a.dir = key
	a.store = val.(sharedStore).Store
	a.adm = new(appAdmin)
	a.log.Info("token store ready", zap.String("backend", "postgres"), zap.String("schema", schema), zap.Bool("shared", loaded))
	return nil
}

// Store returns the app's store.
func (a *App) Store() store.Store { return a.store }

// Start makes this app the one the admin API serves.
func (a *App) Start() error {
	running.Lock()
	running.apps = append(running.apps, a)
	running.Unlock()
	return nil
}

// Stop hands the admin API back to the app started before, if any (a
// reload starts the new config's app before it stops the old one's).
func (a *App) Stop() error {
	running.Lock()
	running.apps = slices.DeleteFunc(running.apps, func(x *App) bool { return x == a })
	running.Unlock()
	return nil
}

// Cleanup releases this config's use of the store; the last user closes
// it. An admin request still using the store releases it when it ends.
func (a *App) Cleanup() error {
	if a.dir == "" {
		return nil
	}
	a.adm.mu.Lock()
	a.adm.cleaned = true
	busy := a.adm.users > 0
	a.adm.mu.Unlock()
	if busy {
		return nil
	}
	_, err := stores.Delete(a.dir)
	return err
}

// running lists the started mdm_auth apps, newest last. The admin API,
// whose module Caddy provisions before the apps of a config (and keeps
// when a reload fails), serves the newest at each request.
var running struct {
	sync.Mutex
	apps []*App
}

// acquire pins the app's store for an admin request; false once the app
// was cleaned up.
func (a *App) acquire() bool {
	if a.adm == nil {
		return false
	}
	a.adm.mu.Lock()
	defer a.adm.mu.Unlock()
	if a.adm.cleaned {
		return false
	}
	a.adm.users++
	return true
}

// release ends an admin request's use of the store; after Cleanup, the
// last one releases the store.
func (a *App) release() {
	a.adm.mu.Lock()
	a.adm.users--
	last := a.adm.users == 0 && a.adm.cleaned
	a.adm.mu.Unlock()
	if last {
		if _, err := stores.Delete(a.dir); err != nil && a.log != nil {
			a.log.Error("closing the token store", zap.Error(err))
		}
	}
}

// errReloading is returned when every running app was cleaned up while
// an admin request looked for one.
var errReloading = fmt.Errorf("the configuration is being replaced; try again")

// acquireRunning returns the newest running app, pinned; call release
// when done.
func acquireRunning() (*App, error) {
	for range 10 {
		running.Lock()
		var a *App
		if n := len(running.apps); n > 0 {
			a = running.apps[n-1]
		}
		running.Unlock()
		if a == nil {
			return nil, errNotRunning
		}
		if a.acquire() {
			return a, nil
		}
	}
	return nil, errReloading
}

// site is a provisioned mdm_auth handler, for the admin API.
type site struct {
	key   string // the handler's configuration, to merge identical ones
	names []string
	gw    *gateway.Gateway
}

// addSite records a provisioned handler. Handlers with the same
// configuration (one site block served on several listeners) are one
// site.
func (a *App) addSite(h *Handler) {
	key, _ := json.Marshal(h)
	if a.adm == nil {
		return
	}
	a.adm.mu.Lock()
	defer a.adm.mu.Unlock()
	for _, s := range a.adm.sites {
		if s.key == string(key) {
			return
		}
	}
	a.adm.sites = append(a.adm.sites, &site{key: string(key), names: siteNames(h), gw: h.gw})
}

// siteNames are what the admin API's site parameter matches for h: the
// host of its public_url, then its discovery and policy domains.
func siteNames(h *Handler) []string {
	var names []string
	add := func(n string) {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if pu := caddy.NewReplacer().ReplaceKnown(h.PublicURL, ""); pu != "" {
		if u, err := url.Parse(pu); err == nil {
			add(u.Host)
		}
	}
	for _, d := range h.Discovery.Domains {
		add(d)
	}
	if h.Policy != nil {
		for _, r := range h.Policy.Rules {
			for _, d := range r.Domains {
				add(d)
			}
		}
	}
	return names
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
