package postgres

import (
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
)

// factory opens stores in fresh schemas of the shared server.
var factory = storetest.Factory{
	New: func(t *testing.T, now func() time.Time) store.Store { return openStore(t, Options{Now: now}) },
}

// badgerFactory opens Badger stores in temporary directories.
var badgerFactory = storetest.Factory{
	New: func(t *testing.T, now func() time.Time) store.Store {
		s, err := badger.Open(badger.Options{Dir: t.TempDir(), Now: now, GCInterval: -1})
		if err != nil {
			t.Fatalf("badger.Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
}

func TestTransfer(t *testing.T) {
	t.Run("BadgerToPostgres", func(t *testing.T) { storetest.RunTransfer(t, badgerFactory, factory) })
	t.Run("PostgresToBadger", func(t *testing.T) { storetest.RunTransfer(t, factory, badgerFactory) })
	t.Run("PostgresToPostgres", func(t *testing.T) { storetest.RunTransfer(t, factory, factory) })
}
