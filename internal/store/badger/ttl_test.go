package badger

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// expiresAt returns the Badger expiry (Unix seconds, 0 = none) of key.
func expiresAt(t *testing.T, s *Store, key []byte) uint64 {
	t.Helper()
	var exp uint64
	err := s.db.View(func(txn *badgerdb.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		exp = item.ExpiresAt()
		return nil
	})
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return exp
}

// absent fails unless key is missing from the database.
func absent(t *testing.T, s *Store, key []byte) {
	t.Helper()
	err := s.db.View(func(txn *badgerdb.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	if !errors.Is(err, badgerdb.ErrKeyNotFound) {
		t.Fatalf("key %q: got %v, want ErrKeyNotFound", key, err)
	}
}

// keysOfKind returns (copies of) every live key of the given kind.
func keysOfKind(t *testing.T, s *Store, kind byte) [][]byte {
	t.Helper()
	var keys [][]byte
	err := s.db.View(func(txn *badgerdb.Txn) error {
		it := txn.NewIterator(badgerdb.IteratorOptions{Prefix: []byte{kind}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestTTL checks the native TTLs: they purge records a retention period
// after expiry as measured on the store's clock, whatever the wall clock
// says, and never touch enrollments or secrets.
func TestTTL(t *testing.T) {
	ctx := context.Background()
	// The store's clock runs a year ahead of the wall clock.
	logical := time.Now().AddDate(1, 0, 0).Truncate(time.Second)
	const retention = 48 * time.Hour
	s, err := Open(Options{Dir: t.TempDir(), Now: func() time.Time { return logical }, TokenRetention: retention, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	h := store.Hash(sha256.Sum256([]byte("tok")))
	tok := &store.Token{Hash: h, IssuedAt: logical, ExpiresAt: logical.Add(10 * time.Hour)}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Bind(ctx, h, "E1", func(t *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
		return &store.Enrollment{State: store.StateActive, TokenHash: t.Hash}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLoginState(ctx, "k", store.LoginState{Data: []byte("x"), ExpiresAt: logical.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret(ctx, "signing", func() ([]byte, error) { return []byte("secret"), nil }); err != nil {
		t.Fatal(err)
	}

	// near reports whether a Badger expiry lies within a few seconds of
	// now+keep on the wall clock.
	near := func(exp uint64, keep time.Duration) bool {
		want := time.Now().Add(keep).Unix()
		return int64(exp) >= want-5 && int64(exp) <= want+5
	}
	tests := []struct {
		name string
		key  []byte
		keep time.Duration // 0: no TTL
	}{
		{"token", tokenKey(h), 10*time.Hour + retention},
		{"index", indexKey("E1", h), 10*time.Hour + retention},
		{"login state", loginStateKey("k"), 5*time.Minute + loginStateGrace},
		{"enrollment", enrollmentKey("E1"), 0},
		{"secret", secretKey("signing"), 0},
	}
	for _, tt := range tests {
		exp := expiresAt(t, s, tt.key)
		if tt.keep == 0 && exp != 0 {
			t.Errorf("%s: has TTL %d, want none", tt.name, exp)
		}
		if tt.keep != 0 && !near(exp, tt.keep) {
			t.Errorf("%s: expires %v from now, want about %v", tt.name, time.Until(time.Unix(int64(exp), 0)), tt.keep)
		}
	}

	// Revocation starts the retention period early.
	if _, err := s.UpdateToken(ctx, h, func(t *store.Token) error {
		t.RevokedAt = logical.Add(-time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, key := range [][]byte{tokenKey(h), indexKey("E1", h)} {
		if exp := expiresAt(t, s, key); !near(exp, retention-time.Hour) {
			t.Errorf("revoked %q: expires %v from now, want about %v", key, time.Until(time.Unix(int64(exp), 0)), retention-time.Hour)
		}
	}

	// A token past its retention is still kept briefly, not dropped on write.
	old := &store.Token{Hash: sha256.Sum256([]byte("old")), ExpiresAt: logical.Add(-retention - time.Hour)}
	if err := s.CreateToken(ctx, old); err != nil {
		t.Fatal(err)
	}
	if exp := expiresAt(t, s, tokenKey(old.Hash)); !near(exp, minKeep) {
		t.Errorf("old token: expires %v from now, want about %v", time.Until(time.Unix(int64(exp), 0)), minKeep)
	}
}

// TestRebindMovesIndex checks the index keys directly: a rebind deletes the
// old entry rather than leaving it to be filtered out.
func TestRebindMovesIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := store.Hash(sha256.Sum256([]byte("tok")))
	if err := s.CreateToken(ctx, &store.Token{Hash: h, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	keep := func(*store.Token, *store.Enrollment) (*store.Enrollment, error) { return nil, nil }
	for _, id := range []string{"E1", "E2"} {
		if _, _, err := s.Bind(ctx, h, id, keep); err != nil {
			t.Fatal(err)
		}
	}
	err = s.db.View(func(txn *badgerdb.Txn) error {
		_, err := txn.Get(indexKey("E1", h))
		return err
	})
	if err != badgerdb.ErrKeyNotFound {
		t.Fatalf("old index entry: got %v, want ErrKeyNotFound", err)
	}
	if exp := expiresAt(t, s, indexKey("E2", h)); exp == 0 {
		t.Fatal("new index entry has no TTL")
	}
}
