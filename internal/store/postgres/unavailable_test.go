package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// op is one store method, reduced to its error.
type op struct {
	name string
	do   func(ctx context.Context, s *Store) error
}

// everyOp calls every method of the store on the records seed wrote, each
// in a way that succeeds on a healthy database, as often as called. The
// update functions count their calls in fnCalls.
func everyOp(c *storetest.Clock, fnCalls *atomic.Int32) []op {
	var seq atomic.Int32
	next := func(what string) string { return fmt.Sprintf("%s-%d", what, seq.Add(1)) }
	h := hash("seed")
	return []op{
		{"Ping", func(ctx context.Context, s *Store) error { return s.Ping(ctx) }},
		{"Token", func(ctx context.Context, s *Store) error { _, err := s.Token(ctx, h); return err }},
		{"Lookup", func(ctx context.Context, s *Store) error {
			e, tok, err := s.Lookup(ctx, "E1", h)
			if err == nil && (e == nil || tok == nil) {
				err = errors.New("records missing")
			}
			return err
		}},
		{"Enrollment", func(ctx context.Context, s *Store) error { _, err := s.Enrollment(ctx, "E1"); return err }},
		{"CreateToken", func(ctx context.Context, s *Store) error {
			return s.CreateToken(ctx, &store.Token{Hash: hash(next("token")), ExpiresAt: c.Now().Add(time.Hour)})
		}},
		{"UpdateToken", func(ctx context.Context, s *Store) error {
			_, err := s.UpdateToken(ctx, h, func(t *store.Token) error { fnCalls.Add(1); t.ModelFamily = "iPad"; return nil })
			return err
		}},
		{"UpdateEnrollment", func(ctx context.Context, s *Store) error {
			_, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
				fnCalls.Add(1)
				e.Platform = store.PlatformMac
				return e, nil
			})
			return err
		}},
		{"Bind", func(ctx context.Context, s *Store) error {
			_, _, err := s.Bind(ctx, h, "E1", func(t *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
				fnCalls.Add(1)
				return e, nil
			})
			return err
		}},
		{"LoginState", func(ctx context.Context, s *Store) error {
			k := next("state")
			if err := s.PutLoginState(ctx, k, store.LoginState{Data: []byte("x"), ExpiresAt: c.Now().Add(time.Hour)}); err != nil {
				return err
			}
			_, err := s.TakeLoginState(ctx, k)
			return err
		}},
		{"CountLoginStates", func(ctx context.Context, s *Store) error { _, err := s.CountLoginStates(ctx); return err }},
		{"Code", func(ctx context.Context, s *Store) error {
			h := hash(next("code"))
			if err := s.CreateCode(ctx, &store.Code{Hash: h, ExpiresAt: c.Now().Add(time.Minute)}); err != nil {
				return err
			}
			_, err := s.UpdateCode(ctx, h, func(code *store.Code) error { fnCalls.Add(1); code.UsedAt = c.Now(); return nil })
			return err
		}},
		{"Family", func(ctx context.Context, s *Store) error {
			id := next("family")
			if err := s.CreateFamily(ctx, &store.Family{ID: id, ExpiresAt: c.Now().Add(time.Hour)}); err != nil {
				return err
			}
			if _, err := s.Family(ctx, id); err != nil {
				return err
			}
			_, err := s.UpdateFamily(ctx, id, func(f *store.Family) error { fnCalls.Add(1); f.Generation++; return nil })
			return err
		}},
		{"Secret", func(ctx context.Context, s *Store) error {
			_, err := s.Secret(ctx, "signing", func() ([]byte, error) { return []byte("secret"), nil })
			return err
		}},
		{"TokensForEnrollment", func(ctx context.Context, s *Store) error { _, err := s.TokensForEnrollment(ctx, "E1"); return err }},
		{"TokensForFamily", func(ctx context.Context, s *Store) error { _, err := s.TokensForFamily(ctx, "F1"); return err }},
		{"EnrollmentsForUser", func(ctx context.Context, s *Store) error {
			_, err := s.EnrollmentsForUser(ctx, "iss", "sub")
			return err
		}},
		{"TokensForUser", func(ctx context.Context, s *Store) error { _, err := s.TokensForUser(ctx, "iss", "sub"); return err }},
		{"FamiliesForUser", func(ctx context.Context, s *Store) error { _, err := s.FamiliesForUser(ctx, "iss", "sub"); return err }},
		{"ScanTokens", func(ctx context.Context, s *Store) error {
			return s.ScanTokens(ctx, nil, func(*store.Token) bool { return true })
		}},
		{"ScanEnrollments", func(ctx context.Context, s *Store) error {
			return s.ScanEnrollments(ctx, "", func(*store.Enrollment) bool { return true })
		}},
		{"ScanFamilies", func(ctx context.Context, s *Store) error {
			return s.ScanFamilies(ctx, "", func(*store.Family) bool { return true })
		}},
		{"Size", func(ctx context.Context, s *Store) error { _, err := s.Size(ctx); return err }},
		{"Purge", func(ctx context.Context, s *Store) error { _, err := s.Purge(ctx); return err }},
		{"Dump", func(ctx context.Context, s *Store) error {
			return s.Dump(ctx, func(store.Record) error { return nil })
		}},
		{"Load", func(ctx context.Context, s *Store) error {
			return s.Load(ctx, store.Record{Secret: &store.NamedSecret{Name: "loaded", Value: []byte("v")}})
		}},
	}
}

// seed writes token "seed" of (iss, sub) bound to E1.
func seed(t *testing.T, s *Store, c *storetest.Clock) {
	t.Helper()
	ctx := context.Background()
	h := hash("seed")
	if err := s.CreateToken(ctx, &store.Token{Hash: h, Issuer: "iss", Subject: "sub", FamilyID: "F1", ExpiresAt: c.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Bind(ctx, h, "E1", func(tok *store.Token, _ *store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{Issuer: tok.Issuer, Subject: tok.Subject, State: store.StateActive, TokenHash: tok.Hash}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// assertEvery runs every op and checks its error with want.
func assertEvery(t *testing.T, what string, s *Store, ops []op, want func(error) bool) {
	t.Helper()
	for _, o := range ops {
		if err := o.do(context.Background(), s); !want(err) {
			t.Errorf("%s: %s: %v", what, o.name, err)
		}
	}
}

func unavailable(err error) bool { return errors.Is(err, store.ErrUnavailable) }
func succeeded(err error) bool   { return err == nil }

// TestUnavailable takes a database away from a store and gives it back:
// the store opens while the database is down, every operation then fails
// with store.ErrUnavailable (and never reaches an update function), and
// once the database is back the same store works again, its schema
// migrated by the first operation that could.
func TestUnavailable(t *testing.T) {
	srv, err := testenv.Postgres(t)
	if err != nil {
		t.Fatal(err)
	}
	c := storetest.NewClock(time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC))
	var fnCalls atomic.Int32
	ops := everyOp(c, &fnCalls)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	s := openStore(t, Options{DSN: srv.DSN(), Now: c.Now, OpTimeout: 2 * time.Second})
	if err := s.Migrate(context.Background()); !unavailable(err) {
		t.Errorf("Migrate with the database down: %v, want ErrUnavailable", err)
	}
	assertEvery(t, "database down since Open", s, ops, unavailable)
	if n := fnCalls.Load(); n != 0 {
		t.Fatalf("update functions ran %d times without a database", n)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	seed(t, s, c)
	assertEvery(t, "database up", s, ops, succeeded)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	fnCalls.Store(0)
	assertEvery(t, "database stopped", s, ops, unavailable)
	if n := fnCalls.Load(); n != 0 {
		t.Fatalf("update functions ran %d times without a database", n)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	assertEvery(t, "database restarted", s, ops, succeeded)

	// A crash: the pool's connections die with the server. The first
	// read after the restart succeeds (on a fresh connection).
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if e, tok, err := s.Lookup(context.Background(), "E1", hash("seed")); err != nil || e == nil || tok == nil {
		t.Fatalf("first Lookup after a crash and restart = %v, %v, %v", e, tok, err)
	}
	assertEvery(t, "database recovered from a crash", s, ops, succeeded)

	var version int
	conn, err := pgx.Connect(context.Background(), srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), s.q.expand("SELECT max(version) FROM {s}.schema_migrations")).Scan(&version); err != nil || version != SchemaVersion() {
		t.Fatalf("schema version %d, %v; want %d", version, err, SchemaVersion())
	}
}

// TestBlackHole: a database that accepts connections and never answers
// (a dead host behind a load balancer, a network partition) fails every
// operation with store.ErrUnavailable after OpTimeout instead of holding
// it; the callers' contexts have no deadline of their own.
func TestBlackHole(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	c := storetest.NewClock(time.Now())
	var fnCalls atomic.Int32
	s := openStore(t, Options{DSN: "postgres://mdmauth@" + ln.Addr().String() + "/mdmauth?sslmode=disable", Now: c.Now, OpTimeout: 200 * time.Millisecond})
	for _, o := range everyOp(c, &fnCalls)[:8] {
		if err := o.do(context.Background(), s); !unavailable(err) {
			t.Errorf("%s: %v, want ErrUnavailable", o.name, err)
		}
	}
	if n := fnCalls.Load(); n != 0 {
		t.Fatalf("update functions ran %d times without a database", n)
	}
}

// TestStuckStatement: an operation that waits on the database (here for a
// row another session holds locked) gives up after OpTimeout with
// store.ErrUnavailable, without running its function, and the store
// works normally once the lock is released.
func TestStuckStatement(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock(time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC))
	s := openStore(t, Options{Now: c.Now, OpTimeout: 300 * time.Millisecond})
	seed(t, s, c)

	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := hash("seed")
	if _, err := tx.Exec(ctx, s.q.expand("SELECT 1 FROM {s}.tokens WHERE hash = $1 FOR UPDATE"), h[:]); err != nil {
		t.Fatal(err)
	}
	called := false
	_, err = s.UpdateToken(ctx, h, func(t *store.Token) error { called = true; return nil })
	if !unavailable(err) || called {
		t.Fatalf("UpdateToken of a locked row: %v, fn called %v; want ErrUnavailable, not called", err, called)
	}
	// Reads do not wait for row locks.
	if _, _, err := s.Lookup(ctx, "E1", h); err != nil {
		t.Fatalf("Lookup while the row is locked: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateToken(ctx, h, func(t *store.Token) error { called = true; return nil }); err != nil || !called {
		t.Fatalf("UpdateToken after the lock was released: %v, fn called %v", err, called)
	}
}

// TestCallerContextWins: an operation whose caller gave up returns the
// caller's context error, not store.ErrUnavailable, even when the
// database is the reason it took long.
func TestCallerContextWins(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewClock(time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC))
	s := openStore(t, Options{Now: c.Now, OpTimeout: time.Minute})
	seed(t, s, c)
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	h := hash("seed")
	if _, err := tx.Exec(ctx, s.q.expand("SELECT 1 FROM {s}.tokens WHERE hash = $1 FOR UPDATE"), h[:]); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = s.UpdateToken(cctx, h, func(*store.Token) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || unavailable(err) {
		t.Fatalf("UpdateToken whose caller gave up: %v; want the caller's context.DeadlineExceeded", err)
	}
}
