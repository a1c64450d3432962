package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPostgres(t *testing.T) {
	pg, err := Postgres(t)
	if err != nil {
		t.Fatal(err)
	}
	if pg.PID() == 0 {
		t.Fatal("PID() = 0 while running")
	}
	connect := func(dsn string) (*pgx.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return pgx.Connect(ctx, dsn)
	}
	exec := func(dsn, sql string) error {
		conn, err := connect(dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(context.Background(), sql)
		return err
	}
	count := func(dsn string) (int, error) {
		conn, err := connect(dsn)
		if err != nil {
			return 0, err
		}
		defer conn.Close(context.Background())
		var n int
		err = conn.QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&n)
		return n, err
	}

	// The database DSN names exists and takes writes.
	if err := exec(pg.DSN(), "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	// Stopped, it refuses connections; started again, on the same port,
	// it has the data.
	if err := pg.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if pg.PID() != 0 {
		t.Errorf("PID() = %d after Stop", pg.PID())
	}
	if _, err := count(pg.DSN()); err == nil {
		t.Fatal("query succeeded while the server was stopped")
	}
	if err := pg.Stop(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("second Stop = %v, want ErrNotRunning", err)
	}
	if err := pg.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if n, err := count(pg.DSN()); err != nil || n != 1 {
		t.Fatalf("after restart: %d rows, %v; want 1", n, err)
	}

	// Killed, it loses no committed write: Start recovers.
	if err := exec(pg.DSN(), "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if _, err := count(pg.DSN()); err == nil {
		t.Fatal("query succeeded after Kill")
	}
	if err := pg.Start(); err != nil {
		t.Fatalf("Start after Kill: %v", err)
	}
	if n, err := count(pg.DSN()); err != nil || n != 2 {
		t.Fatalf("after a crash: %d rows, %v; want 2", n, err)
	}

	// More databases, each on its own.
	dsn, err := pg.CreateDatabase("other")
	if err != nil {
		t.Fatal(err)
	}
	if err := exec(dsn, "CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	if n, err := count(dsn); err != nil || n != 0 {
		t.Fatalf("new database: %d rows, %v; want an empty table", n, err)
	}
}

func TestPostgresBinDir(t *testing.T) {
	dir, err := PostgresBinDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvVar("postgres"), dir+"/postgres")
	if got, err := PostgresBinDir(); err != nil || got != dir {
		t.Errorf("with %s set: %q, %v; want %q", EnvVar("postgres"), got, err, dir)
	}
	t.Setenv(EnvVar("postgres"), t.TempDir()+"/postgres")
	if _, err := PostgresBinDir(); err == nil {
		t.Error("an override without binaries was accepted")
	}
}
