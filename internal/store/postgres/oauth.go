package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/mdmauth/mdmauth/internal/store"
)

// errNoFamilyID is returned by CreateFamily for a family without an id.
var errNoFamilyID = errors.New("postgres: family id is empty")

// CreateCode stores a new authorization code. ErrExists if a code with
// the hash is kept, used or not, expired or not.
func (s *Store) CreateCode(ctx context.Context, c *store.Code) error {
	rec := *c
	args, err := codeArgs(&rec)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, s.q.codeCreate, append(args, s.now())...)
		if err != nil {
			return maybeApplied(err)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrExists
		}
		return nil
	})
}

// UpdateCode applies fn to the code atomically: the row is locked while fn
// runs, so of concurrent redemptions on any instance the later ones see
// the first. fn may run more than once. Expired and used codes are passed
// to fn like any other, until a minute past their expiry.
func (s *Store) UpdateCode(ctx context.Context, h store.Hash, fn func(*store.Code) error) (*store.Code, error) {
	var out *store.Code
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var rec []byte
		if err := tx.QueryRow(ctx, s.q.codeLock, h[:], s.now()).Scan(&rec); err != nil {
			return notFound(err)
		}
		c, err := decodeCode(h, rec)
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return callerErr(err)
		}
		c.Hash = h
		args, err := codeArgs(c)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.codeUpdate, args...); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateFamily stores a new token family. ErrExists if the id is taken.
func (s *Store) CreateFamily(ctx context.Context, f *store.Family) error {
	if f.ID == "" {
		return errNoFamilyID
	}
	rec := *f
	args, err := s.familyArgs(&rec)
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, s.q.familyCreate, append(args, s.now())...)
		if err != nil {
			return maybeApplied(err)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrExists
		}
		return nil
	})
}

// Family returns the family with that id, revoked or not, expired or not,
// until its retention ends; store.ErrNotFound otherwise.
func (s *Store) Family(ctx context.Context, id string) (*store.Family, error) {
	var f *store.Family
	err := s.idempotent(ctx, func(ctx context.Context) error {
		var rec []byte
		if err := s.pool.QueryRow(ctx, s.q.familyGet, key(id), s.now()).Scan(&rec); err != nil {
			return notFound(err)
		}
		var err error
		f, err = decodeFamily(id, rec)
		return err
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// UpdateFamily applies fn to the family atomically, the row locked while
// fn runs: of concurrent rotations with one refresh token on any
// instance, the later ones see the first. fn may run more than once. The
// record is always stored under id, whatever ID fn sets.
func (s *Store) UpdateFamily(ctx context.Context, id string, fn func(*store.Family) error) (*store.Family, error) {
	var out *store.Family
	err := s.tx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var rec []byte
		if err := tx.QueryRow(ctx, s.q.familyLock, key(id), s.now()).Scan(&rec); err != nil {
			return notFound(err)
		}
		f, err := decodeFamily(id, rec)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return callerErr(err)
		}
		f.ID = id
		args, err := s.familyArgs(f)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.q.familyUpdate, args...); err != nil {
			return err
		}
		out = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TokensForFamily lists the access tokens issued in the family, in hash
// order, revoked and expired ones included until their retention ends.
// An empty id lists nothing.
func (s *Store) TokensForFamily(ctx context.Context, id string) ([]*store.Token, error) {
	if id == "" {
		return nil, s.check(ctx)
	}
	return s.listTokens(ctx, s.q.tokensForFamily, key(id), s.now())
}
