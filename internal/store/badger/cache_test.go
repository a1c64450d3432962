package badger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

func TestRecordCacheBounded(t *testing.T) {
	c := newRecordCache(cacheShards * 2)
	for i := range 10_000 {
		c.put(fmt.Appendf(nil, "k%d", i), 1, i)
	}
	if n := c.len(); n > cacheShards*2 {
		t.Fatalf("cache holds %d entries, bound %d", n, cacheShards*2)
	}
}

func TestRecordCacheVersions(t *testing.T) {
	c := newRecordCache(100)
	key := []byte("k")
	c.put(key, 5, "five")
	c.put(key, 4, "four") // older: ignored
	if v, ok := c.get(key, 5); !ok || v != "five" {
		t.Fatalf("get(5) = %v, %v; want five", v, ok)
	}
	if _, ok := c.get(key, 4); ok {
		t.Fatal("an entry of another version was served")
	}
	if _, ok := c.get(key, 6); ok {
		t.Fatal("an entry older than the record was served")
	}
	c.put(key, 6, "six")
	if v, ok := c.get(key, 6); !ok || v != "six" {
		t.Fatalf("get(6) = %v, %v; want six", v, ok)
	}
	if newRecordCache(-1) != nil {
		t.Fatal("a negative size must disable the cache")
	}
}

// TestCacheDisabled runs the hot-path reads without the cache.
func TestCacheDisabled(t *testing.T) {
	now := time.Now()
	s, err := Open(Options{Dir: t.TempDir(), CacheEntries: -1, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	h := store.Hash(sha256.Sum256([]byte("t")))
	if err := s.CreateToken(ctx, &store.Token{Hash: h, Issuer: "i", Subject: "s", ManagedAppleID: "m", Mode: "byod", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, tok, err := s.Lookup(ctx, "E", h); err != nil || tok == nil || tok.Subject != "s" {
		t.Fatalf("Lookup = %v, %v", tok, err)
	}
	if s.cache != nil {
		t.Fatal("cache not disabled")
	}
}

func TestCompactKeepsRecords(t *testing.T) {
	now := time.Now()
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var hashes []store.Hash
	for i := range 500 {
		h := store.Hash(sha256.Sum256(fmt.Appendf(nil, "t%d", i)))
		hashes = append(hashes, h)
		if err := s.CreateToken(ctx, &store.Token{Hash: h, Issuer: "i", Subject: "s", ManagedAppleID: "m", Mode: "byod", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
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
