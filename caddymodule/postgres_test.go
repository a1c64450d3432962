package caddymodule

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/mdmauth/mdmauth/internal/store"
)

// The PostgreSQL app provisions without touching the network (Caddy starts
// while the database is down), shares one store between configs on the
// same database and schema, and reports an unreachable database as
// store.ErrUnavailable (a 503 for callers, never a challenge).
func TestPostgresAppProvisioning(t *testing.T) {
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("MDMAUTH_TEST_PG_DSN", "postgres://mdmauth@"+addr+"/mdm?sslmode=disable&connect_timeout=2")

	provision := func(pg *PostgresStorage) (*App, error) {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		a := &App{Postgres: pg}
		if err := a.Provision(ctx); err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = a.Cleanup() })
		return a, nil
	}
	a, err := provision(&PostgresStorage{DSN: "{env.MDMAUTH_TEST_PG_DSN}"})
	if err != nil {
		t.Fatalf("provisioning with the database down: %v", err)
	}
	b, err := provision(&PostgresStorage{DSN: "{env.MDMAUTH_TEST_PG_DSN}"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Store() != b.Store() {
		t.Error("two configs on one database and schema opened two stores")
	}
	c, err := provision(&PostgresStorage{DSN: "{env.MDMAUTH_TEST_PG_DSN}", Schema: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Store() == a.Store() {
		t.Error("another schema shares the store")
	}
	if !strings.HasPrefix(a.dir, "postgres:") || strings.Contains(a.dir, "mdmauth@") {
		t.Errorf("pool key %q: want a hash, never the DSN", a.dir)
	}
	if _, err := a.Store().Enrollment(context.Background(), "E1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a lookup with the database down: %v, want ErrUnavailable", err)
	}

	for _, tt := range []struct {
		name string
		app  App
		want string
	}{
		{"empty dsn", App{Postgres: &PostgresStorage{DSN: "{env.MDMAUTH_TEST_UNSET}"}}, "dsn is empty"},
		{"both stores", App{StorageDir: t.TempDir(), Postgres: &PostgresStorage{DSN: "postgres://x/y"}}, "exclude each other"},
		{"negative pool", App{Postgres: &PostgresStorage{DSN: "postgres://x/y", MaxConns: -1}}, "must not be negative"},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := tt.app.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
