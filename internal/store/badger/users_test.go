package badger

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// TestUserIndexKeysSelfDelimiting checks, over every pair of users made of
// short strings of a few awkward bytes, that one user's prefix never
// begins another user's keys, whatever enrollment id follows it.
func TestUserIndexKeysSelfDelimiting(t *testing.T) {
	alphabet := []string{"a", "\x00", "\x01"}
	strs := []string{""}
	for n, last := 0, []string{""}; n < 2; n++ {
		var next []string
		for _, s := range last {
			for _, c := range alphabet {
				next = append(next, s+c)
			}
		}
		strs = append(strs, next...)
		last = next
	}
	type user struct{ iss, sub string }
	var users []user
	for _, iss := range strs {
		for _, sub := range strs {
			users = append(users, user{iss, sub})
		}
	}
	for _, a := range users {
		pa := userIndexPrefix(a.iss, a.sub)
		for _, b := range users {
			if a == b {
				continue
			}
			// The longest id the alphabet builds; a shorter one yields a
			// prefix of this key, so it is covered too.
			kb := userIndexKey(b.iss, b.sub, "\x00\x01a")
			if bytes.HasPrefix(kb, pa) {
				t.Fatalf("prefix of (%q, %q) begins a key of (%q, %q)", a.iss, a.sub, b.iss, b.sub)
			}
		}
	}
}

// TestEnrollmentsForUserInIDOrder checks the order of the listing.
func TestEnrollmentsForUserInIDOrder(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, t.TempDir(), time.Now)
	ids := []string{"E3", "E10", "E1", "e0", "E2", "E"}
	for _, id := range ids {
		put(t, s, id, &store.Enrollment{Issuer: "iss", Subject: "sub", State: store.StateActive})
	}
	got, err := s.EnrollmentsForUser(ctx, "iss", "sub")
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, e := range got {
		gotIDs = append(gotIDs, e.ID)
	}
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(gotIDs, want) {
		t.Fatalf("EnrollmentsForUser ids = %q, want %q", gotIDs, want)
	}
}

// TestUserIndexMoves checks the user index keys directly: they carry no
// TTL, and a change or removal of the owner deletes the old entry rather
// than leaving it to be filtered out.
func TestUserIndexMoves(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	setOwner := func(iss, sub string) {
		t.Helper()
		if _, err := s.UpdateEnrollment(ctx, "E1", func(e *store.Enrollment) (*store.Enrollment, error) {
			if e == nil {
				e = &store.Enrollment{State: store.StateActive}
			}
			e.Issuer, e.Subject = iss, sub
			return e, nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	setOwner("iss", "a")
	if exp := expiresAt(t, s, userIndexKey("iss", "a", "E1")); exp != 0 {
		t.Fatalf("user index entry has TTL %d, want none", exp)
	}
	setOwner("iss", "b")
	absent(t, s, userIndexKey("iss", "a", "E1"))
	if exp := expiresAt(t, s, userIndexKey("iss", "b", "E1")); exp != 0 {
		t.Fatalf("moved user index entry has TTL %d, want none", exp)
	}

	// Bind goes through the same write path.
	h := store.Hash{1}
	if err := s.CreateToken(ctx, &store.Token{Hash: h, Issuer: "iss", Subject: "c", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Bind(ctx, h, "E1", func(tok *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
		e.Issuer, e.Subject = tok.Issuer, tok.Subject
		return e, nil
	}); err != nil {
		t.Fatal(err)
	}
	absent(t, s, userIndexKey("iss", "b", "E1"))
	expiresAt(t, s, userIndexKey("iss", "c", "E1"))

	setOwner("", "")
	absent(t, s, userIndexKey("iss", "c", "E1"))
	absent(t, s, userIndexKey("", "", "E1"))
	if n := len(keysOfKind(t, s, kindUserIndex)); n != 0 {
		t.Fatalf("user index holds %d entries after the owner was cleared, want 0", n)
	}
}

// TestUserIndexBackfill checks that opening a database written before the
// user index existed indexes its enrollments once.
func TestUserIndexBackfill(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	// Write enrollments as an older version did: records only, and no
	// marker.
	err = s.db.Update(func(txn *badgerdb.Txn) error {
		for id, e := range map[string]*store.Enrollment{
			"E1": {Issuer: "iss", Subject: "a", State: store.StateActive},
			"E2": {Issuer: "iss", Subject: "a", State: store.StateRemoved},
			"E3": {Issuer: "iss", Subject: "b", State: store.StateActive},
			"E4": {State: store.StateActive},
		} {
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := txn.Set(enrollmentKey(id), v); err != nil {
				return err
			}
		}
		return txn.Delete(userIndexMarker)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.EnrollmentsForUser(ctx, "iss", "a"); err != nil || len(got) != 0 {
		t.Fatalf("before backfill: got %d enrollments, %v; want none", len(got), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, dir, time.Now)
	for _, tt := range []struct {
		sub  string
		want []string
	}{
		{"a", []string{"E1", "E2"}},
		{"b", []string{"E3"}},
	} {
		got, err := s.EnrollmentsForUser(ctx, "iss", tt.sub)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range got {
			ids = append(ids, e.ID)
		}
		if !slices.Equal(ids, tt.want) {
			t.Errorf("EnrollmentsForUser(iss, %s) = %q, want %q", tt.sub, ids, tt.want)
		}
	}
	expiresAt(t, s, userIndexMarker)
}

// put stores e under id with UpdateEnrollment.
func put(t *testing.T, s *Store, id string, e *store.Enrollment) {
	t.Helper()
	if _, err := s.UpdateEnrollment(context.Background(), id, func(*store.Enrollment) (*store.Enrollment, error) {
		return e, nil
	}); err != nil {
		t.Fatal(err)
	}
}
