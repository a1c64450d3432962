package badger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	badgerdb "github.com/dgraph-io/badger/v4"

	"github.com/mdmauth/mdmauth/internal/store"
)

// scanPrefetch is how many values a scan reads ahead.
const scanPrefetch = 100

// ScanEnrollments calls fn for each enrollment whose id is >= from, in
// ascending id (byte) order, until fn returns false. It reads one snapshot
// of the database. fn may call the store's methods other than Close, and
// sees its own writes there but not in the scan. A Close during the scan
// ends it with store.ErrClosed.
func (s *Store) ScanEnrollments(ctx context.Context, from string, fn func(*store.Enrollment) bool) error {
	return s.scan(ctx, kindEnrollment, []byte(from), func(item *badgerdb.Item) (bool, error) {
		e := new(store.Enrollment)
		if err := decode(item, e, "enrollment"); err != nil {
			return false, err
		}
		e.ID = string(item.Key()[1:])
		return fn(e), nil
	})
}

// ScanTokens calls fn for each token whose hash is >= from (compared as
// bytes, so a from of fewer than 32 bytes starts at the first hash with
// that prefix), in ascending hash order, until fn returns false. Revoked
// and expired tokens are included until they are purged. Like
// ScanEnrollments, it reads one snapshot.
func (s *Store) ScanTokens(ctx context.Context, from []byte, fn func(*store.Token) bool) error {
	return s.scan(ctx, kindToken, from, func(item *badgerdb.Item) (bool, error) {
		key := item.Key()
		var h store.Hash
		if len(key) != 1+len(h) {
			return true, nil // not a token record; never written
		}
		copy(h[:], key[1:])
		t := new(store.Token)
		if err := decode(item, t, "token "+h.ID()); err != nil {
			return false, err
		}
		t.Hash = h
		return fn(t), nil
	})
}

// ScanFamilies calls fn for each token family whose id is >= from, in
// ascending id (byte) order, until fn returns false. Revoked and expired
// families are included until they are purged. Like ScanEnrollments, it
// reads one snapshot.
func (s *Store) ScanFamilies(ctx context.Context, from string, fn func(*store.Family) bool) error {
	return s.scan(ctx, kindFamily, []byte(from), func(item *badgerdb.Item) (bool, error) {
		f := new(store.Family)
		if err := decode(item, f, "family"); err != nil {
			return false, err
		}
		f.ID = string(item.Key()[1:])
		return fn(f), nil
	})
}

// CountLoginStates returns the number of login states that have not
// expired by the store's clock. States already taken are gone and not
// counted.
func (s *Store) CountLoginStates(ctx context.Context) (int, error) {
	n := 0
	err := s.scan(ctx, kindLoginState, nil, func(item *badgerdb.Item) (bool, error) {
		var rec loginRecord
		if err := decode(item, &rec, "login state"); err != nil {
			return false, err
		}
		// Badger keeps a state a grace period past its expiry; the
		// store's clock decides.
		if s.now().Before(rec.ExpiresAt) {
			n++
		}
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// TokensForUser lists the tokens issued to (iss, sub), bound or not,
// revoked and expired ones included until they are purged, in hash order.
// Tokens without an owner belong to no one: an empty iss and sub list
// nothing.
func (s *Store) TokensForUser(ctx context.Context, iss, sub string) ([]*store.Token, error) {
	if !hasOwner(iss, sub) {
		// Still reports a done ctx or a closed store.
		return nil, s.view(ctx, func(*badgerdb.Txn) error { return nil })
	}
	return s.listTokens(ctx, grantPrefix(iss, sub, grantToken), func(t *store.Token) bool {
		return t.Issuer == iss && t.Subject == sub
	})
}

// FamiliesForUser lists the token families of (iss, sub), revoked and
// expired ones included until they are purged, in id order. An empty iss
// and sub list nothing.
func (s *Store) FamiliesForUser(ctx context.Context, iss, sub string) ([]*store.Family, error) {
	if !hasOwner(iss, sub) {
		return nil, s.view(ctx, func(*badgerdb.Txn) error { return nil })
	}
	prefix := grantPrefix(iss, sub, grantFamily)
	return listIndexed(ctx, s, prefix, func(txn *badgerdb.Txn, key []byte) (*store.Family, error) {
		return getFamily(txn, string(key[len(prefix):]))
	}, func(f *store.Family) bool { return f.Issuer == iss && f.Subject == sub })
}

// Size returns the disk space the files in the database directory occupy
// (their allocated blocks where the system reports them, else their
// lengths). It includes Badger's logs and not yet compacted data, so it is
// more than the size of the records.
func (s *Store) Size(ctx context.Context) (int64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	var n int64
	err := filepath.WalkDir(s.dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed by compaction meanwhile
		}
		if err != nil {
			return err
		}
		n += diskBytes(info)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("badger: size: %w", err)
	}
	return n, nil
}

// scan calls each for every item of the given kind whose key, after the
// kind byte, is >= from, in key order, in one read-only transaction. It
// stops when each returns false or an error, ctx is done or the store is
// being closed. It runs as a long operation, holding no lock.
func (s *Store) scan(ctx context.Context, kind byte, from []byte, each func(*badgerdb.Item) (bool, error)) error {
	leave, err := s.enterLong(ctx)
	if err != nil {
		return err
	}
	defer leave()
	prefix := []byte{kind}
	start := append([]byte{kind}, from...)
	return s.db.View(func(txn *badgerdb.Txn) error {
		it := txn.NewIterator(badgerdb.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: scanPrefetch})
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if s.closing.Load() {
				return store.ErrClosed
			}
			more, err := each(it.Item())
			if err != nil || !more {
				return err
			}
		}
		return nil
	})
}

// backfillGrantIndex adds the grant index entries of every token and token
// family once, for databases written before the index existed, with the
// expiry of their records, and then records that it is complete. It runs
// in Open, before any other operation.
func backfillGrantIndex(db *badgerdb.DB) error {
	return backfillIndex(db, grantIndexMarker, func(txn *badgerdb.Txn) ([]*badgerdb.Entry, error) {
		var entries []*badgerdb.Entry
		add := func(key []byte, item *badgerdb.Item) {
			if key != nil {
				entries = append(entries, &badgerdb.Entry{Key: key, ExpiresAt: item.ExpiresAt()})
			}
		}
		err := eachRecord(txn, kindToken, func(item *badgerdb.Item) error {
			t := new(store.Token)
			if len(item.Key()) != 1+len(t.Hash) {
				return nil
			}
			copy(t.Hash[:], item.Key()[1:])
			if err := decode(item, t, "token "+t.Hash.ID()); err != nil {
				return err
			}
			add(tokenGrantKey(t), item)
			return nil
		})
		if err != nil {
			return nil, err
		}
		err = eachRecord(txn, kindFamily, func(item *badgerdb.Item) error {
			f := new(store.Family)
			if err := decode(item, f, "family"); err != nil {
				return err
			}
			f.ID = string(item.Key()[1:])
			add(familyGrantKey(f), item)
			return nil
		})
		return entries, err
	})
}

// backfillIndex writes the index entries collect lists, from the records
// of a database written before the index existed, and then marker, which
// says that the index is complete; with marker present it does nothing.
// It runs in Open, before any other operation.
func backfillIndex(db *badgerdb.DB, marker []byte, collect func(*badgerdb.Txn) ([]*badgerdb.Entry, error)) error {
	var (
		done    bool
		entries []*badgerdb.Entry
	)
	err := db.View(func(txn *badgerdb.Txn) error {
		_, err := txn.Get(marker)
		if err == nil {
			done = true
			return nil
		}
		if !errors.Is(err, badgerdb.ErrKeyNotFound) {
			return err
		}
		entries, err = collect(txn)
		return err
	})
	if err != nil || done {
		return err
	}
	// A write batch splits what may be too large for one transaction; the
	// marker follows in its own commit once every entry is durable.
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range entries {
		if err := wb.SetEntry(e); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return db.Update(func(txn *badgerdb.Txn) error { return txn.Set(marker, nil) })
}

// eachRecord calls fn for every live item of the given kind in txn.
func eachRecord(txn *badgerdb.Txn, kind byte, fn func(*badgerdb.Item) error) error {
	prefix := []byte{kind}
	it := txn.NewIterator(badgerdb.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: scanPrefetch})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if err := fn(it.Item()); err != nil {
			return err
		}
	}
	return nil
}
