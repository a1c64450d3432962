package badger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// minKeep is the shortest time a written record is kept by Badger's TTL,
// even if its retention ended before it was written.
const minKeep = time.Minute

// CreateToken stores a new token. ErrExists if the hash is present.
func (s *Store) CreateToken(ctx context.Context, t *store.Token) error {
	rec := *t
	return s.create(ctx, tokenKey(rec.Hash), func(txn *badgerdb.Txn) error { return s.putToken(txn, nil, &rec) })
}

// create runs put in a read-write transaction unless key already exists
// (store.ErrExists).
func (s *Store) create(ctx context.Context, key []byte, put func(*badgerdb.Txn) error) error {
	return s.update(ctx, func(txn *badgerdb.Txn) error {
		_, err := txn.Get(key)
		switch {
		case err == nil:
			return store.ErrExists
		case !errors.Is(err, badgerdb.ErrKeyNotFound):
			return err
		}
		return put(txn)
	})
}

// Token returns the token with hash h, expired and revoked ones included,
// until its retention ends.
func (s *Store) Token(ctx context.Context, h store.Hash) (*store.Token, error) {
	var t *store.Token
	err := s.view(ctx, func(txn *badgerdb.Txn) error {
		var err error
		t, err = getToken(txn, h)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// UpdateToken applies fn to the token atomically. fn may run more than once
// if concurrent writers conflict; only its last successful run is written.
func (s *Store) UpdateToken(ctx context.Context, h store.Hash, fn func(*store.Token) error) (*store.Token, error) {
	var out *store.Token
	err := s.update(ctx, func(txn *badgerdb.Txn) error {
		old, err := getToken(txn, h)
		if err != nil {
			return err
		}
		t := *old
		if err := fn(&t); err != nil {
			return err
		}
		t.Hash = h
		if err := s.putToken(txn, old, &t); err != nil {
			return err
		}
		out = &t
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// getToken reads the token with hash h; store.ErrNotFound if absent.
func getToken(txn *badgerdb.Txn, h store.Hash) (*store.Token, error) {
	t := &store.Token{}
	if err := getJSON(txn, tokenKey(h), t, "token "+h.ID()); err != nil {
		return nil, err
	}
	t.Hash = h
	return t, nil
}

// putToken writes t and keeps the enrollment, family and grant indexes in
// step with it; old is the record being replaced, nil for a new token.
func (s *Store) putToken(txn *badgerdb.Txn, old, t *store.Token) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	exp := s.tokenExpiry(t)
	key := tokenKey(t.Hash)
	if err := txn.SetEntry(&badgerdb.Entry{Key: key, Value: v, ExpiresAt: exp}); err != nil {
		return err
	}
	s.wrote(txn, key)
	if old != nil && old.EnrollmentID != "" && old.EnrollmentID != t.EnrollmentID {
		if err := txn.Delete(indexKey(old.EnrollmentID, t.Hash)); err != nil {
			return err
		}
	}
	if t.EnrollmentID != "" {
		// Rewritten with every token write so it expires with the token.
		if err := txn.SetEntry(&badgerdb.Entry{Key: indexKey(t.EnrollmentID, t.Hash), ExpiresAt: exp}); err != nil {
			return err
		}
	}
	if old != nil && old.FamilyID != "" && old.FamilyID != t.FamilyID {
		if err := txn.Delete(familyIndexKey(old.FamilyID, t.Hash)); err != nil {
			return err
		}
	}
	if t.FamilyID != "" {
		// Likewise rewritten with every token write.
		if err := txn.SetEntry(&badgerdb.Entry{Key: familyIndexKey(t.FamilyID, t.Hash), ExpiresAt: exp}); err != nil {
			return err
		}
	}
	return putGrant(txn, tokenGrantKey(old), tokenGrantKey(t), exp)
}

// putGrant keeps one grant index entry in step with its record: the entry
// under oldKey, the record's previous one (nil for none), is deleted unless
// it is newKey, and the entry under newKey (nil for none) is rewritten with
// the record's expiry exp, so that it expires with the record.
func putGrant(txn *badgerdb.Txn, oldKey, newKey []byte, exp uint64) error {
	if oldKey != nil && !bytes.Equal(oldKey, newKey) {
		if err := txn.Delete(oldKey); err != nil {
			return err
		}
	}
	if newKey == nil {
		return nil
	}
	return txn.SetEntry(&badgerdb.Entry{Key: newKey, ExpiresAt: exp})
}

// listTokens lists, in hash order, the tokens named by the index keys under
// prefix for which keep reports true. Index entries of purged tokens are
// skipped.
func (s *Store) listTokens(ctx context.Context, prefix []byte, keep func(*store.Token) bool) ([]*store.Token, error) {
	return listIndexed(ctx, s, prefix, func(txn *badgerdb.Txn, key []byte) (*store.Token, error) {
		h, ok := indexHash(prefix, key)
		if !ok {
			return nil, store.ErrNotFound // another enrollment's or family's entry
		}
		return getToken(txn, h)
	}, keep)
}

// listIndexed lists, in key order, the records that read finds for the
// index keys under prefix and keep accepts (the index is written with its
// records, so keep only guards against a damaged database). read returns
// store.ErrNotFound for a key that names no record, one purged a moment
// before its index entry or one that is not this index's; those are
// skipped.
func listIndexed[T any](ctx context.Context, s *Store, prefix []byte, read func(txn *badgerdb.Txn, key []byte) (T, error), keep func(T) bool) ([]T, error) {
	var out []T
	err := s.view(ctx, func(txn *badgerdb.Txn) error {
		out = nil
		it := txn.NewIterator(badgerdb.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			v, err := read(txn, it.Item().Key())
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if keep(v) {
				out = append(out, v)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tokenExpiry is the Badger TTL (Unix seconds on the wall clock, 0 for
// none) of a token record: TokenRetention after it expires or is revoked,
// whichever comes first. The remaining time is measured on the store's
// clock and then applied to the wall clock Badger uses.
func (s *Store) tokenExpiry(t *store.Token) uint64 {
	end := t.ExpiresAt
	if !t.RevokedAt.IsZero() && (end.IsZero() || t.RevokedAt.Before(end)) {
		end = t.RevokedAt
	}
	if end.IsZero() {
		return 0
	}
	return wallExpiry(end.Add(s.retention).Sub(s.now()))
}

// wallExpiry converts a time to keep into a Badger expiry, rounding up to
// whole seconds and keeping at least minKeep.
func wallExpiry(keep time.Duration) uint64 {
	keep = max(keep, minKeep)
	return uint64(time.Now().Add(keep).Unix()) + 1
}
