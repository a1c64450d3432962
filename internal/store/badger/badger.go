// Package badger is the embedded default store.Store backend, built on the
// Badger key-value store. It keeps everything in one directory and needs no
// other service.
//
// Every write is synced to disk before it returns. Updates run in optimistic
// transactions that are retried when they conflict with a concurrent one, so
// the functions passed to UpdateToken, UpdateEnrollment, Bind, UpdateCode and
// UpdateFamily may run more than once and must not have side effects.
// Enrollments are also indexed by owner (issuer and subject) for
// EnrollmentsForUser; like enrollments, that index never expires. Tokens
// and token families are indexed by owner too, for TokensForUser and
// FamiliesForUser; those entries expire with their records.
// Records are purged by Badger's TTL: login states and authorization codes
// shortly after they expire, tokens TokenRetention after they expire or are
// revoked, token families TokenRetention after they expire or are revoked,
// whichever is later; every expiry decision itself uses Options.Now.
//
// Backup streams a consistent copy of the database (Badger's own backup
// format) while the store is in use; Restore loads one into an empty
// directory, offline.
package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Defaults for Options.
const (
	// DefaultTokenRetention is the default Options.TokenRetention.
	DefaultTokenRetention = 30 * 24 * time.Hour
	// DefaultGCInterval is the default Options.GCInterval.
	DefaultGCInterval = 10 * time.Minute
	// DefaultMinFreeSpace is the default Options.MinFreeSpace: room for
	// the write-ahead log file in use (twice the 8 MiB memtable) to be
	// written to its end, a memtable flush and some compaction.
	DefaultMinFreeSpace = 64 << 20
)

// maxAttempts bounds how often a transaction is retried after a conflict
// with a concurrent one.
const maxAttempts = 32

// Options configure Open.
type Options struct {
	// Dir holds the database. It is created if missing.
	Dir string
	// Now is the clock for every expiry decision; default time.Now.
	Now func() time.Time
	// Logger receives Badger's warnings and errors and the store's own
	// background failures; nil discards them.
	Logger *slog.Logger
	// TokenRetention is how long a token record is kept after it expires or
	// is revoked, whichever is first, and a token family record after it
	// expires or is revoked, whichever is last; zero or negative means 30
	// days.
	TokenRetention time.Duration
	// GCInterval is the period of value-log garbage collection; default 10
	// minutes, negative disables it.
	GCInterval time.Duration
	// CacheEntries bounds the in-process cache of decoded tokens and
	// enrollments that serves Lookup, the MDM hot path; zero means
	// DefaultCacheEntries, negative disables the cache. Every write of a
	// record invalidates it once committed (only this process can open
	// the directory), so the cache never serves a stale record.
	CacheEntries int
	// MinFreeSpace is the free space (bytes) the store's file system must
	// keep: below it every write is refused with store.ErrNoSpace (reads go
	// on) and value-log GC pauses. Badger writes its write-ahead log
	// through a memory map of a sparse file, and a write there on a full
	// disk kills the process (SIGBUS) instead of failing: the reserve
	// makes the store fail closed first. Zero means DefaultMinFreeSpace,
	// negative disables the check.
	MinFreeSpace int64
}

// Store is a store.Store on a Badger database.
type Store struct {
	db        *badgerdb.DB
	dir       string
	now       func() time.Time
	log       *slog.Logger
	retention time.Duration
	cache     *recordCache
	writes    writeLog
	space     spaceGuard

	// mu guards closed: operations hold it shared, Close exclusively, so
	// the database is never closed under a running operation.
	mu     sync.RWMutex
	closed bool
	// Long operations (scans and backups) run without holding mu, so that
	// their callbacks may use the store and a pending Close does not stall
	// every other operation behind them. They are counted in long and
	// watch closing: Close sets it, waits for them to end, then closes
	// the database.
	long    sync.WaitGroup
	closing atomic.Bool

	stop   chan struct{}
	gcDone chan struct{}
	once   sync.Once
}

var _ store.Store = (*Store)(nil)

// Open opens (or creates) the database in o.Dir.
func Open(o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("badger: Options.Dir is empty")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TokenRetention <= 0 {
		o.TokenRetention = DefaultTokenRetention
	}
	if o.GCInterval == 0 {
		o.GCInterval = DefaultGCInterval
	}
	db, err := badgerdb.Open(dbOptions(o.Dir, o.Logger))
	if err != nil {
		return nil, fmt.Errorf("badger: open %s: %w", o.Dir, err)
	}
	if err := backfillUserIndex(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("badger: open %s: user index: %w", o.Dir, err)
	}
	if err := backfillGrantIndex(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("badger: open %s: grant index: %w", o.Dir, err)
	}
	s := &Store{
		db:        db,
		dir:       o.Dir,
		now:       o.Now,
		log:       o.Logger,
		retention: o.TokenRetention,
		cache:     newRecordCache(o.CacheEntries),
		space:     newSpaceGuard(o.Dir, o.MinFreeSpace),
		stop:      make(chan struct{}),
		gcDone:    make(chan struct{}),
	}
	if o.GCInterval > 0 {
		go s.runGC(o.GCInterval)
	} else {
		close(s.gcDone)
	}
	return s, nil
}

// dbOptions sizes Badger for a small embedded database: the whole data set
// is tokens, enrollments, sign-in states, codes and token families, a few
// hundred bytes each.
func dbOptions(dir string, log *slog.Logger) badgerdb.Options {
	return badgerdb.DefaultOptions(dir).
		// Every write this package makes must survive a crash once it
		// returns: issued tokens, bindings, revocations, enrollment states,
		// consumed sign-in states, redeemed codes, refresh-token rotations. With SyncWrites the write-ahead log is
		// fsynced before a commit becomes visible, so no other request can
		// act on a write that a crash would then undo (an explicit Sync after
		// commit leaves that window open). Writes are rare next to token
		// lookups, and Badger's single writer fsyncs concurrent commits as
		// one batch.
		WithSyncWrites(true).
		WithLogger(badgerLogger{log}).
		WithMetricsEnabled(false).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		WithNumCompactors(2). // the minimum Badger accepts
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumGoroutines(2).
		WithCompactL0OnClose(true)
}

// runGC reclaims value-log space until Close.
func (s *Store) runGC(every time.Duration) {
	defer close(s.gcDone)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		// GC writes before it frees: not below the free-space reserve.
		if err := s.space.check(); err != nil {
			s.log.Warn("badger: value log GC skipped", "err", err)
			continue
		}
		// One call rewrites at most one file; repeat while it finds work.
		for {
			err := s.db.RunValueLogGC(0.5)
			if err == nil {
				select {
				case <-s.stop:
					return
				default:
					continue
				}
			}
			if !errors.Is(err, badgerdb.ErrNoRewrite) && !errors.Is(err, badgerdb.ErrRejected) {
				s.log.Warn("badger: value log GC failed", "err", err)
			}
			break
		}
	}
}

// Close stops background work and closes the database. Later calls return
// nil.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		<-s.gcDone
		s.mu.Lock()
		s.closed = true
		s.closing.Store(true)
		s.mu.Unlock()
		// Operations that start now fail; long ones end at their next step.
		s.long.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("badger: close: %w", cerr)
		}
	})
	return err
}

// Ping reports whether the database is open and readable.
func (s *Store) Ping(ctx context.Context) error {
	return s.view(ctx, func(txn *badgerdb.Txn) error {
		_, err := txn.Get(pingKey)
		if errors.Is(err, badgerdb.ErrKeyNotFound) {
			return nil
		}
		return err
	})
}

// enter starts an operation: it fails if ctx is done or the store is
// closed, and otherwise holds off Close until the caller calls s.leave.
// (A method value would allocate on every call, and this is the hot path.)
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	return nil
}

// leave ends an operation started by a successful enter.
func (s *Store) leave() { s.mu.RUnlock() }

// enterLong starts a long operation: it fails if ctx is done or the store
// is closed, and otherwise holds off closing the database until the
// returned func is called. Unlike enter it holds no lock, so the operation
// must check s.closing between steps and stop once it is set.
func (s *Store) enterLong(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	// Under mu, so Close's Wait cannot miss it.
	s.long.Add(1)
	return s.long.Done, nil
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(*badgerdb.Txn) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	return s.db.View(fn)
}

// update runs fn in a read-write transaction and commits it, retrying from
// scratch when a concurrent transaction wrote a key fn read. fn must not
// have side effects outside the transaction.
func (s *Store) update(ctx context.Context, fn func(*badgerdb.Txn) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	if err := s.space.check(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		var txn *badgerdb.Txn
		err := s.db.Update(func(t *badgerdb.Txn) error { txn = t; return fn(t) })
		// After the commit (or its failure): the next Lookup reads the
		// records this transaction wrote.
		s.committed(txn)
		if !errors.Is(err, badgerdb.ErrConflict) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("badger: gave up after %d conflicting attempts: %w", attempt, err)
		}
		// Back off a little, with jitter, so contenders spread out.
		backoff := time.Duration(min(attempt, 10)) * 200 * time.Microsecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff/2 + rand.N(backoff)):
		}
	}
}

// Compact merges the database's levels into the last one, as background
// compaction eventually would. Use it after a bulk load (a restore, a
// benchmark's fleet) so that the server does not start by compacting,
// which holds large buffers for a while.
func (s *Store) Compact(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	if err := s.db.Flatten(2); err != nil {
		return fmt.Errorf("badger: compact: %w", err)
	}
	return nil
}
