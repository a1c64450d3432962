package token

import (
	"crypto/subtle"

	"github.com/mdmauth/mdmauth/internal/store"
)

// SameHash reports whether two token hashes are equal, comparing them in
// constant time. A token hash only locates a record, and timing could
// reveal at most bytes of a hash, never of a token; every comparison of a
// value derived from a secret is constant-time all the same, so that one
// rule covers them all (see constanttime_test.go).
func SameHash(a, b store.Hash) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
