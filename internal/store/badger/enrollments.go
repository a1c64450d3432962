package badger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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
		out, err = putEnrollment(txn, id, next)
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
			outE, err = putEnrollment(txn, enrollmentID, next)
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

// getEnrollment reads an enrollment; nil without error if absent.
func getEnrollment(txn *badgerdb.Txn, id string) (*store.Enrollment, error) {
	item, err := txn.Get(enrollmentKey(id))
	if errors.Is(err, badgerdb.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e := new(store.Enrollment)
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, e) }); err != nil {
		return nil, fmt.Errorf("badger: enrollment: %w", err)
	}
	e.ID = id
	return e, nil
}

// putEnrollment stores a copy of e under id and returns it.
func putEnrollment(txn *badgerdb.Txn, id string, e *store.Enrollment) (*store.Enrollment, error) {
	rec := *e
	rec.ID = id
	v, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	return &rec, txn.Set(enrollmentKey(id), v)
}

// clone returns a copy of e, or nil.
func clone(e *store.Enrollment) *store.Enrollment {
	if e == nil {
		return nil
	}
	c := *e
	return &c
}
