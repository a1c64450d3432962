package badger

import (
	"hash/maphash"
	"sync"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// DefaultCacheEntries is the default Options.CacheEntries. The cache is
// sized for the devices talking at one moment, not for the fleet: a device
// answering a push sends several requests in a row (Idle, results, Idle),
// and those hit; a push to a whole fleet reaches each device once, so a
// fleet-sized cache would cost memory (~1 KiB of heap per record with the
// garbage collector's headroom) and save one read per burst.
const DefaultCacheEntries = 20_000

// cacheShards spreads the cache's locks.
const cacheShards = 64

// recordCache keeps decoded token and enrollment records for Lookup, the
// MDM hot path, so that a device's requests in a row neither search
// Badger's levels nor decode JSON.
//
// It is correct because only one process can open a Badger directory and
// every write goes through this Store: each committed write of a token or
// an enrollment invalidates its key (update calls invalidate after the
// commit), so the very next Lookup reads the new record. A Lookup that
// misses reads the record in a transaction and inserts it only if no write
// touched the key's shard since before that transaction began (the shard's
// epoch is unchanged), so a read that raced a write never leaves the old
// record behind: either the insert is refused, or it happened before the
// writer's invalidation, which then removes it. Entries are immutable;
// readers get copies.
type recordCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.Mutex
	epoch uint64
	m     map[string]any // *store.Token or *store.Enrollment
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
		c.shards[i].m = make(map[string]any)
	}
	return c
}

func (c *recordCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the cached record of key, or the shard's epoch to pass to
// put after reading the record.
func (c *recordCache) get(key []byte) (rec any, epoch uint64) {
	s := c.shard(key)
	s.mu.Lock()
	rec, epoch = s.m[string(key)], s.epoch
	s.mu.Unlock()
	return rec, epoch
}

// put caches rec under key unless a write touched the shard since epoch.
func (c *recordCache) put(key []byte, epoch uint64, rec any) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != epoch {
		return
	}
	if _, ok := s.m[string(key)]; !ok && len(s.m) >= c.perShard {
		// Evict an arbitrary entry: map iteration starts at a random
		// place, which is good enough for a cache whose misses cost one
		// read.
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[string(key)] = rec
}

// invalidate drops keys after a write committed (or failed: dropping is
// always safe).
func (c *recordCache) invalidate(keys []string) {
	for _, k := range keys {
		s := c.shard([]byte(k))
		s.mu.Lock()
		s.epoch++
		delete(s.m, k)
		s.mu.Unlock()
	}
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

// writeLog remembers, per open read-write transaction, the cached kinds of
// keys it wrote, so that update can invalidate them after the commit.
type writeLog struct {
	mu sync.Mutex
	m  map[*badgerdb.Txn][]string
}

// wrote records that txn writes key (a token or enrollment record).
func (s *Store) wrote(txn *badgerdb.Txn, key []byte) {
	if s.cache == nil {
		return
	}
	s.writes.mu.Lock()
	if s.writes.m == nil {
		s.writes.m = make(map[*badgerdb.Txn][]string)
	}
	s.writes.m[txn] = append(s.writes.m[txn], string(key))
	s.writes.mu.Unlock()
}

// committed invalidates what txn wrote and forgets it.
func (s *Store) committed(txn *badgerdb.Txn) {
	if s.cache == nil || txn == nil {
		return
	}
	s.writes.mu.Lock()
	keys := s.writes.m[txn]
	delete(s.writes.m, txn)
	s.writes.mu.Unlock()
	s.cache.invalidate(keys)
}

// lookupCached serves Lookup from the cache when it holds both records;
// ok is false on a miss.
func (s *Store) lookupCached(eKey, tKey []byte) (e *store.Enrollment, t *store.Token, ok bool) {
	rec, epoch := s.cache.get(eKey)
	ce, _ := rec.(*store.Enrollment)
	if ce == nil {
		return nil, nil, false
	}
	if tKey != nil {
		rec, _ := s.cache.get(tKey)
		ct, _ := rec.(*store.Token)
		if ct == nil {
			return nil, nil, false
		}
		// The pair must be one the store held at one moment: if a write
		// touched the enrollment's shard meanwhile (a bind writes both
		// records), read both again.
		if _, now := s.cache.get(eKey); now != epoch {
			return nil, nil, false
		}
		tc := *ct
		t = &tc
	}
	ec := *ce
	return &ec, t, true
}
