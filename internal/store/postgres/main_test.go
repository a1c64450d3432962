package postgres

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// pg is the server every test of the package shares; each test works in
// a schema of its own.
var pg *testenv.PG

func TestMain(m *testing.M) {
	scope, err := testenv.NewScope(func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pg, err = testenv.Postgres(scope)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		scope.Close()
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- last lines of the PostgreSQL log ---\n%s\n", tail(pg.Logs(), 40))
	}
	scope.Close()
	os.Exit(code)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	end := len(s)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			if n--; n < 0 {
				return s[i+1 : end]
			}
		}
	}
	return s[:end]
}

var schemaSeq atomic.Int64

// freshSchema names a schema no test used yet.
func freshSchema() string { return fmt.Sprintf("test_%d", schemaSeq.Add(1)) }

// openStore opens a store that closes when the test ends: on the shared
// server and in a fresh schema unless o says otherwise, without the
// background purge unless o sets an interval.
func openStore(t testing.TB, o Options) *Store {
	t.Helper()
	if o.DSN == "" {
		o.DSN = pg.DSN()
	}
	if o.Schema == "" {
		o.Schema = freshSchema()
	}
	if o.PurgeInterval == 0 {
		o.PurgeInterval = -1
	}
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	var (
		mu      sync.Mutex
		schemas = map[store.Store]string{}
	)
	storetest.Run(t, storetest.Factory{
		New: func(t *testing.T, now func() time.Time) store.Store {
			s := openStore(t, Options{Now: now})
			mu.Lock()
			schemas[s] = s.schema
			mu.Unlock()
			return s
		},
		Reopen: func(t *testing.T, s store.Store, now func() time.Time) store.Store {
			mu.Lock()
			schema := schemas[s]
			mu.Unlock()
			if schema == "" {
				t.Fatal("Reopen of a store New did not open")
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			r := openStore(t, Options{Now: now, Schema: schema})
			mu.Lock()
			schemas[r] = schema
			mu.Unlock()
			return r
		},
	})
}
