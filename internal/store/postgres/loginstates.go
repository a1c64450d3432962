package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mdmauth/mdmauth/internal/store"
)

// PutLoginState stores ls under k. ErrExists if a live state holds k;
// an expired one is replaced.
func (s *Store) PutLoginState(ctx context.Context, k string, ls store.LoginState) error {
	rec, err := json.Marshal(loginRecord{Data: ls.Data, ExpiresAt: ls.ExpiresAt})
	if err != nil {
		return err
	}
	return s.write(ctx, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, s.q.loginPut, key(k), ls.ExpiresAt, rec, s.now())
		if err != nil {
			return maybeApplied(err)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrExists
		}
		return nil
	})
}

// TakeLoginState deletes the state under k and returns it, in one
// statement: of concurrent takes on any instance, exactly one gets it. An
// expired state is deleted too and reported as ErrNotFound.
func (s *Store) TakeLoginState(ctx context.Context, k string) (store.LoginState, error) {
	var (
		lr    loginRecord
		found bool
	)
	err := s.write(ctx, func(ctx context.Context) error {
		var rec []byte
		if err := s.pool.QueryRow(ctx, s.q.loginTake, key(k)).Scan(&rec); err != nil {
			return maybeApplied(notFound(err))
		}
		if err := json.Unmarshal(rec, &lr); err != nil {
			return recordError{fmt.Errorf("login state: %w", err)}
		}
		found = true
		return nil
	})
	if err != nil {
		return store.LoginState{}, err
	}
	// The store's clock decides, to the nanosecond.
	if !found || !s.now().Before(lr.ExpiresAt) {
		return store.LoginState{}, store.ErrNotFound
	}
	return store.LoginState{Data: lr.Data, ExpiresAt: lr.ExpiresAt}, nil
}

// CountLoginStates returns the number of login states that have not
// expired by the store's clock.
func (s *Store) CountLoginStates(ctx context.Context) (int, error) {
	var n int64
	err := s.idempotent(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, s.q.loginCount, s.now()).Scan(&n)
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
