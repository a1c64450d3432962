package badger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

func TestRecordCacheBounded(t *testing.T) {
	c := newRecordCache(cacheShards * 2)
	for i := range 10_000 {
		k := fmt.Appendf(nil, "k%d", i)
		_, ep := c.get(k)
		c.put(k, ep, i)
	}
	if n := c.len(); n > cacheShards*2 {
		t.Fatalf("cache holds %d entries, bound %d", n, cacheShards*2)
	}
}

func TestRecordCacheEpochs(t *testing.T) {
	c := newRecordCache(100)
	key := []byte("k")
	_, ep := c.get(key)
	c.invalidate([]string{"k"}) // a write between the read and the insert
	c.put(key, ep, "stale")
	if v, _ := c.get(key); v != nil {
		t.Fatalf("a record read before a write was cached: %v", v)
	}
	_, ep = c.get(key)
	c.put(key, ep, "fresh")
	if v, _ := c.get(key); v != "fresh" {
		t.Fatalf("get = %v, want fresh", v)
	}
	c.invalidate([]string{"k"})
	if v, _ := c.get(key); v != nil {
		t.Fatalf("an invalidated record was served: %v", v)
	}
	if newRecordCache(-1) != nil {
		t.Fatal("a negative size must disable the cache")
	}
}

// openCacheTestStore opens a store in a temporary directory, closed when
// the test ends.
func openCacheTestStore(t *testing.T, cacheEntries int) *Store {
	t.Helper()
	s, err := Open(Options{Dir: t.TempDir(), CacheEntries: cacheEntries, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTestToken(seed string, now time.Time) *store.Token {
	return &store.Token{Hash: sha256.Sum256([]byte(seed)), Issuer: "i", Subject: "s", ManagedAppleID: "m", Mode: "byod",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
}

func bindTestToken(t *testing.T, s *Store, h store.Hash, id string, now time.Time) {
	t.Helper()
	_, _, err := s.Bind(context.Background(), h, id, func(tok *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
		tok.EnrollmentID = id
		if e == nil {
			e = &store.Enrollment{ID: id, State: store.StateActive, CreatedAt: now}
		}
		e.Issuer, e.Subject, e.TokenHash, e.UpdatedAt = tok.Issuer, tok.Subject, tok.Hash, now
		return e, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLookupNeverStaleUnderConcurrency: readers hammer Lookup while a
// writer revokes the token and blocks the enrollment; once each write has
// returned, every later Lookup sees it, whatever the readers cached.
func TestLookupNeverStaleUnderConcurrency(t *testing.T) {
	now := time.Now()
	s := openCacheTestStore(t, 0)
	ctx := context.Background()
	for round := range 20 {
		id := fmt.Sprintf("E%d", round)
		tok := newTestToken(id, now)
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		bindTestToken(t, s, tok.Hash, id, now)
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					if _, _, err := s.Lookup(ctx, id, tok.Hash); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		time.Sleep(time.Millisecond)
		if _, err := s.UpdateToken(ctx, tok.Hash, func(t *store.Token) error { t.RevokedAt = now; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, got, err := s.Lookup(ctx, id, tok.Hash); err != nil || got.RevokedAt.IsZero() {
			t.Fatalf("round %d: Lookup right after the revocation = %+v, %v", round, got, err)
		}
		if _, err := s.UpdateEnrollment(ctx, id, func(e *store.Enrollment) (*store.Enrollment, error) {
			e.State = store.StateBlocked
			return e, nil
		}); err != nil {
			t.Fatal(err)
		}
		if e, _, err := s.Lookup(ctx, id, tok.Hash); err != nil || e.State != store.StateBlocked {
			t.Fatalf("round %d: Lookup right after the state change = %+v, %v", round, e, err)
		}
		time.Sleep(time.Millisecond)
		stop.Store(true)
		wg.Wait()
		// And after the readers are done, nothing stale was left behind.
		e, got, err := s.Lookup(ctx, id, tok.Hash)
		if err != nil || got.RevokedAt.IsZero() || e.State != store.StateBlocked {
			t.Fatalf("round %d: Lookup after the readers = %+v, %+v, %v", round, e, got, err)
		}
	}
	if s.writes.m != nil && len(s.writes.m) != 0 {
		t.Fatalf("write log keeps %d transactions", len(s.writes.m))
	}
}

// TestLookupServedFromCache: a repeated Lookup is answered from the cache
// (the same records, copies the caller owns).
func TestLookupServedFromCache(t *testing.T) {
	now := time.Now()
	s := openCacheTestStore(t, 0)
	ctx := context.Background()
	tok := newTestToken("t", now)
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	bindTestToken(t, s, tok.Hash, "E", now)
	if _, _, err := s.Lookup(ctx, "E", tok.Hash); err != nil {
		t.Fatal(err)
	}
	e, got, ok := s.lookupCached(enrollmentKey("E"), tokenKey(tok.Hash))
	if !ok || e.ID != "E" || got.Hash != tok.Hash {
		t.Fatalf("lookupCached = %+v, %+v, %v; want both records", e, got, ok)
	}
	got.RevokedAt = now
	if _, again, _ := s.Lookup(ctx, "E", tok.Hash); !again.RevokedAt.IsZero() {
		t.Fatal("a caller's change leaked into the cache")
	}
}

// TestCacheDisabled runs the hot-path reads without the cache.
func TestCacheDisabled(t *testing.T) {
	now := time.Now()
	s := openCacheTestStore(t, -1)
	ctx := context.Background()
	tok := newTestToken("t", now)
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, got, err := s.Lookup(ctx, "E", tok.Hash); err != nil || got == nil || got.Subject != "s" {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	if s.cache != nil {
		t.Fatal("cache not disabled")
	}
}

func TestCompactKeepsRecords(t *testing.T) {
	now := time.Now()
	s := openCacheTestStore(t, 0)
	ctx := context.Background()
	var hashes []store.Hash
	for i := range 500 {
		tok := newTestToken(fmt.Sprintf("t%d", i), now)
		hashes = append(hashes, tok.Hash)
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range hashes {
		if _, err := s.Token(ctx, h); err != nil {
			t.Fatalf("token %s after Compact: %v", h.ID(), err)
		}
	}
	s.Close()
	if err := s.Compact(ctx); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Compact after Close = %v, want ErrClosed", err)
	}
}
