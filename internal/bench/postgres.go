package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store/postgres"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// startPostgres starts configuration C's database server: testenv's
// private server (loopback TCP; fsync off, which no measured request
// depends on since none writes; its small shared_buffers, with the
// operating system's page cache behind). It returns the server, its
// version and its shared_buffers.
func startPostgres(tb testenv.TB, logf func(string, ...any)) (*testenv.PG, string, string, error) {
	logf("starting PostgreSQL (configuration C)")
	pg, err := testenv.Postgres(tb)
	if err != nil {
		return nil, "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		return nil, "", "", fmt.Errorf("bench: postgres: %w", err)
	}
	defer conn.Close(context.Background())
	var version, buffers string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('shared_buffers')").Scan(&version, &buffers); err != nil {
		return nil, "", "", fmt.Errorf("bench: postgres: %w", err)
	}
	return pg, version, buffers, nil
}

// preloadPostgres writes bindings [from, to) through the PostgreSQL
// store's API into the schema Caddy uses, then vacuums and analyzes the
// tables, as autovacuum leaves the tables of a database that has been
// serving (statistics for the planner, hint bits set: the first reads do
// not write). It returns the size of the schema's tables with their
// indexes.
func (e *env) preloadPostgres(ctx context.Context, from, to int, at func(int) Binding) (int64, error) {
	s, err := postgres.Open(ctx, postgres.Options{DSN: e.pg.DSN(), PurgeInterval: -1, MaxConns: 16, OpTimeout: time.Minute})
	if err != nil {
		return 0, err
	}
	err = Preload(ctx, s, from, to, at, PreloadOptions{Issuer: e.idp.Issuer, Now: time.Now(), TTL: 90 * 24 * time.Hour,
		Workers: 16, Progress: func(n int) { e.o.logf("  … %d written", from+n) }})
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, e.pg.DSN())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		return 0, fmt.Errorf("bench: postgres: vacuum: %w", err)
	}
	var size int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r'`, postgres.DefaultSchema).Scan(&size)
	return size, err
}

// postgresConnections counts the client connections to the gateway's
// database other than its own: the connections of Caddy's pool.
func (e *env) postgresConnections(ctx context.Context) (int, error) {
	conn, err := pgx.Connect(ctx, e.pg.DSN())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
		testenv.PostgresDatabase).Scan(&n)
	return n, err
}
