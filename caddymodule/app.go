// Package caddymodule is the Caddy glue of mdmauth: the mdm_auth app (the
// token store shared by all sites and across reloads), the mdm_auth HTTP
// handler, and their Caddyfile syntax. Everything else lives in the
// Caddy-free packages under internal/.
package caddymodule

import (
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
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

	dir   string
	store store.Store
	log   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mdm_auth",
		New: func() caddy.Module { return new(App) },
	}
}

type sharedStore struct{ store.Store }

func (s sharedStore) Destruct() error { return s.Store.Close() }

// Provision opens (or joins) the store.
func (a *App) Provision(ctx caddy.Context) error {
	a.log = ctx.Logger()
	dir := caddy.NewReplacer().ReplaceKnown(a.StorageDir, "")
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "mdm_auth")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	val, loaded, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) {
		s, err := badger.Open(badger.Options{Dir: dir, Logger: slogOf(a.log)})
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
	a.log.Info("token store ready", zap.String("dir", dir), zap.Bool("shared", loaded))
	return nil
}

// Store returns the app's store.
func (a *App) Store() store.Store { return a.store }

// Start is a no-op: the store is opened in Provision.
func (a *App) Start() error { return nil }

// Stop is a no-op: the store is released in Cleanup.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's use of the store; the last user closes it.
func (a *App) Cleanup() error {
	if a.dir == "" {
		return nil
	}
	_, err := stores.Delete(a.dir)
	return err
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
