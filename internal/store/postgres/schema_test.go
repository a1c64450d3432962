package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store"
)

// query runs sql on the shared server, outside any store.
func query(t *testing.T, sql string, args ...any) pgx.Row {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn.QueryRow(ctx, sql, args...)
}

// exec runs sql on the shared server, outside any store.
func exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
}

// migrations returns the versions recorded in schema's schema_migrations,
// in order, with repetitions.
func migrations(t *testing.T, schema string) []int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT version FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()+" ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

// TestConcurrentMigrations starts several stores on one new schema at
// once, as instances starting together would: every one of them works,
// and each migration was applied exactly once.
func TestConcurrentMigrations(t *testing.T) {
	schema := freshSchema()
	const n = 6
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = openStore(t, Options{Schema: schema})
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.CreateToken(context.Background(), &store.Token{Hash: hash(string(rune('a' + i))), ExpiresAt: time.Now().Add(time.Hour)})
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("first operations of instances starting together: %v", err)
	}
	got := migrations(t, schema)
	if len(got) != len(steps) {
		t.Fatalf("schema_migrations holds %v, want each of the %d steps once", got, len(steps))
	}
	for i, v := range got {
		if v != steps[i].version {
			t.Fatalf("schema_migrations holds %v, want the versions of the steps", got)
		}
	}
	// And they share one schema.
	for i := range n {
		if _, err := stores[(i+1)%n].Token(context.Background(), hash(string(rune('a'+i)))); err != nil {
			t.Fatalf("a token written by one instance, read by another: %v", err)
		}
	}
}

// TestMigrationsNotRepeated reopens a migrated schema: nothing is applied
// twice.
func TestMigrationsNotRepeated(t *testing.T) {
	schema := freshSchema()
	for range 3 {
		s := openStore(t, Options{Schema: schema})
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if got := migrations(t, schema); len(got) != len(steps) {
		t.Fatalf("schema_migrations after three opens: %v", got)
	}
}

// TestSchemaMadeByAnAdministrator: a schema that exists, empty, is used
// as it is.
func TestSchemaMadeByAnAdministrator(t *testing.T) {
	schema := freshSchema()
	exec(t, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	s := openStore(t, Options{Schema: schema})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := migrations(t, schema); len(got) != len(steps) {
		t.Fatalf("schema_migrations: %v", got)
	}
}

// TestNewerSchema: a schema a later release migrated further is used as
// it is (its steps are additive), not refused.
func TestNewerSchema(t *testing.T) {
	schema := freshSchema()
	s := openStore(t, Options{Schema: schema})
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	exec(t, "INSERT INTO "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()+" (version, name) VALUES ($1, 'later')", SchemaVersion()+1)
	later := openStore(t, Options{Schema: schema})
	if err := later.Ping(context.Background()); err != nil {
		t.Fatalf("Ping on a newer schema: %v", err)
	}
}

// TestSchemasAreSeparate: two gateways (or a gateway and NanoMDM) on one
// database, in schemas of their own, do not see each other's records.
func TestSchemasAreSeparate(t *testing.T) {
	ctx := context.Background()
	a := openStore(t, Options{})
	b := openStore(t, Options{})
	if err := a.CreateToken(ctx, &store.Token{Hash: hash("a"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Token(ctx, hash("a")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a token of one schema read in another: %v", err)
	}
	if err := b.CreateToken(ctx, &store.Token{Hash: hash("a"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("the same hash in another schema: %v", err)
	}
	if a.purgeKey == b.purgeKey || a.migrateKey == b.migrateKey {
		t.Fatal("two schemas share an advisory lock key")
	}
}

// TestOpen checks what Open refuses and that it does no I/O.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, Options{}); err == nil {
		t.Error("Open without a DSN succeeded")
	}
	if _, err := Open(ctx, Options{DSN: "postgres://u:secret@host:notaport/db"}); err == nil {
		t.Error("Open with a malformed DSN succeeded")
	}
	if _, err := Open(ctx, Options{DSN: pg.DSN(), Schema: "a\x00b"}); err == nil {
		t.Error("Open with a zero byte in the schema name succeeded")
	}
	// Nothing listens there: Open succeeds all the same, and the first
	// operation reports the database unavailable.
	s := openStore(t, Options{DSN: "postgres://u@127.0.0.1:1/db?sslmode=disable"})
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping without a database: %v, want ErrUnavailable", err)
	}
}
