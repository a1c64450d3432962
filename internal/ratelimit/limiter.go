package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// DefaultMaxKeys is the number of keys a Limiter tracks when Config.MaxKeys
// is not set.
const DefaultMaxKeys = 100_000

const shardCount = 32

// Config configures a Limiter.
type Config struct {
	// Rate is the limit of each key; a disabled Rate allows everything.
	Rate Rate
	// MaxKeys bounds the keys tracked at once (default DefaultMaxKeys).
	// Past it the least recently seen key of a shard is forgotten, which
	// at worst gives that key a fresh bucket.
	MaxKeys int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Result is the outcome of Allow.
type Result struct {
	// OK is true when the event is allowed.
	OK bool
	// RetryAfter is, when refused, how long until one event is allowed.
	RetryAfter time.Duration
	// First is true for the first refusal of a key after an allowed event
	// (or since it was first seen): callers log only these, so that a
	// flood logs once per key, not once per request.
	First bool
}

// Limiter is a token-bucket rate limiter per key. Keys are hashed with a
// per-limiter random seed and only the 64-bit hash is kept, so long or
// sensitive keys (user identifiers) cost nothing extra and are not stored.
// It is safe for concurrent use.
type Limiter struct {
	rate   Rate
	perNs  float64 // tokens per nanosecond
	burst  float64
	now    func() time.Time
	seed   maphash.Seed
	shards [shardCount]shard
}

type shard struct {
	mu    sync.Mutex
	max   int
	index map[uint64]int32
	slab  []entry
	head  int32 // most recently used, -1 when empty
	tail  int32 // least recently used
}

type entry struct {
	key        uint64
	tokens     float64
	last       int64 // unix nanoseconds of the last refill
	denied     bool
	prev, next int32
}

// New returns a Limiter. With a disabled rate it allows everything and
// tracks nothing.
func New(cfg Config) *Limiter {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{rate: cfg.Rate, now: cfg.Now, seed: maphash.MakeSeed()}
	if cfg.Rate.Enabled() {
		l.perNs = float64(cfg.Rate.Events) / float64(cfg.Rate.Per)
		l.burst = float64(cfg.Rate.burst())
	}
	per := (cfg.MaxKeys + shardCount - 1) / shardCount
	for i := range l.shards {
		l.shards[i] = shard{max: per, index: map[uint64]int32{}, head: -1, tail: -1}
	}
	return l
}

// Rate returns the limiter's rate.
func (l *Limiter) Rate() Rate { return l.rate }

// Allow takes one event for key.
func (l *Limiter) Allow(key string) Result {
	if l == nil || !l.rate.Enabled() {
		return Result{OK: true}
	}
	h := maphash.String(l.seed, key)
	s := &l.shards[h%shardCount]
	now := l.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[h]
	if ok {
		s.unlink(i)
		e := &s.slab[i]
		if el := now - e.last; el > 0 {
			e.tokens = math.Min(l.burst, e.tokens+float64(el)*l.perNs)
			e.last = now
		}
	} else {
		i = s.alloc()
		s.slab[i] = entry{key: h, tokens: l.burst, last: now}
		s.index[h] = i
	}
	s.pushFront(i)
	e := &s.slab[i]
	if e.tokens >= 1 {
		e.tokens--
		e.denied = false
		return Result{OK: true}
	}
	wait := time.Duration(math.Ceil((1 - e.tokens) / l.perNs))
	first := !e.denied
	e.denied = true
	return Result{RetryAfter: wait, First: first}
}

// Len returns the number of keys tracked.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

// alloc returns a free slab slot, evicting the least recently used key
// when the shard is full.
func (s *shard) alloc() int32 {
	if len(s.slab) < s.max {
		s.slab = append(s.slab, entry{})
		return int32(len(s.slab) - 1)
	}
	i := s.tail
	s.unlink(i)
	delete(s.index, s.slab[i].key)
	return i
}

func (s *shard) unlink(i int32) {
	e := &s.slab[i]
	if e.prev >= 0 {
		s.slab[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.slab[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *shard) pushFront(i int32) {
	e := &s.slab[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.slab[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}
