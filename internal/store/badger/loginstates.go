package badger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// loginStateGrace is how long past its expiry Badger keeps a login state,
// so its TTL (wall clock) never hides a state the store's clock still
// considers live. Expiry itself is always decided by the store's clock.
const loginStateGrace = time.Minute

// loginRecord is the stored form of a store.LoginState.
type loginRecord struct {
	Data      []byte    `json:"d"`
	ExpiresAt time.Time `json:"e"`
}

// PutLoginState stores ls under key. ErrExists if a live state holds key;
// an expired one is replaced.
func (s *Store) PutLoginState(ctx context.Context, key string, ls store.LoginState) error {
	v, err := json.Marshal(loginRecord{Data: ls.Data, ExpiresAt: ls.ExpiresAt})
	if err != nil {
		return err
	}
	k := loginStateKey(key)
	return s.update(ctx, func(txn *badgerdb.Txn) error {
		cur, err := getLoginState(txn, k)
		switch {
		case err == nil && s.now().Before(cur.ExpiresAt):
			return store.ErrExists
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
		exp := wallExpiry(ls.ExpiresAt.Sub(s.now()) + loginStateGrace)
		return txn.SetEntry(&badgerdb.Entry{Key: k, Value: v, ExpiresAt: exp})
	})
}

// TakeLoginState returns and deletes the state under key in one
// transaction. Concurrent takes conflict, and all but the first to commit
// retry and find it gone. An expired state is deleted and reported as
// ErrNotFound.
func (s *Store) TakeLoginState(ctx context.Context, key string) (store.LoginState, error) {
	k := loginStateKey(key)
	var (
		rec     loginRecord
		expired bool
	)
	err := s.update(ctx, func(txn *badgerdb.Txn) error {
		var err error
		rec, err = getLoginState(txn, k)
		if err != nil {
			return err
		}
		expired = !s.now().Before(rec.ExpiresAt)
		return txn.Delete(k)
	})
	if err != nil {
		return store.LoginState{}, err
	}
	if expired {
		return store.LoginState{}, store.ErrNotFound
	}
	return store.LoginState{Data: rec.Data, ExpiresAt: rec.ExpiresAt}, nil
}

// getLoginState reads a login state; store.ErrNotFound if absent.
func getLoginState(txn *badgerdb.Txn, k []byte) (loginRecord, error) {
	var rec loginRecord
	item, err := txn.Get(k)
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return rec, store.ErrNotFound
	}
	if err != nil {
		return rec, err
	}
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
		return rec, fmt.Errorf("badger: login state: %w", err)
	}
	return rec, nil
}
