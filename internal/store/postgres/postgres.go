// Package postgres is the store.Store backend for several gateways sharing
// one fleet: every record lives in PostgreSQL (or an engine speaking its
// protocol), so any instance can serve any step of a sign-in, and a token
// issued, bound or revoked by one instance is seen by all of them on
// their very next request.
//
// # Using it
//
// Open parses the DSN and returns at once, without network I/O: the
// gateway provisions and starts while the database is down. The schema is
// created and migrated on first use, and again on the next operation if
// that failed. Every operation runs under Options.OpTimeout, so a dead or
// unreachable database fails requests quickly instead of holding them;
// those failures wrap store.ErrUnavailable (and a full disk on the
// database server store.ErrNoSpace), which callers answer with 503, never
// with a challenge that would prompt users during an outage. Recovery is
// automatic: once the database answers again the next operation succeeds,
// without reopening the store.
//
//	s, err := postgres.Open(ctx, postgres.Options{DSN: dsn, Logger: log})
//	...
//	defer s.Close()
//
// The DSN is anything pgx accepts (URL or key=value, with the pool_* and
// default_query_exec_mode settings of pgxpool; behind a transaction-mode
// connection pooler use default_query_exec_mode=exec or simple_protocol).
// All tables live in one schema (Options.Schema, default "mdmauth"), so
// the gateway can share a database with NanoMDM. Migrate applies the
// migrations explicitly (for a CLI, or a deployment step that wants
// errors early); it is never needed.
//
// # Schema
//
// Each table keeps the record's JSON, the same encoding the Badger backend
// uses, in a bytea column rec, next to the indexed columns that queries
// need. Keys, issuers and subjects are bytea: they are arbitrary bytes to
// the store (zero bytes included), and bytea orders them as Go compares
// strings, which the scans promise. To read a record in psql:
// convert_from(rec, 'UTF8')::json.
//
//	schema_migrations (version, name, applied_at)
//	tokens       (hash PK, enrollment_id, family_id, iss, sub, expires_at, revoked_at, purge_after, rec)
//	enrollments  (id PK, iss, sub, state, rec)
//	login_states (key PK, expires_at, rec)
//	codes        (hash PK, expires_at, purge_after, rec)
//	families     (id PK, iss, sub, expires_at, revoked_at, purge_after, rec)
//	secrets      (name PK, value)
//
// with indexes for every listing: tokens by enrollment, by family and by
// owner, enrollments and families by owner (iss, sub; NULL for records
// without an owner, which belong to no one), and the purge times.
// Migrations are numbered SQL steps compiled into the package. Each runs
// in one transaction under a transaction-level advisory lock derived from
// the schema name, so instances starting together apply each step once.
// Steps are additive, so that instances of the previous release keep
// working during a rolling upgrade; a schema newer than this build is
// used as it is, with a warning.
//
// # Consistency across instances
//
// Every read-modify-write (UpdateToken, UpdateEnrollment, Bind,
// UpdateCode, UpdateFamily) is one transaction that locks the rows it
// read (SELECT ... FOR UPDATE) before calling the update function, so a
// concurrent attempt on any instance waits and then sees the result:
// single use of codes and refresh tokens holds across instances. A
// transaction that fails on a serialization failure or deadlock (40001,
// 40P01), or on a unique violation when two instances create the same
// enrollment at once, is retried a bounded number of times, so update
// functions may run more than once and must not have side effects.
// TakeLoginState is one DELETE ... RETURNING: of concurrent takes exactly
// one gets the state. Creates are INSERT ... ON CONFLICT.
//
// # Failures
//
// When the database ends a connection (a restart, a crash, a failover),
// the pool drops all of its connections, which are likely gone too, and
// the operation runs once more on a fresh one, unless it was a
// single-statement write whose commit may have happened: that fails with
// store.ErrUnavailable rather than, say, a create reported as ErrExists by
// its own second attempt. A database that refuses connections or does
// not answer in time fails the operation at once, without retries. When
// the caller's context ends first, its error is returned, not
// ErrUnavailable. A write that returned is as durable as the database's
// settings make it (synchronous_commit on, the default, for no loss).
//
// # No lookup cache
//
// Lookup, the MDM hot path, is one statement (two scalar subqueries read
// in one snapshot), one round trip once the connection has prepared it.
// There is deliberately no in-process cache: with a database over the
// network the round trip dominates, and a cache would only save decoding
// JSON while needing cross-instance invalidation (LISTEN/NOTIFY, and a
// flush whenever notifications may have been lost). Without one, a
// revoked token is refused on the very next request on every instance,
// with nothing that can go stale.
//
// # Time and purging
//
// Every expiry and retention decision uses Options.Now, never the
// database's clock. Expired records are invisible to reads before they
// are purged, with the same rules as the Badger backend: login states at
// their expiry; authorization codes a minute after it; tokens
// TokenRetention after they expire or are revoked, whichever is first;
// token families TokenRetention after they expire or are revoked,
// whichever is last. Enrollments and secrets are never purged. A
// background task deletes what is past those times every PurgeInterval,
// in batches of PurgeBatch rows (each its own short statement); a
// session advisory lock lets one instance purge at a time while the
// others skip.
//
// Scans read page by page (keyset pagination, each page one statement)
// rather than in one long transaction: each page is a consistent
// snapshot, and a record written during a scan may or may not be seen.
// Their functions run between pages, holding no connection, and may call
// the store.
// Dump reads one snapshot (a read-only repeatable-read transaction).
// Backups are the database's job: the store does not implement
// store.Backuper.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Defaults for Options.
const (
	// DefaultSchema is the default Options.Schema.
	DefaultSchema = "mdmauth"
	// DefaultOpTimeout is the default Options.OpTimeout.
	DefaultOpTimeout = 5 * time.Second
	// DefaultMigrateTimeout is the default Options.MigrateTimeout.
	DefaultMigrateTimeout = 2 * time.Minute
	// DefaultPurgeInterval is the default Options.PurgeInterval.
	DefaultPurgeInterval = time.Minute
	// DefaultPurgeBatch is the default Options.PurgeBatch.
	DefaultPurgeBatch = 1000
	// DefaultTokenRetention is the default Options.TokenRetention, as for
	// the Badger backend.
	DefaultTokenRetention = 30 * 24 * time.Hour
)

// maxAttempts bounds how often an operation is tried when it fails in a
// way that a new attempt may cure (serialization failure, deadlock, a
// concurrent insert of the same key).
const maxAttempts = 10

// Options configure Open.
type Options struct {
	// DSN is the PostgreSQL connection string (URL or key=value), with
	// pgxpool's pool_* settings if wanted. Required.
	DSN string
	// Schema is the schema that holds the tables, created if missing;
	// default DefaultSchema.
	Schema string
	// Now is the clock for every expiry decision; default time.Now.
	Now func() time.Time
	// Logger receives background failures (purge, migrations); nil
	// discards them.
	Logger *slog.Logger
	// MaxConns bounds the connection pool; zero means the DSN's
	// pool_max_conns, else pgxpool's default (the larger of 4 and the
	// number of CPUs).
	MaxConns int32
	// OpTimeout bounds every operation, its wait for a connection
	// included (for scans and Dump: every page); default
	// DefaultOpTimeout. It also bounds connecting, unless the DSN sets
	// connect_timeout.
	OpTimeout time.Duration
	// MigrateTimeout bounds a migration run, which goes on in the
	// background when the operation that started it gives up; default
	// DefaultMigrateTimeout.
	MigrateTimeout time.Duration
	// PurgeInterval is the period of the background purge; default
	// DefaultPurgeInterval, negative disables it (Purge still works).
	PurgeInterval time.Duration
	// PurgeBatch is the most rows one purge statement deletes; default
	// DefaultPurgeBatch.
	PurgeBatch int
	// TokenRetention is how long a token record is kept after it expires
	// or is revoked, whichever is first, and a token family record after
	// it expires or is revoked, whichever is last; zero or negative means
	// DefaultTokenRetention.
	TokenRetention time.Duration
	// Tracer, if set, traces every statement (pgx.QueryTracer; pgxpool's
	// acquire and release tracers too if it implements them).
	Tracer pgx.QueryTracer
}

// Store is a store.Store on PostgreSQL. It is safe for concurrent use, by
// any number of Stores in any number of processes on the same schema.
type Store struct {
	pool       *pgxpool.Pool
	schema     string
	q          queries
	now        func() time.Time
	log        *slog.Logger
	opTimeout  time.Duration
	migTimeout time.Duration
	batch      int
	retention  time.Duration
	purgeKey   int64
	migrateKey int64

	// mu guards closed: operations check it and register in ops under a
	// read lock, Close sets it under the write lock and then waits for
	// ops, so the pool is never closed under a running operation.
	mu     sync.RWMutex
	closed bool
	ops    sync.WaitGroup

	// Schema migration, run once by the first operation (see ready).
	migrated  atomic.Bool
	migMu     sync.Mutex
	migRun    *migration
	migWarned time.Time // wall clock of the last warning of a failed run

	// Background work (purge, migration runs) stops with stopCtx and
	// is counted in bg.
	stop    chan struct{}
	stopCtx context.Context
	cancel  context.CancelFunc
	bg      sync.WaitGroup
	once    sync.Once
}

var _ store.Store = (*Store)(nil)

// Open prepares a store on the database o.DSN names. It does not connect:
// the first operation does, and applies the schema migrations.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.DSN == "" {
		return nil, errors.New("postgres: Options.DSN is empty")
	}
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if strings.ContainsRune(o.Schema, 0) {
		return nil, errors.New("postgres: Options.Schema contains a zero byte")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.MigrateTimeout <= 0 {
		o.MigrateTimeout = DefaultMigrateTimeout
	}
	if o.PurgeInterval == 0 {
		o.PurgeInterval = DefaultPurgeInterval
	}
	if o.PurgeBatch <= 0 {
		o.PurgeBatch = DefaultPurgeBatch
	}
	if o.TokenRetention <= 0 {
		o.TokenRetention = DefaultTokenRetention
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx's parse errors leave the password out.
		return nil, fmt.Errorf("postgres: DSN: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.MinConns, cfg.MinIdleConns = 0, 0 // no connection before the first operation
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = o.OpTimeout
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = max(o.OpTimeout/5, 100*time.Millisecond)
	}
	if o.Tracer != nil {
		cfg.ConnConfig.Tracer = o.Tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: pool: %w", err)
	}
	s := &Store{
		pool:       pool,
		schema:     o.Schema,
		q:          newQueries(pgx.Identifier{o.Schema}.Sanitize()),
		now:        o.Now,
		log:        o.Logger,
		opTimeout:  o.OpTimeout,
		migTimeout: o.MigrateTimeout,
		batch:      o.PurgeBatch,
		retention:  o.TokenRetention,
		purgeKey:   lockKey("purge", o.Schema),
		migrateKey: lockKey("migrate", o.Schema),
		stop:       make(chan struct{}),
	}
	s.stopCtx, s.cancel = context.WithCancel(context.Background())
	if o.PurgeInterval > 0 {
		s.bg.Add(1)
		go s.purgeLoop(o.PurgeInterval)
	}
	return s, nil
}

// lockKey is the advisory lock key of one kind of work on one schema, so
// that gateways on different schemas of one database do not contend.
func lockKey(what, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mdmauth/" + what + "/"))
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

// Close stops the background purge, waits for running operations and
// closes the pool. Later calls return nil; every other method then
// returns store.ErrClosed.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.cancel()
		s.ops.Wait()
		s.bg.Wait()
		s.pool.Close()
	})
	return nil
}

// Ping reports whether the database answers, with the schema in place.
func (s *Store) Ping(ctx context.Context) error {
	return s.idempotent(ctx, func(ctx context.Context) error { return s.pool.Ping(ctx) })
}

// enter starts an operation: it fails if ctx is done or the store is
// closed, and otherwise holds off Close until the caller calls s.ops.Done.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	s.ops.Add(1)
	return nil
}

// isClosed reports whether Close has begun; long operations check it
// between steps.
func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// attempt is one try of an operation under the operation's context.
type attempt func(ctx context.Context) error

// idempotent runs an operation that may run again after losing its
// connection at any point (a read, or a write of a value that is the same
// the second time): retried once after that.
func (s *Store) idempotent(ctx context.Context, f attempt) error { return s.run(ctx, true, f) }

// write runs a single-statement write: retried only when the statement
// cannot have reached the database.
func (s *Store) write(ctx context.Context, f attempt) error { return s.run(ctx, false, f) }

// run runs f under the operation timeout, after the schema is in place,
// and tries it again when it failed in a way a new attempt may cure.
// idempotent says that f may run again after losing its connection at
// any point.
func (s *Store) run(ctx context.Context, idempotent bool, f attempt) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.ops.Done()
	octx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	if err := s.ready(octx); err != nil {
		return s.mapErr(ctx, err)
	}
	for n := 1; ; n++ {
		err := f(octx)
		if err == nil {
			return nil
		}
		if !s.retry(err, n, idempotent) || octx.Err() != nil {
			return s.mapErr(ctx, err)
		}
		backoff := time.Duration(min(n, 5)) * time.Millisecond
		t := time.NewTimer(backoff/2 + rand.N(backoff))
		select {
		case <-octx.Done():
			t.Stop()
			return s.mapErr(ctx, err)
		case <-t.C:
		}
	}
}

// tx runs fn in a read-committed transaction, as an operation: retried on
// serialization failures, deadlocks and unique violations (a concurrent
// insert of the same key), and after losing the connection before the
// commit. fn's own errors end it and are returned unchanged.
func (s *Store) tx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return s.run(ctx, true, func(ctx context.Context) error {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return err
		}
		if err := fn(ctx, tx); err != nil {
			// Under the operation's context: once that is done pgx
			// closes the connection, which ends the transaction too.
			_ = tx.Rollback(ctx)
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			// A commit that lost its connection may have happened.
			return maybeApplied(err)
		}
		return nil
	})
}

// fnError carries an error of a caller's function through tx unchanged.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }
func (e fnError) Unwrap() error { return e.err }

// callerErr marks err, returned by a caller's function, to be returned
// unchanged.
func callerErr(err error) error {
	if err == nil {
		return nil
	}
	return fnError{err}
}

// recordError is a record the store cannot decode.
type recordError struct{ err error }

func (e recordError) Error() string { return "postgres: " + e.err.Error() }
func (e recordError) Unwrap() error { return e.err }

// appliedError is a connection failure after a write was sent: the write
// may have happened, so it is not tried again.
type appliedError struct{ err error }

func (e appliedError) Error() string { return e.err.Error() }
func (e appliedError) Unwrap() error { return e.err }

// maybeApplied marks err, from a write, as possibly applied unless the
// database reported it (then the statement failed) or pgx knows nothing
// was sent.
func maybeApplied(err error) error {
	var pgErr *pgconn.PgError
	if err == nil || isOurs(err) || errors.As(err, &pgErr) || pgconn.SafeToRetry(err) {
		return err
	}
	return appliedError{err}
}

// retry reports whether the n-th attempt's err may be cured by another.
func (s *Store) retry(err error, n int, idempotent bool) bool {
	if n >= maxAttempts || isOurs(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "40001", pgErr.Code == "40P01", pgErr.Code == "23505":
			// Serialization failure, deadlock, a concurrent insert of
			// the same key: the transaction was rolled back.
			return true
		case strings.HasPrefix(pgErr.Code, "57P"), strings.HasPrefix(pgErr.Code, "08"):
			// The server ended the session (a restart, a crash, an
			// administrator) instead of answering: the statement did
			// not commit. The pool's other connections are likely gone
			// too. Once, on a fresh connection.
			var connErr *pgconn.ConnectError
			if errors.As(err, &connErr) {
				return false
			}
			s.pool.Reset()
			return n == 1
		}
		return false
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// The database cannot be reached or is too slow: fail fast.
		return false
	}
	// A connection that broke, typically one the pool kept across a
	// database restart; the others are likely broken too. Once, on a
	// fresh one, unless a write may have happened.
	s.pool.Reset()
	var applied appliedError
	if errors.As(err, &applied) {
		return false
	}
	return n == 1 && (idempotent || pgconn.SafeToRetry(err))
}

// isOurs reports errors the store or the caller made, which are returned
// as they are.
func isOurs(err error) bool {
	var fe fnError
	var re recordError
	return errors.As(err, &fe) || errors.As(err, &re) ||
		errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) ||
		errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrClosed)
}

// mapErr turns the error of an operation into what the store returns:
// the caller's function's error unchanged, the caller's context error if
// that is done, store.ErrUnavailable for a database that cannot be
// reached or did not answer in time, store.ErrNoSpace for a full disk on
// the database server.
func (s *Store) mapErr(ctx context.Context, err error) error {
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	if isOurs(err) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		s.pool.Reset()
		return fmt.Errorf("postgres: %w: %w", store.ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "53100": // disk_full
			return fmt.Errorf("postgres: %w: %w", store.ErrNoSpace, err)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "57P"), // shutting down, starting up
			pgErr.Code == "57014",                // query cancelled: the operation timed out
			pgErr.Code == "53300",                // too many connections
			pgErr.Code == "53200",                // out of memory
			pgErr.Code == "25006",                // read-only transaction: a standby, during a failover
			strings.HasPrefix(pgErr.Code, "58"):  // system or I/O error
			return fmt.Errorf("postgres: %w: %w", store.ErrUnavailable, err)
		}
		return fmt.Errorf("postgres: %w", err)
	}
	// A connection that broke or an operation that timed out.
	return fmt.Errorf("postgres: %w: %w", store.ErrUnavailable, err)
}
