package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

func TestDifferingFields(t *testing.T) {
	at := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	want := &store.Family{ID: "f", SignedInAt: at, IdPRefresh: nil, Generation: 2}
	// Same instant in another location, empty bytes for nil: equal.
	same := &store.Family{ID: "f", SignedInAt: at.In(time.FixedZone("x", 3600)), IdPRefresh: []byte{}, Generation: 2}
	if d := differingFields(same, want); len(d) != 0 {
		t.Errorf("equal records reported different in %v", d)
	}
	other := &store.Family{ID: "g", SignedInAt: at.Add(time.Second), IdPRefresh: []byte("x"), Generation: 2,
		RefreshHash: store.Hash{1}}
	got := differingFields(other, want)
	for _, f := range []string{"ID", "SignedInAt", "IdPRefresh", "RefreshHash"} {
		if !slices.Contains(got, f) {
			t.Errorf("difference in %s not reported (got %v)", f, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("differing fields = %v, want exactly 4", got)
	}
}
