// Package signin signs users in at the organization's OIDC provider for the
// apple-as-web method: the signed sign-in URL the device stores, the login
// state bound to the browser, the OIDC relying party and the callback that
// mints the access token.
package signin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Flow kinds.
const (
	KindEnroll = "enroll" // challenge on the enrollment POST
	KindReauth = "reauth" // challenge on a protected MDM request
)

// Flow is the self-contained, signed value carried in the path of the
// apple-as-web url. The device stores the challenge and may open it days
// later, so it must not depend on a short-lived record.
type Flow struct {
	Kind         string    `json:"k"`
	Mode         string    `json:"m"`
	ModelFamily  string    `json:"f,omitempty"`
	EnrollmentID string    `json:"e,omitempty"`
	IssuedAt     time.Time `json:"t"`
}

// ErrBadFlow is returned for a flow value that is malformed, forged or too old.
var ErrBadFlow = errors.New("signin: invalid or expired sign-in link")

// Signer signs and verifies flow values with an HMAC-SHA256 key.
type Signer struct {
	Key []byte
	// KeyRef, when Key is nil, gives the key, loaded from the store on
	// first use (so a gateway on a remote store starts while it is down).
	KeyRef *store.SecretRef
	// MaxAge bounds how old a flow may be when opened.
	MaxAge time.Duration
}

// ErrKeyUnavailable wraps the failure to load the signing key: the store
// is unavailable, and the caller answers 503.
var ErrKeyUnavailable = errors.New("signin: the signing key cannot be loaded")

// key returns the signing key, loading KeyRef's on first use.
func (s Signer) key() ([]byte, error) {
	if s.Key != nil || s.KeyRef == nil {
		return s.Key, nil
	}
	k, err := s.KeyRef.Get(context.Background())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	return k, nil
}

const macLen = 16

// Encode returns the flow as a URL path segment.
func (s Signer) Encode(f Flow) (string, error) {
	key, err := s.key()
	if err != nil {
		return "", err
	}
	if len(key) < 32 {
		return "", errors.New("signin: signing key too short")
	}
	f.IssuedAt = f.IssuedAt.UTC().Truncate(time.Second)
	b, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	p := base64.RawURLEncoding.EncodeToString(b)
	return p + "." + base64.RawURLEncoding.EncodeToString(mac(key, p)), nil
}

func mac(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("mdmauth-flow-v1\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)[:macLen]
}

// Decode verifies and parses a flow value.
func (s Signer) Decode(v string, now time.Time) (Flow, error) {
	if len(v) > 1024 {
		return Flow{}, ErrBadFlow
	}
	key, err := s.key()
	if err != nil {
		return Flow{}, err
	}
	if len(key) < 32 {
		return Flow{}, ErrBadFlow
	}
	p, sig, ok := strings.Cut(v, ".")
	if !ok {
		return Flow{}, ErrBadFlow
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(key, p)) {
		return Flow{}, ErrBadFlow
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Flow{}, ErrBadFlow
	}
	var f Flow
	if err := json.Unmarshal(b, &f); err != nil {
		return Flow{}, ErrBadFlow
	}
	if f.Kind != KindEnroll && f.Kind != KindReauth || f.Mode == "" {
		return Flow{}, ErrBadFlow
	}
	if s.MaxAge > 0 && now.Sub(f.IssuedAt) > s.MaxAge {
		return Flow{}, fmt.Errorf("%w: issued %s ago", ErrBadFlow, now.Sub(f.IssuedAt).Round(time.Hour))
	}
	if f.IssuedAt.After(now.Add(5 * time.Minute)) {
		return Flow{}, ErrBadFlow
	}
	return f, nil
}
