// Package token mints access tokens, decides their lifetimes and applies the
// rules that tie a token to its user and enrollment: who may pass on a
// protected MDM path, what a request binds, and the enrollment state machine.
//
// Tokens are 256-bit random values in base64url; only their SHA-256 is
// stored.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Size of a token in random bytes.
const Size = 32

// encodedLen is the length of a base64url (unpadded) token.
var encodedLen = base64.RawURLEncoding.EncodedLen(Size)

// Mint returns a new random token and its hash.
func Mint(r io.Reader) (string, store.Hash, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [Size]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", store.Hash{}, fmt.Errorf("token: reading randomness: %w", err)
	}
	t := base64.RawURLEncoding.EncodeToString(b[:])
	return t, HashOf(t), nil
}

// HashOf returns the storage key of a token.
func HashOf(token string) store.Hash {
	// Copied into a stack buffer: converting the string would allocate on
	// every MDM request.
	var buf [64]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(append(buf[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}

// WellFormed reports whether s has the shape of a token this package mints,
// so that garbage never reaches the store.
func WellFormed(s string) bool {
	if len(s) != encodedLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Lifetime computes token expiry.
type Lifetime struct {
	// TTL is the nominal lifetime of an access token.
	TTL time.Duration
	// Jitter spreads expiries by ±Jitter×TTL (0.1 = ±10%) so that a fleet
	// enrolled in one week is not prompted in one hour.
	Jitter float64
	// Floor is the shortest lifetime any token gets, whatever TTL and
	// jitter say: long enough for sign-in → profile → Managed Apple
	// Account sign-in → first check-in, because a 401 on the profile
	// request ends the enrollment.
	Floor time.Duration
}

// DefaultFloor is the default minimum token lifetime.
const DefaultFloor = time.Hour

// ErrLifetime is returned for an unusable configuration.
var ErrLifetime = errors.New("token: invalid lifetime")

// Validate checks the configuration.
func (l Lifetime) Validate() error {
	switch {
	case l.TTL <= 0:
		return fmt.Errorf("%w: ttl must be positive", ErrLifetime)
	case l.Jitter < 0 || l.Jitter >= 0.5:
		return fmt.Errorf("%w: jitter must be in [0, 0.5)", ErrLifetime)
	case l.TTL < l.Floor:
		return fmt.Errorf("%w: ttl %s is shorter than the minimum %s a device needs to finish enrolling", ErrLifetime, l.TTL, l.Floor)
	}
	return nil
}

// Expiry returns the expiry of a token issued at now, with jitter drawn
// from r.
func (l Lifetime) Expiry(now time.Time, r io.Reader) (time.Time, error) {
	d := l.TTL
	if l.Jitter > 0 {
		if r == nil {
			r = rand.Reader
		}
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return time.Time{}, fmt.Errorf("token: reading randomness: %w", err)
		}
		// u uniform in [-1, 1)
		u := float64(binary.BigEndian.Uint64(b[:])>>11)/float64(1<<53)*2 - 1
		d += time.Duration(u * l.Jitter * float64(l.TTL))
	}
	if d < l.Floor {
		d = l.Floor
	}
	return now.Add(d), nil
}
