package badger

import (
	"context"
	"encoding/json"
	"errors"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Enrollment returns the enrollment with that id, or store.ErrNotFound.
func (s *Store) Enrollment(ctx context.Context, id string) (*store.Enrollment, error) {
	var e *store.Enrollment
	err := s.view(ctx, func(txn *badgerdb.Txn) error {
		var err error
		e, err = getEnrollment(txn, id)
		if err == nil && e == nil {
			err = store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// UpdateEnrollment applies fn atomically; see store.Enrollments. fn may run
// more than once if concurrent writers conflict. The record is always
// stored under id, whatever ID fn sets.
func (s *Store) UpdateEnrollment(ctx context.Context, id string, fn func(*store.Enrollment) (*store.Enrollment, error)) (*store.Enrollment, error) {
	var out *store.Enrollment
	err := s.update(ctx, func(txn *badgerdb.Txn) error {
		cur, err := getEnrollment(txn, id)
		if err != nil {
			return err
		}
		next, err := fn(clone(cur))
		if err != nil {
			return err
		}
		if next == nil {
			out = cur
			return nil
		}
		out, err = s.putEnrollment(txn, id, cur, next)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Bind loads the token and the enrollment, lets fn change both and writes
// them in one transaction. The token is stored bound to enrollmentID; the
// enrollment fn returns (if not nil) is stored under enrollmentID. fn may
// run more than once if concurrent writers conflict.
func (s *Store) Bind(ctx context.Context, h store.Hash, enrollmentID string, fn func(*store.Token, *store.Enrollment) (*store.Enrollment, error)) (*store.Token, *store.Enrollment, error) {
	var (
		outT *store.Token
		outE *store.Enrollment
	)
	err := s.update(ctx, func(txn *badgerdb.Txn) error {
		old, err := getToken(txn, h)
		if err != nil {
			return err
		}
		cur, err := getEnrollment(txn, enrollmentID)
		if err != nil {
			return err
		}
		t := *old
		next, err := fn(&t, clone(cur))
		if err != nil {
			return err
		}
		t.Hash = h
		t.EnrollmentID = enrollmentID
		if err := s.putToken(txn, old, &t); err != nil {
			return err
		}
		outT, outE = &t, cur
		if next != nil {
			outE, err = s.putEnrollment(txn, enrollmentID, cur, next)
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return outT, outE, nil
}

// TokensForEnrollment lists the tokens bound to the enrollment, in hash
// order. Purged tokens are left out.
func (s *Store) TokensForEnrollment(ctx context.Context, id string) ([]*store.Token, error) {
	return s.listTokens(ctx, indexPrefix(id), func(t *store.Token) bool { return t.EnrollmentID == id })
}

// EnrollmentsForUser lists the enrollments owned by (iss, sub), in any
// state, in id order. Enrollments without an owner belong to no one: an
// empty iss and sub list nothing.
func (s *Store) EnrollmentsForUser(ctx context.Context, iss, sub string) ([]*store.Enrollment, error) {
	if iss == "" && sub == "" {
		// Still reports a done ctx or a closed store.
		return nil, s.view(ctx, func(*badgerdb.Txn) error { return nil })
	}
	prefix := userIndexPrefix(iss, sub)
	return listIndexed(ctx, s, prefix, func(txn *badgerdb.Txn, key []byte) (*store.Enrollment, error) {
		e, err := getEnrollment(txn, string(key[len(prefix):]))
		if err == nil && e == nil {
			err = store.ErrNotFound
		}
		return e, err
	}, func(e *store.Enrollment) bool { return e.Issuer == iss && e.Subject == sub })
}

// Lookup reads the enrollment and, unless h is zero, the token in one
// read-only transaction; either is nil when absent. Records found are kept
// in the record cache, which the next writes of their keys invalidate.
func (s *Store) Lookup(ctx context.Context, enrollmentID string, h store.Hash) (*store.Enrollment, *store.Token, error) {
	eKey := enrollmentKey(enrollmentID)
	var tKey []byte
	if h != (store.Hash{}) {
		tKey = tokenKey(h)
	}
	var eEpoch, tEpoch uint64
	if s.cache != nil {
		if e, t, ok := s.lookupCached(eKey, tKey); ok {
			if err := s.enter(ctx); err != nil {
				return nil, nil, err
			}
			s.leave()
			return e, t, nil
		}
		// Taken before the read: see recordCache.
		_, eEpoch = s.cache.get(eKey)
		if tKey != nil {
			_, tEpoch = s.cache.get(tKey)
		}
	}
	var (
		e *store.Enrollment
		t *store.Token
	)
	err := s.view(ctx, func(txn *badgerdb.Txn) error {
		var err error
		if e, err = getEnrollment(txn, enrollmentID); err != nil {
			return err
		}
		if tKey == nil {
			return nil
		}
		t, err = getToken(txn, h)
		if errors.Is(err, store.ErrNotFound) {
			t, err = nil, nil
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if s.cache != nil {
		if e != nil {
			kept := *e
			s.cache.put(eKey, eEpoch, &kept)
		}
		if t != nil {
			kept := *t
			s.cache.put(tKey, tEpoch, &kept)
		}
	}
	return e, t, nil
}

// getEnrollment reads an enrollment; nil without error if absent.
func getEnrollment(txn *badgerdb.Txn, id string) (*store.Enrollment, error) {
	e := new(store.Enrollment)
	if err := getJSON(txn, enrollmentKey(id), e, "enrollment"); errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	e.ID = id
	return e, nil
}

// putEnrollment stores a copy of e under id and returns it. It keeps the
// user index in step: old is the record being replaced (nil for a new
// one), whose entry is deleted when the owner changed or was cleared.
func (s *Store) putEnrollment(txn *badgerdb.Txn, id string, old, e *store.Enrollment) (*store.Enrollment, error) {
	rec := *e
	rec.ID = id
	v, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	key := enrollmentKey(id)
	if err := txn.Set(key, v); err != nil {
		return nil, err
	}
	s.wrote(txn, key)
	if owned(old) && (old.Issuer != rec.Issuer || old.Subject != rec.Subject) {
		if err := txn.Delete(userIndexKey(old.Issuer, old.Subject, id)); err != nil {
			return nil, err
		}
	}
	if owned(&rec) {
		// Rewritten with every write, which also repairs a missing entry.
		if err := txn.Set(userIndexKey(rec.Issuer, rec.Subject, id), nil); err != nil {
			return nil, err
		}
	}
	return &rec, nil
}

// owned reports whether e exists and has an owner to be indexed under.
func owned(e *store.Enrollment) bool {
	return e != nil && (e.Issuer != "" || e.Subject != "")
}

// backfillUserIndex adds the user index entries of every enrollment once,
// for databases written before the index existed, and then records that
// it is complete. It runs in Open, before any other operation.
func backfillUserIndex(db *badgerdb.DB) error {
	return backfillIndex(db, userIndexMarker, func(txn *badgerdb.Txn) ([]*badgerdb.Entry, error) {
		var entries []*badgerdb.Entry
		err := eachRecord(txn, kindEnrollment, func(item *badgerdb.Item) error {
			var e store.Enrollment
			if err := decode(item, &e, "enrollment"); err != nil {
				return err
			}
			if owned(&e) {
				entries = append(entries, &badgerdb.Entry{Key: userIndexKey(e.Issuer, e.Subject, string(item.Key()[1:]))})
			}
			return nil
		})
		return entries, err
	})
}

// clone returns a copy of e, or nil.
func clone(e *store.Enrollment) *store.Enrollment {
	if e == nil {
		return nil
	}
	c := *e
	return &c
}
