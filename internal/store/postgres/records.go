package postgres

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// codeGrace is how long past its expiry an authorization code is kept,
// used or not, so that a replay shortly after expiry is recognised (as in
// the Badger backend).
const codeGrace = time.Minute

// loginStateGrace is how long past its expiry the purge leaves a login
// state. Reads ignore it (the store's clock decides); it only spares a
// state that an instance whose clock is a little behind still considers
// live.
const loginStateGrace = time.Minute

// loginRecord is the stored form of a store.LoginState, as in the Badger
// backend.
type loginRecord struct {
	Data      []byte    `json:"d"`
	ExpiresAt time.Time `json:"e"`
}

// key returns s as bytes for a bytea key: never nil, which pgx would send
// as NULL.
func key(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return []byte(s)
}

// optKey returns s as bytes, or nil (NULL) when empty.
func optKey(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// owner returns the owner columns of a record of (iss, sub): NULL for
// records without an owner (both empty), which no listing finds.
func owner(iss, sub string) (any, any) {
	if iss == "" && sub == "" {
		return nil, nil
	}
	return key(iss), key(sub)
}

// hasOwner reports whether (iss, sub) names an owner.
func hasOwner(iss, sub string) bool { return iss != "" || sub != "" }

// optTime returns t, or nil (NULL) when zero.
func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// tokenPurge is when a token's retention ends: TokenRetention after it
// expires or is revoked, whichever is first; nil (never) for a token that
// does neither.
func (s *Store) tokenPurge(t *store.Token) any {
	end := t.ExpiresAt
	if !t.RevokedAt.IsZero() && (end.IsZero() || t.RevokedAt.Before(end)) {
		end = t.RevokedAt
	}
	if end.IsZero() {
		return nil
	}
	return end.Add(s.retention)
}

// familyPurge is when a family's retention ends: TokenRetention after it
// expires or is revoked, whichever is last, so a revoked family is
// remembered as long as one that ran its course; nil for neither.
func (s *Store) familyPurge(f *store.Family) any {
	end := f.ExpiresAt
	if f.RevokedAt.After(end) {
		end = f.RevokedAt
	}
	if end.IsZero() {
		return nil
	}
	return end.Add(s.retention)
}

// tokenArgs are the column values of t, in the order of the token
// statements: hash, enrollment_id, family_id, iss, sub, expires_at,
// revoked_at, purge_after, rec.
func (s *Store) tokenArgs(t *store.Token) ([]any, error) {
	rec, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	iss, sub := owner(t.Issuer, t.Subject)
	return []any{t.Hash[:], optKey(t.EnrollmentID), optKey(t.FamilyID), iss, sub,
		optTime(t.ExpiresAt), optTime(t.RevokedAt), s.tokenPurge(t), rec}, nil
}

// enrollmentArgs are the column values of e stored under id: id, iss,
// sub, state, rec. The record's ID is id.
func enrollmentArgs(id string, e *store.Enrollment) ([]any, *store.Enrollment, error) {
	out := *e
	out.ID = id
	rec, err := json.Marshal(&out)
	if err != nil {
		return nil, nil, err
	}
	iss, sub := owner(out.Issuer, out.Subject)
	return []any{key(id), iss, sub, string(out.State), rec}, &out, nil
}

// familyArgs are the column values of f: id, iss, sub, expires_at,
// revoked_at, purge_after, rec.
func (s *Store) familyArgs(f *store.Family) ([]any, error) {
	rec, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	iss, sub := owner(f.Issuer, f.Subject)
	return []any{key(f.ID), iss, sub, optTime(f.ExpiresAt), optTime(f.RevokedAt), s.familyPurge(f), rec}, nil
}

// codeArgs are the column values of c: hash, expires_at, purge_after,
// rec.
func codeArgs(c *store.Code) ([]any, error) {
	rec, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return []any{c.Hash[:], c.ExpiresAt, c.ExpiresAt.Add(codeGrace), rec}, nil
}

// decodeToken decodes the token stored under h.
func decodeToken(h store.Hash, rec []byte) (*store.Token, error) {
	t := new(store.Token)
	if err := json.Unmarshal(rec, t); err != nil {
		return nil, recordError{fmt.Errorf("token %s: %w", h.ID(), err)}
	}
	t.Hash = h
	return t, nil
}

// decodeEnrollment decodes the enrollment stored under id.
func decodeEnrollment(id string, rec []byte) (*store.Enrollment, error) {
	e := new(store.Enrollment)
	if err := json.Unmarshal(rec, e); err != nil {
		return nil, recordError{fmt.Errorf("enrollment: %w", err)}
	}
	e.ID = id
	return e, nil
}

// decodeFamily decodes the family stored under id.
func decodeFamily(id string, rec []byte) (*store.Family, error) {
	f := new(store.Family)
	if err := json.Unmarshal(rec, f); err != nil {
		return nil, recordError{fmt.Errorf("family: %w", err)}
	}
	f.ID = id
	return f, nil
}

// decodeCode decodes the code stored under h.
func decodeCode(h store.Hash, rec []byte) (*store.Code, error) {
	c := new(store.Code)
	if err := json.Unmarshal(rec, c); err != nil {
		return nil, recordError{fmt.Errorf("code %s: %w", h.ID(), err)}
	}
	c.Hash = h
	return c, nil
}

// hashOf converts a bytea key into a hash.
func hashOf(b []byte) (store.Hash, error) {
	var h store.Hash
	if len(b) != len(h) {
		return h, recordError{fmt.Errorf("token hash of %d bytes", len(b))}
	}
	copy(h[:], b)
	return h, nil
}
