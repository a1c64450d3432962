package badger

import (
	"errors"
	"hash/maphash"
	"sync"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// DefaultCacheEntries is the default Options.CacheEntries. The cache is
// sized for the devices talking at one moment, not for the fleet: a device
// answering a push sends several requests in a row (Idle, results, Idle),
// and those hit; a push to a whole fleet reaches each device once, so a
// fleet-sized cache would cost memory (~1 KiB of heap per record with
// the garbage collector's headroom) and save one decode per burst.
const DefaultCacheEntries = 20_000

// cacheShards spreads the cache's locks.
const cacheShards = 64

// recordCache keeps decoded token and enrollment records for the lookups on
// the MDM hot path, each with the Badger version (commit timestamp) it was
// decoded from. A lookup still asks Badger for the key's current version
// in its own transaction and uses the cached record only when the versions
// are equal, so a revocation, a state change, a purge or a rebind written
// by any transaction is seen by the very next lookup; the cache saves the
// decoding, never the read. Entries are immutable: readers get copies.
type recordCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	version uint64
	rec     any // *store.Token or *store.Enrollment
}

// newRecordCache returns a cache of at most entries records; nil (no
// cache) when entries is negative.
func newRecordCache(entries int) *recordCache {
	if entries < 0 {
		return nil
	}
	if entries == 0 {
		entries = DefaultCacheEntries
	}
	c := &recordCache{seed: maphash.MakeSeed(), perShard: max(1, entries/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *recordCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

func (c *recordCache) get(key []byte, version uint64) (any, bool) {
	s := c.shard(key)
	s.mu.Lock()
	e, ok := s.m[string(key)]
	s.mu.Unlock()
	if !ok || e.version != version {
		return nil, false
	}
	return e.rec, true
}

func (c *recordCache) put(key []byte, version uint64, rec any) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.m[string(key)]; ok && cur.version >= version {
		return // never replace a newer record with an older one
	}
	if len(s.m) >= c.perShard {
		// Evict an arbitrary entry: map iteration starts at a random
		// place, which is good enough for a cache whose misses cost one
		// decode.
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[string(key)] = cacheEntry{version: version, rec: rec}
}

func (c *recordCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// cachedToken reads the token with hash h in txn, decoding it only when the
// cache does not hold its current version. The result is the caller's.
func (s *Store) cachedToken(txn *badgerdb.Txn, h store.Hash) (*store.Token, error) {
	if s.cache == nil {
		return getToken(txn, h)
	}
	key := tokenKey(h)
	item, err := txn.Get(key)
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if rec, ok := s.cache.get(key, item.Version()); ok {
		t := *rec.(*store.Token)
		return &t, nil
	}
	t := &store.Token{}
	if err := decode(item, t, "token "+h.ID()); err != nil {
		return nil, err
	}
	t.Hash = h
	kept := *t
	s.cache.put(key, item.Version(), &kept)
	return t, nil
}

// cachedEnrollment is cachedToken for enrollments; nil without error if
// absent.
func (s *Store) cachedEnrollment(txn *badgerdb.Txn, id string) (*store.Enrollment, error) {
	if s.cache == nil {
		return getEnrollment(txn, id)
	}
	key := enrollmentKey(id)
	item, err := txn.Get(key)
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rec, ok := s.cache.get(key, item.Version()); ok {
		e := *rec.(*store.Enrollment)
		return &e, nil
	}
	e := &store.Enrollment{}
	if err := decode(item, e, "enrollment"); err != nil {
		return nil, err
	}
	e.ID = id
	kept := *e
	s.cache.put(key, item.Version(), &kept)
	return e, nil
}
