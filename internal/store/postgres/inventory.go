package postgres

import (
	"context"

	"github.com/mdmauth/mdmauth/internal/store"
)

// scanPage is how many rows one page of a scan reads.
const scanPage = 256

// ScanEnrollments calls fn for each enrollment whose id is >= from, in
// ascending id (byte) order, until fn returns false. It reads page by
// page, each page in one snapshot; fn may call the store's methods other
// than Close. A Close during the scan ends it with store.ErrClosed.
func (s *Store) ScanEnrollments(ctx context.Context, from string, fn func(*store.Enrollment) bool) error {
	return s.scan(ctx, s.q.enrollmentsFrom, s.q.enrollmentsAfter, key(from), false, func(k, rec []byte) (bool, error) {
		e, err := decodeEnrollment(string(k), rec)
		if err != nil {
			return false, err
		}
		return fn(e), nil
	})
}

// ScanTokens calls fn for each token whose hash is >= from (compared as
// bytes, so a from of fewer than 32 bytes starts at the first hash with
// that prefix), in ascending hash order, until fn returns false. Revoked
// and expired tokens are included until their retention ends. Like
// ScanEnrollments, it reads page by page.
func (s *Store) ScanTokens(ctx context.Context, from []byte, fn func(*store.Token) bool) error {
	start := append([]byte{}, from...) // never nil, which would be NULL
	return s.scan(ctx, s.q.tokensFrom, s.q.tokensAfter, start, true, func(k, rec []byte) (bool, error) {
		h, err := hashOf(k)
		if err != nil {
			return false, err
		}
		t, err := decodeToken(h, rec)
		if err != nil {
			return false, err
		}
		return fn(t), nil
	})
}

// ScanFamilies calls fn for each token family whose id is >= from, in
// ascending id (byte) order, until fn returns false. Revoked and expired
// families are included until their retention ends. Like
// ScanEnrollments, it reads page by page.
func (s *Store) ScanFamilies(ctx context.Context, from string, fn func(*store.Family) bool) error {
	return s.scan(ctx, s.q.familiesFrom, s.q.familiesAfter, key(from), true, func(k, rec []byte) (bool, error) {
		f, err := decodeFamily(string(k), rec)
		if err != nil {
			return false, err
		}
		return fn(f), nil
	})
}

// row is one key and record a scan read.
type row struct{ k, rec []byte }

// pager reads one page of a scan: the rows a statement selects.
type pager func(ctx context.Context, sql string, args []any) ([]row, error)

// poolPage reads a page as an operation of its own.
func (s *Store) poolPage(ctx context.Context, sql string, args []any) ([]row, error) {
	var page []row
	err := s.idempotent(ctx, func(ctx context.Context) error {
		page = page[:0]
		return s.each(ctx, s.pool, sql, args, func(k, rec []byte) error {
			page = append(page, row{k, rec})
			return nil
		})
	})
	return page, err
}

// scan pages through a table from the pool, each page an operation of
// its own; see scanWith.
func (s *Store) scan(ctx context.Context, fromSQL, afterSQL string, start []byte, live bool, each func(k, rec []byte) (bool, error)) error {
	return s.scanWith(ctx, s.poolPage, fromSQL, afterSQL, start, live, each)
}

// scanWith pages through a table: the first page with fromSQL from start,
// the next ones with afterSQL after the last key seen, each page one
// statement read by page (with the store's clock as $3 if live). It calls
// each for every row, between pages, and stops when each returns false
// or an error, ctx is done or the store is closing.
func (s *Store) scanWith(ctx context.Context, page pager, fromSQL, afterSQL string, start []byte, live bool, each func(k, rec []byte) (bool, error)) error {
	sql, k := fromSQL, start
	for {
		args := []any{k, scanPage}
		if live {
			args = append(args, s.now())
		}
		rows, err := page(ctx, sql, args)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := ctx.Err(); err != nil {
				return err
			}
			if s.isClosed() {
				return store.ErrClosed
			}
			more, err := each(r.k, r.rec)
			if err != nil || !more {
				return err
			}
		}
		if len(rows) < scanPage {
			return nil
		}
		sql, k = afterSQL, rows[len(rows)-1].k
	}
}

// TokensForUser lists the tokens issued to (iss, sub), bound or not,
// revoked and expired ones included until their retention ends, in hash
// order. An empty iss and sub list nothing.
func (s *Store) TokensForUser(ctx context.Context, iss, sub string) ([]*store.Token, error) {
	if !hasOwner(iss, sub) {
		return nil, s.check(ctx)
	}
	return s.listTokens(ctx, s.q.tokensForUser, key(iss), key(sub), s.now())
}

// FamiliesForUser lists the token families of (iss, sub), revoked and
// expired ones included until their retention ends, in id order. An
// empty iss and sub list nothing.
func (s *Store) FamiliesForUser(ctx context.Context, iss, sub string) ([]*store.Family, error) {
	if !hasOwner(iss, sub) {
		return nil, s.check(ctx)
	}
	var out []*store.Family
	err := s.idempotent(ctx, func(ctx context.Context) error {
		out = nil
		return s.each(ctx, s.pool, s.q.familiesForUser, []any{key(iss), key(sub), s.now()}, func(k, rec []byte) error {
			f, err := decodeFamily(string(k), rec)
			if err == nil {
				out = append(out, f)
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Size returns the bytes the schema's tables occupy in the database,
// their indexes and TOAST data included.
func (s *Store) Size(ctx context.Context) (int64, error) {
	var n int64
	err := s.idempotent(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, s.q.size, s.schema).Scan(&n)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
