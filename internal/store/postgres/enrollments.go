package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Enrollment returns the enrollment with that id, or store.ErrNotFound.
func (s *Store) Enrollment(ctx context.Context, id string) (*store.Enrollment, error) {
	var e *store.Enrollment
	err := s.idempotent(ctx, func(ctx context.Context) error {
		var rec []byte
		if err := s.pool.QueryRow(ctx, s.q.enrollmentGet, key(id)).Scan(&rec); err != nil {
			return notFound(err)
		}
		var err error
		e, err = decodeEnrollment(id, rec)
		return err
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// UpdateEnrollment applies fn atomically; see store.Enrollments. An
// existing row is locked while fn runs; when there is none, two instances
// creating the same enrollment at once collide on its key and the loser
// runs fn again on the winner's record. The record is always stored under
// id, whatever ID fn sets.
func (s *Store) UpdateEnrollment(ctx context.Context, id string, fn func(*store.Enrollment) (*store.Enrollment, error)) (*store.Enrollment, error) {
	var out *store.Enrollment
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		cur, err := s.lockEnrollment(ctx, tx, id)
		if err != nil {
			return err
		}
		next, err := fn(clone(cur))
		if err != nil {
			return callerErr(err)
		}
		if next == nil {
			out = cur
			return nil
		}
		out, err = s.putEnrollment(ctx, tx, id, cur != nil, next)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Bind loads and locks the token and the enrollment, lets fn change both
// and writes them in one transaction. The token is stored bound to
// enrollmentID; the enrollment fn returns (if not nil) is stored under
// enrollmentID. fn may run more than once.
func (s *Store) Bind(ctx context.Context, h store.Hash, enrollmentID string, fn func(*store.Token, *store.Enrollment) (*store.Enrollment, error)) (*store.Token, *store.Enrollment, error) {
	var (
		outT *store.Token
		outE *store.Enrollment
	)
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// Token first, then enrollment, as every transaction that
		// locks both.
		t, err := s.lockToken(ctx, tx, h)
		if err != nil {
			return err
		}
		cur, err := s.lockEnrollment(ctx, tx, enrollmentID)
		if err != nil {
			return err
		}
		next, err := fn(t, clone(cur))
		if err != nil {
			return callerErr(err)
		}
		t.Hash = h
		t.EnrollmentID = enrollmentID
		if err := s.updateToken(ctx, tx, t); err != nil {
			return err
		}
		outT, outE = t, cur
		if next != nil {
			outE, err = s.putEnrollment(ctx, tx, enrollmentID, cur != nil, next)
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return outT, outE, nil
}

// Lookup reads the enrollment and, unless h is zero, the live token with
// that hash in one statement, so in one snapshot and one round trip;
// either is nil when absent.
func (s *Store) Lookup(ctx context.Context, enrollmentID string, h store.Hash) (*store.Enrollment, *store.Token, error) {
	var hash []byte // NULL matches no token
	if h != (store.Hash{}) {
		hash = h[:]
	}
	var (
		e *store.Enrollment
		t *store.Token
	)
	err := s.idempotent(ctx, func(ctx context.Context) error {
		var erec, trec []byte
		if err := s.pool.QueryRow(ctx, s.q.lookup, key(enrollmentID), hash, s.now()).Scan(&erec, &trec); err != nil {
			return err
		}
		e, t = nil, nil
		var err error
		if erec != nil {
			if e, err = decodeEnrollment(enrollmentID, erec); err != nil {
				return err
			}
		}
		if trec != nil {
			t, err = decodeToken(h, trec)
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return e, t, nil
}

// TokensForEnrollment lists the tokens bound to the enrollment, in hash
// order, until their retention ends.
func (s *Store) TokensForEnrollment(ctx context.Context, id string) ([]*store.Token, error) {
	return s.listTokens(ctx, s.q.tokensForEnrollment, key(id), s.now())
}

// EnrollmentsForUser lists the enrollments owned by (iss, sub), in any
// state, in id order. An empty iss and sub list nothing.
func (s *Store) EnrollmentsForUser(ctx context.Context, iss, sub string) ([]*store.Enrollment, error) {
	if !hasOwner(iss, sub) {
		// Still reports a done ctx or a closed store.
		return nil, s.check(ctx)
	}
	var out []*store.Enrollment
	err := s.idempotent(ctx, func(ctx context.Context) error {
		out = nil
		return s.each(ctx, s.pool, s.q.enrollmentsForUser, []any{key(iss), key(sub)}, func(k, rec []byte) error {
			e, err := decodeEnrollment(string(k), rec)
			if err == nil {
				out = append(out, e)
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockEnrollment reads and locks the enrollment; nil without error when
// absent.
func (s *Store) lockEnrollment(ctx context.Context, tx pgx.Tx, id string) (*store.Enrollment, error) {
	var rec []byte
	err := tx.QueryRow(ctx, s.q.enrollmentLock, key(id)).Scan(&rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeEnrollment(id, rec)
}

// putEnrollment writes e under id, over the locked row if exists, else as
// a new row (a concurrent insert of the same id fails the transaction
// with a unique violation, and it is retried). It returns what it wrote.
func (s *Store) putEnrollment(ctx context.Context, tx pgx.Tx, id string, exists bool, e *store.Enrollment) (*store.Enrollment, error) {
	args, out, err := enrollmentArgs(id, e)
	if err != nil {
		return nil, err
	}
	sql := s.q.enrollmentInsert
	if exists {
		sql = s.q.enrollmentUpdate
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return nil, err
	}
	return out, nil
}

// querier is a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// each runs a query of key and rec pairs on db and calls fn for each row.
func (s *Store) each(ctx context.Context, db querier, sql string, args []any, fn func(k, rec []byte) error) error {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k, rec []byte
		if err := rows.Scan(&k, &rec); err != nil {
			return err
		}
		if err := fn(k, rec); err != nil {
			return err
		}
	}
	return rows.Err()
}

// check reports what an operation would fail with before touching the
// database: a done ctx or a closed store.
func (s *Store) check(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	s.ops.Done()
	return nil
}

// clone returns a copy of e, or nil.
func clone(e *store.Enrollment) *store.Enrollment {
	if e == nil {
		return nil
	}
	c := *e
	return &c
}
