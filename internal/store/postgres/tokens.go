package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store"
)

// CreateToken stores a new token. ErrExists if a live token has the hash;
// one past its retention is replaced.
func (s *Store) CreateToken(ctx context.Context, t *store.Token) error {
	rec := *t
	args, err := s.tokenArgs(&rec)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, s.q.tokenCreate, append(args, s.now())...)
		if err != nil {
			return maybeApplied(err)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrExists
		}
		return nil
	})
}

// Token returns the token with hash h, expired and revoked ones included,
// until its retention ends.
func (s *Store) Token(ctx context.Context, h store.Hash) (*store.Token, error) {
	var t *store.Token
	err := s.idempotent(ctx, func(ctx context.Context) error {
		var rec []byte
		if err := s.pool.QueryRow(ctx, s.q.tokenGet, h[:], s.now()).Scan(&rec); err != nil {
			return notFound(err)
		}
		var err error
		t, err = decodeToken(h, rec)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// UpdateToken applies fn to the token atomically: the row is locked while
// fn runs, so concurrent updates on any instance queue behind it. fn may
// run more than once; only its last successful run is written.
func (s *Store) UpdateToken(ctx context.Context, h store.Hash, fn func(*store.Token) error) (*store.Token, error) {
	var out *store.Token
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		t, err := s.lockToken(ctx, tx, h)
		if err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return callerErr(err)
		}
		t.Hash = h
		if err := s.updateToken(ctx, tx, t); err != nil {
			return err
		}
		out = t
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockToken reads and locks the live token with hash h; store.ErrNotFound
// if there is none.
func (s *Store) lockToken(ctx context.Context, tx pgx.Tx, h store.Hash) (*store.Token, error) {
	var rec []byte
	if err := tx.QueryRow(ctx, s.q.tokenLock, h[:], s.now()).Scan(&rec); err != nil {
		return nil, notFound(err)
	}
	return decodeToken(h, rec)
}

// updateToken writes t over its row.
func (s *Store) updateToken(ctx context.Context, tx pgx.Tx, t *store.Token) error {
	args, err := s.tokenArgs(t)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, s.q.tokenUpdate, args...)
	return err
}

// listTokens lists the tokens a statement selects (hash and rec), in the
// statement's order.
func (s *Store) listTokens(ctx context.Context, sql string, args ...any) ([]*store.Token, error) {
	var out []*store.Token
	err := s.idempotent(ctx, func(ctx context.Context) error {
		out = nil
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var hb, rec []byte
			if err := rows.Scan(&hb, &rec); err != nil {
				return err
			}
			h, err := hashOf(hb)
			if err != nil {
				return err
			}
			t, err := decodeToken(h, rec)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// notFound turns pgx.ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
