package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// step is one schema migration. Its SQL names tables as {s}.name, {s}
// standing for the quoted schema. Steps are applied in version order and
// never change once released: a new schema is a new step, additive so
// that the previous release keeps working on it.
type step struct {
	version int
	name    string
	sql     string
}

// steps are the migrations, in version order.
var steps = []step{
	{1, "initial", `
CREATE TABLE {s}.tokens (
	hash          bytea PRIMARY KEY CHECK (length(hash) = 32),
	enrollment_id bytea,
	family_id     bytea,
	iss           bytea,
	sub           bytea,
	expires_at    timestamptz,
	revoked_at    timestamptz,
	purge_after   timestamptz,
	rec           bytea NOT NULL
);
CREATE INDEX tokens_enrollment_idx ON {s}.tokens (enrollment_id, hash) WHERE enrollment_id IS NOT NULL;
CREATE INDEX tokens_family_idx ON {s}.tokens (family_id, hash) WHERE family_id IS NOT NULL;
CREATE INDEX tokens_owner_idx ON {s}.tokens (iss, sub, hash) WHERE iss IS NOT NULL;
CREATE INDEX tokens_purge_idx ON {s}.tokens (purge_after) WHERE purge_after IS NOT NULL;

CREATE TABLE {s}.enrollments (
	id    bytea PRIMARY KEY,
	iss   bytea,
	sub   bytea,
	state text NOT NULL,
	rec   bytea NOT NULL
);
CREATE INDEX enrollments_owner_idx ON {s}.enrollments (iss, sub, id) WHERE iss IS NOT NULL;

CREATE TABLE {s}.login_states (
	key        bytea PRIMARY KEY,
	expires_at timestamptz NOT NULL,
	rec        bytea NOT NULL
);
CREATE INDEX login_states_expiry_idx ON {s}.login_states (expires_at);

CREATE TABLE {s}.codes (
	hash        bytea PRIMARY KEY CHECK (length(hash) = 32),
	expires_at  timestamptz NOT NULL,
	purge_after timestamptz NOT NULL,
	rec         bytea NOT NULL
);
CREATE INDEX codes_purge_idx ON {s}.codes (purge_after);

CREATE TABLE {s}.families (
	id          bytea PRIMARY KEY,
	iss         bytea,
	sub         bytea,
	expires_at  timestamptz,
	revoked_at  timestamptz,
	purge_after timestamptz,
	rec         bytea NOT NULL
);
CREATE INDEX families_owner_idx ON {s}.families (iss, sub, id) WHERE iss IS NOT NULL;
CREATE INDEX families_purge_idx ON {s}.families (purge_after) WHERE purge_after IS NOT NULL;

CREATE TABLE {s}.secrets (
	name  bytea PRIMARY KEY,
	value bytea NOT NULL
);
`},
}

// SchemaVersion is the schema version this build migrates to.
func SchemaVersion() int { return steps[len(steps)-1].version }

// migration is one run of migrate, which operations wait for.
type migration struct {
	done chan struct{}
	err  error
}

// ready returns once the schema is migrated. The first call starts a
// migration run in the background, under MigrateTimeout and not under
// ctx, so that an impatient operation does not abort it; every caller
// waits for that run, at most until its ctx is done. A failed run is
// forgotten, so the next operation starts another.
func (s *Store) ready(ctx context.Context) error {
	if s.migrated.Load() {
		return nil
	}
	s.migMu.Lock()
	if s.migrated.Load() {
		s.migMu.Unlock()
		return nil
	}
	run := s.migRun
	if run == nil {
		run = &migration{done: make(chan struct{})}
		s.migRun = run
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			ctx, cancel := context.WithTimeout(s.stopCtx, s.migTimeout)
			err := s.migrate(ctx)
			cancel()
			s.migMu.Lock()
			if err == nil {
				s.migrated.Store(true)
			} else if now := time.Now(); now.Sub(s.migWarned) >= time.Minute {
				// Once a minute: while the database is down every
				// operation tries again.
				s.migWarned = now
				s.log.Warn("postgres: schema migration failed; retried by the next operation", "schema", s.schema, "err", err)
			}
			run.err = err
			s.migRun = nil
			s.migMu.Unlock()
			close(run.done)
		}()
	}
	s.migMu.Unlock()
	select {
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the schema migration: %w", ctx.Err())
	}
}

// Migrate applies the schema migrations now, if the first operation has
// not done so already. Operations do it on their own; Migrate is for a
// deployment step or a command that wants the errors early. It waits for
// the run at most until ctx is done.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.ops.Done()
	if err := s.ready(ctx); err != nil {
		return s.mapErr(ctx, err)
	}
	return nil
}

// migrate creates the schema if missing and applies the steps it lacks,
// all in one transaction under the schema's migration lock.
func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.migrateKey); err != nil {
			return err
		}
		// CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even
		// when the schema exists; a schema an administrator made for
		// the gateway needs no more than its own privileges.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", s.schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA "+s.q.schema); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, s.q.expand(`CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`)); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, s.q.expand("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations")).Scan(&current); err != nil {
			return err
		}
		if latest := SchemaVersion(); current > latest {
			s.log.Warn("postgres: the schema is newer than this build; using it as it is", "schema", s.schema, "version", current, "known", latest)
			return nil
		}
		for _, st := range steps {
			if st.version <= current {
				continue
			}
			if _, err := tx.Exec(ctx, s.q.expand(st.sql)); err != nil {
				return fmt.Errorf("migration %d (%s): %w", st.version, st.name, err)
			}
			if _, err := tx.Exec(ctx, s.q.expand("INSERT INTO {s}.schema_migrations (version, name) VALUES ($1, $2)"), st.version, st.name); err != nil {
				return err
			}
			s.log.Info("postgres: schema migrated", "schema", s.schema, "version", st.version, "name", st.name)
		}
		return nil
	})
}
