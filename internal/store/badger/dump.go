package badger

import (
	"context"
	"errors"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

var (
	_ store.Dumper = (*Store)(nil)
	_ store.Loader = (*Store)(nil)
)

// Dump calls fn for every secret, enrollment, token family and token, in
// that order, from one read-only transaction (one snapshot). Login states
// and authorization codes are not dumped. It runs as a long operation,
// like the scans: a Close ends it with store.ErrClosed.
func (s *Store) Dump(ctx context.Context, fn func(store.Record) error) error {
	leave, err := s.enterLong(ctx)
	if err != nil {
		return err
	}
	defer leave()
	return s.db.View(func(txn *badgerdb.Txn) error {
		each := func(kind byte, rec func(*badgerdb.Item) (store.Record, bool, error)) error {
			return eachRecord(txn, kind, func(item *badgerdb.Item) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				if s.closing.Load() {
					return store.ErrClosed
				}
				r, ok, err := rec(item)
				if err != nil || !ok {
					return err
				}
				return fn(r)
			})
		}
		err := each(kindSecret, func(item *badgerdb.Item) (store.Record, bool, error) {
			v, err := item.ValueCopy(nil)
			if err != nil {
				return store.Record{}, false, err
			}
			return store.Record{Secret: &store.NamedSecret{Name: string(item.Key()[1:]), Value: v}}, true, nil
		})
		if err != nil {
			return err
		}
		err = each(kindEnrollment, func(item *badgerdb.Item) (store.Record, bool, error) {
			e := new(store.Enrollment)
			if err := decode(item, e, "enrollment"); err != nil {
				return store.Record{}, false, err
			}
			e.ID = string(item.Key()[1:])
			return store.Record{Enrollment: e}, true, nil
		})
		if err != nil {
			return err
		}
		err = each(kindFamily, func(item *badgerdb.Item) (store.Record, bool, error) {
			f := new(store.Family)
			if err := decode(item, f, "family"); err != nil {
				return store.Record{}, false, err
			}
			f.ID = string(item.Key()[1:])
			return store.Record{Family: f}, true, nil
		})
		if err != nil {
			return err
		}
		return each(kindToken, func(item *badgerdb.Item) (store.Record, bool, error) {
			t := new(store.Token)
			if len(item.Key()) != 1+len(t.Hash) {
				return store.Record{}, false, nil // not a token record; never written
			}
			copy(t.Hash[:], item.Key()[1:])
			if err := decode(item, t, "token "+t.Hash.ID()); err != nil {
				return store.Record{}, false, err
			}
			return store.Record{Token: t}, true, nil
		})
	})
}

// Load writes the record r holds as the store's own operations would,
// replacing one with the same key and keeping the indexes in step; tokens
// and token families get the retention they would have had if written
// here.
func (s *Store) Load(ctx context.Context, r store.Record) error {
	kind, err := r.Kind()
	if err != nil {
		return err
	}
	switch kind {
	case store.KindToken:
		rec := *r.Token
		return s.update(ctx, func(txn *badgerdb.Txn) error {
			old, err := getToken(txn, rec.Hash)
			if errors.Is(err, store.ErrNotFound) {
				old, err = nil, nil
			}
			if err != nil {
				return err
			}
			return s.putToken(txn, old, &rec)
		})
	case store.KindEnrollment:
		rec := *r.Enrollment
		return s.update(ctx, func(txn *badgerdb.Txn) error {
			cur, err := getEnrollment(txn, rec.ID)
			if err != nil {
				return err
			}
			_, err = s.putEnrollment(txn, rec.ID, cur, &rec)
			return err
		})
	case store.KindFamily:
		if r.Family.ID == "" {
			return errNoFamilyID
		}
		rec := *r.Family
		return s.update(ctx, func(txn *badgerdb.Txn) error {
			old, err := getFamily(txn, rec.ID)
			if errors.Is(err, store.ErrNotFound) {
				old, err = nil, nil
			}
			if err != nil {
				return err
			}
			return s.putFamily(txn, familyGrantKey(old), &rec)
		})
	default:
		if len(r.Secret.Value) == 0 {
			return errEmptySecret
		}
		v := append([]byte(nil), r.Secret.Value...)
		return s.update(ctx, func(txn *badgerdb.Txn) error {
			return txn.Set(secretKey(r.Secret.Name), v)
		})
	}
}
