package postgres

import (
	"context"
	"errors"

	"github.com/mdmauth/mdmauth/internal/store"
)

// errEmptySecret is returned when a generator produces no bytes.
var errEmptySecret = errors.New("postgres: secret generator returned no bytes")

// Secret returns the secret stored under name, creating it with gen on
// first use. Concurrent first calls, on any instance, may each run gen,
// but only the first value inserted is stored and returned to all.
func (s *Store) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	out, err := s.secret(ctx, name)
	if err != nil || out != nil {
		return out, err
	}
	fresh, err := gen()
	if err != nil {
		return nil, err
	}
	if len(fresh) == 0 {
		return nil, errEmptySecret
	}
	// Inserting again what may have been inserted changes nothing.
	err = s.idempotent(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, s.q.secretInsert, key(name), fresh)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Whoever inserted first, this reads the stored value.
	out, err = s.secret(ctx, name)
	if err == nil && out == nil {
		err = store.ErrNotFound // a secret is never deleted
	}
	return out, err
}

// secret reads a secret; nil without error if absent.
func (s *Store) secret(ctx context.Context, name string) ([]byte, error) {
	var out []byte
	err := s.idempotent(ctx, func(ctx context.Context) error {
		out = nil
		rows, err := s.pool.Query(ctx, s.q.secretGet, key(name))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := rows.Scan(&out); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	return out, err
}
