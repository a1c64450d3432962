package badger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/storetest"
)

// openAt opens a store in dir that closes when the test ends.
func openAt(t testing.TB, dir string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, Now: now, GCInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	var (
		mu   sync.Mutex
		dirs = map[store.Store]string{}
	)
	storetest.Run(t, storetest.Factory{
		New: func(t *testing.T, now func() time.Time) store.Store {
			dir := t.TempDir()
			s := openAt(t, dir, now)
			mu.Lock()
			dirs[s] = dir
			mu.Unlock()
			return s
		},
		Reopen: func(t *testing.T, s store.Store, now func() time.Time) store.Store {
			mu.Lock()
			dir := dirs[s]
			mu.Unlock()
			if dir == "" {
				t.Fatal("Reopen of a store New did not open")
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			r := openAt(t, dir, now)
			mu.Lock()
			dirs[r] = dir
			mu.Unlock()
			return r
		},
	})
}

func TestOpenRequiresDir(t *testing.T) {
	if s, err := Open(Options{}); err == nil {
		s.Close()
		t.Fatal("Open without Dir succeeded")
	}
}

func TestOpenLockedDir(t *testing.T) {
	dir := t.TempDir()
	openAt(t, dir, time.Now)
	if s, err := Open(Options{Dir: dir}); err == nil {
		s.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
}

// tokenHash is the hash of the i-th benchmark token.
func tokenHash(i int) store.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

func BenchmarkToken(b *testing.B) {
	const n = 100_000
	now := time.Now()
	s := openAt(b, b.TempDir(), func() time.Time { return now })
	// Load in large transactions: one CreateToken per token would fsync
	// 100k times.
	for start := 0; start < n; start += 1000 {
		err := s.db.Update(func(txn *badgerdb.Txn) error {
			for i := start; i < start+1000; i++ {
				t := &store.Token{
					Hash: tokenHash(i), Issuer: "https://idp.example.com", Subject: "user",
					ManagedAppleID: "user@appleid.example.com", Mode: "byod", ModelFamily: "iPhone",
					IssuedAt: now, ExpiresAt: now.Add(time.Hour), EnrollmentID: "ENROLLMENT",
				}
				if err := s.putToken(txn, nil, t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	h := tokenHash(n / 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Token(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}
