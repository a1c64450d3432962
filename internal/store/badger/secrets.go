package badger

import (
	"context"
	"errors"

	badgerdb "github.com/dgraph-io/badger/v4"
)

// errEmptySecret is returned when a generator produces no bytes.
var errEmptySecret = errors.New("badger: secret generator returned no bytes")

// Secret returns the secret stored under name, creating it with gen on
// first use. Concurrent first calls may each run gen, but only the first
// value committed is stored and returned to all of them.
func (s *Store) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	k := secretKey(name)
	var out []byte
	err := s.view(ctx, func(txn *badgerdb.Txn) error {
		var err error
		out, err = getSecret(txn, k)
		return err
	})
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
	err = s.update(ctx, func(txn *badgerdb.Txn) error {
		cur, err := getSecret(txn, k)
		if err != nil || cur != nil {
			out = cur
			return err
		}
		out = fresh
		return txn.Set(k, fresh)
	})
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), out...), nil
}

// getSecret reads a secret; nil without error if absent.
func getSecret(txn *badgerdb.Txn, k []byte) ([]byte, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}
