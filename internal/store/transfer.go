package store

import (
	"context"
	"errors"
)

// Record is one long-lived record of a store, as a Dumper lists it and a
// Loader takes it: exactly one of its fields is set.
//
// Login states and authorization codes are not records in this sense:
// they live for minutes, so moving a store does not carry them, and a
// sign-in in flight while a store is moved starts again.
type Record struct {
	Token      *Token
	Enrollment *Enrollment
	Family     *Family
	Secret     *NamedSecret
}

// NamedSecret is one of the server's own secrets and its name.
type NamedSecret struct {
	Name  string
	Value []byte
}

// Record kinds, as Record.Kind names them.
const (
	KindToken      = "token"
	KindEnrollment = "enrollment"
	KindFamily     = "family"
	KindSecret     = "secret"
)

// ErrBadRecord is returned for a Record that does not hold exactly one
// record.
var ErrBadRecord = errors.New("store: a record must hold exactly one of token, enrollment, family or secret")

// Kind names the record r holds (KindToken, ...), or returns ErrBadRecord
// unless exactly one field is set.
func (r Record) Kind() (string, error) {
	kind, n := "", 0
	if r.Token != nil {
		kind, n = KindToken, n+1
	}
	if r.Enrollment != nil {
		kind, n = KindEnrollment, n+1
	}
	if r.Family != nil {
		kind, n = KindFamily, n+1
	}
	if r.Secret != nil {
		kind, n = KindSecret, n+1
	}
	if n != 1 {
		return "", ErrBadRecord
	}
	return kind, nil
}

// Dumper is implemented by backends that can list everything long-lived
// they hold, to move it to another backend (see Loader).
type Dumper interface {
	// Dump calls fn for every token, enrollment, token family and secret
	// the store holds, from one consistent snapshot; records past their
	// retention are left out, as are login states and authorization
	// codes. It stops at fn's first error and returns it unchanged. fn
	// owns the records it is passed.
	Dump(ctx context.Context, fn func(Record) error) error
}

// Loader is implemented by backends that can take records a Dumper
// listed.
type Loader interface {
	// Load stores the record as it is, replacing one with the same key,
	// and keeps every index in step with it, as if the store's own
	// operations had written it. Loading the same record again changes
	// nothing. It returns ErrBadRecord unless exactly one field of r is
	// set.
	Load(ctx context.Context, r Record) error
}
