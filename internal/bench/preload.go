package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// Tokens derives a fleet's bearer tokens from a seed: token i is minted by
// token.Mint from HMAC-SHA256(seed, i), so a fleet of a million devices
// needs no table of tokens, and the store holds only their hashes as
// usual.
type Tokens struct {
	key []byte
}

// NewTokens returns the derivation for seed (use 32 random bytes).
func NewTokens(seed []byte) Tokens {
	return Tokens{key: bytes.Clone(seed)}
}

// Token returns token i.
func (t Tokens) Token(i int) string {
	m := hmac.New(sha256.New, t.key)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	m.Write(b[:])
	raw, _, err := token.Mint(bytes.NewReader(m.Sum(nil)))
	if err != nil {
		panic(err) // a 32-byte reader cannot run short
	}
	return raw
}

// SyntheticID returns the enrollment id of synthetic device i: an
// upper-case UUID, as a User Enrollment's EnrollmentID.
func SyntheticID(i int) string {
	return fmt.Sprintf("BE4C0000-0000-4000-8000-%012X", i)
}

// Binding is one live token bound to an active enrollment, as the gateway
// leaves them after a device's first check-in.
type Binding struct {
	Token          string
	EnrollmentID   string
	Subject        string
	ManagedAppleID string
}

// SyntheticBinding returns binding i of a synthetic fleet whose tokens
// come from tokens.
func SyntheticBinding(tokens Tokens, i int) Binding {
	return Binding{
		Token:          tokens.Token(i),
		EnrollmentID:   SyntheticID(i),
		Subject:        fmt.Sprintf("bench-%07d", i),
		ManagedAppleID: fmt.Sprintf("user%07d@example.com", i),
	}
}

// PreloadOptions configure Preload.
type PreloadOptions struct {
	// Issuer is written as the tokens' and enrollments' issuer.
	Issuer string
	// Now is the issue time; TTL the tokens' lifetime.
	Now time.Time
	TTL time.Duration
	// Workers is the number of concurrent writers (Badger batches
	// concurrent synced commits into one fsync); default 64.
	Workers int
	// Progress, when set, is called now and then with the number written.
	Progress func(done int)
}

// Preload writes bindings [from, to) through the store API: CreateToken,
// then Bind to an active enrollment of platform "other" (so that no
// request of the benchmark has anything left to commit).
func Preload(ctx context.Context, s store.Store, from, to int, at func(i int) Binding, o PreloadOptions) error {
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.TTL <= 0 {
		return errors.New("bench: preload: TTL must be positive")
	}
	var done atomic.Int64
	return parallel(ctx, to-from, o.Workers, func(ctx context.Context, k int) error {
		i := from + k
		if err := preloadOne(ctx, s, at(i), o); err != nil {
			return fmt.Errorf("bench: preload %d: %w", i, err)
		}
		if n := done.Add(1); o.Progress != nil && n%100000 == 0 {
			o.Progress(int(n))
		}
		return nil
	})
}

func preloadOne(ctx context.Context, s store.Store, b Binding, o PreloadOptions) error {
	h := token.HashOf(b.Token)
	t := &store.Token{
		Hash:           h,
		Issuer:         o.Issuer,
		Subject:        b.Subject,
		UserIdentifier: b.ManagedAppleID,
		ManagedAppleID: b.ManagedAppleID,
		Mode:           "byod",
		ModelFamily:    "iPhone",
		IssuedAt:       o.Now,
		ExpiresAt:      o.Now.Add(o.TTL),
	}
	if err := s.CreateToken(ctx, t); err != nil {
		return err
	}
	_, _, err := s.Bind(ctx, h, b.EnrollmentID, func(t *store.Token, e *store.Enrollment) (*store.Enrollment, error) {
		if e != nil {
			return nil, fmt.Errorf("enrollment %s exists", b.EnrollmentID)
		}
		return &store.Enrollment{
			ID:             b.EnrollmentID,
			Issuer:         t.Issuer,
			Subject:        t.Subject,
			ManagedAppleID: t.ManagedAppleID,
			Mode:           t.Mode,
			Platform:       store.PlatformOther,
			State:          store.StateActive,
			TokenHash:      h,
			CreatedAt:      o.Now,
			UpdatedAt:      o.Now,
		}, nil
	})
	return err
}
