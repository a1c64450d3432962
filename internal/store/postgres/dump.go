package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store"
)

var (
	_ store.Dumper = (*Store)(nil)
	_ store.Loader = (*Store)(nil)
)

// Dump calls fn for every secret, enrollment, token family and token, in
// that order, from one snapshot: a read-only repeatable-read transaction,
// read page by page (each page under OpTimeout), with fn called between
// pages. Records past their retention are left out, and so are login
// states and authorization codes. fn's errors are returned unchanged.
func (s *Store) Dump(ctx context.Context, fn func(store.Record) error) error {
	if err := s.enter(ctx); err != nil {
		return err
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
		return err
	}
	var tx pgx.Tx
	if err := step(func(ctx context.Context) error {
		var err error
		tx, err = s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		return err
	}); err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	page := func(ctx context.Context, sql string, args []any) ([]row, error) {
		var rows []row
		err := step(func(ctx context.Context) error {
			return s.each(ctx, tx, sql, args, func(k, rec []byte) error {
				rows = append(rows, row{k, rec})
				return nil
			})
		})
		return rows, err
	}
	// fn's errors pass through scanWith marked as the caller's.
	emit := func(r store.Record) (bool, error) {
		if err := fn(r); err != nil {
			return false, fnError{err}
		}
		return true, nil
	}
	scans := []struct {
		from, after string
		live        bool
		each        func(k, rec []byte) (bool, error)
	}{
		{s.q.secretsFrom, s.q.secretsAfter, false, func(k, v []byte) (bool, error) {
			return emit(store.Record{Secret: &store.NamedSecret{Name: string(k), Value: v}})
		}},
		{s.q.enrollmentsFrom, s.q.enrollmentsAfter, false, func(k, rec []byte) (bool, error) {
			e, err := decodeEnrollment(string(k), rec)
			if err != nil {
				return false, err
			}
			return emit(store.Record{Enrollment: e})
		}},
		{s.q.familiesFrom, s.q.familiesAfter, true, func(k, rec []byte) (bool, error) {
			f, err := decodeFamily(string(k), rec)
			if err != nil {
				return false, err
			}
			return emit(store.Record{Family: f})
		}},
		{s.q.tokensFrom, s.q.tokensAfter, true, func(k, rec []byte) (bool, error) {
			h, err := hashOf(k)
			if err != nil {
				return false, err
			}
			t, err := decodeToken(h, rec)
			if err != nil {
				return false, err
			}
			return emit(store.Record{Token: t})
		}},
	}
	for _, sc := range scans {
		if err := s.scanWith(ctx, page, sc.from, sc.after, []byte{}, sc.live, sc.each); err != nil {
			var fe fnError
			if errors.As(err, &fe) {
				return fe.err
			}
			return err
		}
	}
	return nil
}

// Load writes the record r holds, replacing one with the same key, with
// the columns (and so the indexes) the store's own operations would
// write; tokens and families get their retention by this store's clock
// and TokenRetention.
func (s *Store) Load(ctx context.Context, r store.Record) error {
	kind, err := r.Kind()
	if err != nil {
		return err
	}
	var (
		sql  string
		args []any
	)
	switch kind {
	case store.KindToken:
		sql = s.q.tokenUpsert
		args, err = s.tokenArgs(r.Token)
	case store.KindEnrollment:
		sql = s.q.enrollmentUpsert
		args, _, err = enrollmentArgs(r.Enrollment.ID, r.Enrollment)
	case store.KindFamily:
		if r.Family.ID == "" {
			return errNoFamilyID
		}
		sql = s.q.familyUpsert
		args, err = s.familyArgs(r.Family)
	default:
		if len(r.Secret.Value) == 0 {
			return errEmptySecret
		}
		sql = s.q.secretUpsert
		args = []any{key(r.Secret.Name), r.Secret.Value}
	}
	if err != nil {
		return err
	}
	// Writing the same record again is harmless: a write that may have
	// happened is tried again.
	return s.idempotent(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, sql, args...)
		return err
	})
}
