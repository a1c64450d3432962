package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mdmauth/mdmauth/internal/store"
)

// PurgeStats says what one Purge did.
type PurgeStats struct {
	// Skipped is set when another Store (in this process or another)
	// held the purge lock: it is purging, and this run did nothing.
	Skipped bool
	// Rows deleted per table, and the DELETE statements that did it.
	LoginStates, Codes, Tokens, Families int64
	Batches                              int
}

// purgeLoop purges every interval until Close. Failures are logged: the
// next run tries again.
func (s *Store) purgeLoop(every time.Duration) {
	defer s.bg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		st, err := s.Purge(s.stopCtx)
		switch {
		case err != nil && !errors.Is(err, store.ErrClosed) && s.stopCtx.Err() == nil:
			s.log.Warn("postgres: purge failed", "schema", s.schema, "err", err)
		case err == nil && st.LoginStates+st.Codes+st.Tokens+st.Families > 0:
			s.log.Debug("postgres: purged", "schema", s.schema, "login_states", st.LoginStates,
				"codes", st.Codes, "tokens", st.Tokens, "families", st.Families)
		}
	}
}

// Purge deletes the rows past their time by the store's clock (see the
// package documentation), in batches of at most PurgeBatch rows, each
// batch its own statement under OpTimeout, until none is left or ctx is
// done. Only one Store on the schema purges at a time: while another
// holds the purge lock, Purge returns at once with Skipped set. The
// background purge calls it every PurgeInterval.
func (s *Store) Purge(ctx context.Context) (PurgeStats, error) {
	var st PurgeStats
	if err := s.enter(ctx); err != nil {
		return st, err
	}
	defer s.ops.Done()
	step := func(f func(ctx context.Context) error) error {
		octx, cancel := context.WithTimeout(ctx, s.opTimeout)
		defer cancel()
		if err := f(octx); err != nil {
			return s.mapErr(ctx, err)
		}
		return nil
	}
	if err := step(s.ready); err != nil {
		return st, err
	}
	var conn *pgxpool.Conn
	if err := step(func(ctx context.Context) error {
		var err error
		conn, err = s.pool.Acquire(ctx)
		return err
	}); err != nil {
		return st, err
	}
	// A session lock on this connection, so one purge at a time; if it
	// cannot be released the connection is closed, which releases it.
	var locked bool
	err := step(func(ctx context.Context) error {
		return conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", s.purgeKey).Scan(&locked)
	})
	if err != nil || !locked {
		conn.Release()
		st.Skipped = err == nil
		return st, err
	}
	defer func() {
		err := step(func(ctx context.Context) error {
			_, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", s.purgeKey)
			return err
		})
		if err != nil {
			_ = conn.Hijack().Close(context.Background())
			return
		}
		conn.Release()
	}()
	for _, t := range []struct {
		sql string
		n   *int64
	}{
		{s.q.purgeLogin, &st.LoginStates},
		{s.q.purgeCodes, &st.Codes},
		{s.q.purgeTokens, &st.Tokens},
		{s.q.purgeFamilies, &st.Families},
	} {
		cutoff := s.now()
		if t.sql == s.q.purgeLogin {
			cutoff = cutoff.Add(-loginStateGrace)
		}
		for {
			if s.isClosed() {
				return st, store.ErrClosed
			}
			var n int64
			err := step(func(ctx context.Context) error {
				tag, err := conn.Exec(ctx, t.sql, cutoff, s.batch)
				n = tag.RowsAffected()
				return err
			})
			if err != nil {
				return st, err
			}
			st.Batches++
			*t.n += n
			if n < int64(s.batch) {
				break
			}
		}
	}
	return st, nil
}
