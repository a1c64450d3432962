package badger

import (
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
)

func TestTransfer(t *testing.T) {
	f := storetest.Factory{
		New: func(t *testing.T, now func() time.Time) store.Store { return openAt(t, t.TempDir(), now) },
	}
	storetest.RunTransfer(t, f, f)
}
