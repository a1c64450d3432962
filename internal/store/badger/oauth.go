package badger

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// codeGrace is how long past its expiry Badger keeps an authorization code,
// used or not, so that a replay shortly after expiry is still recognised.
const codeGrace = time.Minute

// errNoFamilyID is returned by CreateFamily for a family without an id.
var errNoFamilyID = errors.New("badger: family id is empty")

// CreateCode stores a new authorization code. ErrExists if the hash is
// present, whether the code there was used or has expired.
func (s *Store) CreateCode(ctx context.Context, c *store.Code) error {
	rec := *c
	return s.create(ctx, codeKey(rec.Hash), func(txn *badgerdb.Txn) error { return s.putCode(txn, &rec) })
}

// UpdateCode applies fn to the code atomically. fn may run more than once
// if concurrent writers conflict; only its last successful run is written.
// Expired and used codes are passed to fn like any other: the caller
// decides what they mean.
func (s *Store) UpdateCode(ctx context.Context, h store.Hash, fn func(*store.Code) error) (*store.Code, error) {
	var out *store.Code
	err := s.update(ctx, func(txn *badgerdb.Txn) error {
		c, err := getCode(txn, h)
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
		c.Hash = h
		if err := s.putCode(txn, c); err != nil {
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
	return s.create(ctx, familyKey(rec.ID), func(txn *badgerdb.Txn) error { return s.putFamily(txn, nil, &rec) })
}

// Family returns the family with that id, revoked or not, expired or not,
// until its retention ends; store.ErrNotFound otherwise.
func (s *Store) Family(ctx context.Context, id string) (*store.Family, error) {
	var f *store.Family
	err := s.view(ctx, func(txn *badgerdb.Txn) error {
		var err error
		f, err = getFamily(txn, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// UpdateFamily applies fn to the family atomically. fn may run more than
// once if concurrent writers conflict; only its last successful run is
// written. The record is always stored under id, whatever ID fn sets.
func (s *Store) UpdateFamily(ctx context.Context, id string, fn func(*store.Family) error) (*store.Family, error) {
	var out *store.Family
	err := s.update(ctx, func(txn *badgerdb.Txn) error {
		f, err := getFamily(txn, id)
		if err != nil {
			return err
		}
		oldGrant := familyGrantKey(f)
		if err := fn(f); err != nil {
			return err
		}
		f.ID = id
		if err := s.putFamily(txn, oldGrant, f); err != nil {
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
// order, revoked and expired ones included until they are purged. An empty
// id lists nothing: tokens outside any family are not indexed.
func (s *Store) TokensForFamily(ctx context.Context, id string) ([]*store.Token, error) {
	if id == "" {
		// Still reports a done ctx or a closed store.
		return nil, s.view(ctx, func(*badgerdb.Txn) error { return nil })
	}
	return s.listTokens(ctx, familyIndexPrefix(id), func(t *store.Token) bool { return t.FamilyID == id })
}

// getCode reads the code with hash h; store.ErrNotFound if absent.
func getCode(txn *badgerdb.Txn, h store.Hash) (*store.Code, error) {
	c := &store.Code{}
	if err := getJSON(txn, codeKey(h), c, "code "+h.ID()); err != nil {
		return nil, err
	}
	c.Hash = h
	return c, nil
}

// putCode writes c with its TTL.
func (s *Store) putCode(txn *badgerdb.Txn, c *store.Code) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	exp := wallExpiry(c.ExpiresAt.Add(codeGrace).Sub(s.now()))
	return txn.SetEntry(&badgerdb.Entry{Key: codeKey(c.Hash), Value: v, ExpiresAt: exp})
}

// getFamily reads the family with that id; store.ErrNotFound if absent.
func getFamily(txn *badgerdb.Txn, id string) (*store.Family, error) {
	f := new(store.Family)
	if err := getJSON(txn, familyKey(id), f, "family"); err != nil {
		return nil, err
	}
	f.ID = id
	return f, nil
}

// putFamily writes f under f.ID with its TTL and keeps its grant index
// entry in step; oldGrant is the entry of the record being replaced (nil
// for a new family or one without an owner).
func (s *Store) putFamily(txn *badgerdb.Txn, oldGrant []byte, f *store.Family) error {
	v, err := json.Marshal(f)
	if err != nil {
		return err
	}
	exp := s.familyExpiry(f)
	if err := txn.SetEntry(&badgerdb.Entry{Key: familyKey(f.ID), Value: v, ExpiresAt: exp}); err != nil {
		return err
	}
	return putGrant(txn, oldGrant, familyGrantKey(f), exp)
}

// familyExpiry is the Badger TTL (0 for none) of a family record:
// TokenRetention after it expires or is revoked, whichever comes last, so
// that a revoked family is remembered for as long as one that ran its
// course. Measured like tokenExpiry.
func (s *Store) familyExpiry(f *store.Family) uint64 {
	end := f.ExpiresAt
	if f.RevokedAt.After(end) {
		end = f.RevokedAt
	}
	if end.IsZero() {
		return 0
	}
	return wallExpiry(end.Add(s.retention).Sub(s.now()))
}
