// Package store defines what mdmauth keeps: access tokens (only their
// SHA-256), enrollments and their states, short-lived sign-in states and the
// server's own secrets. Backends implement Store; the conformance suite in
// storetest runs unchanged against each of them.
package store

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"time"
)

// Errors every backend returns for the same conditions.
var (
	// ErrNotFound: no such record (or it has expired).
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a record with that key already exists.
	ErrExists = errors.New("store: already exists")
	// ErrConflict: the update function refused the change; wrapped errors
	// from update functions are returned unchanged instead.
	ErrConflict = errors.New("store: conflict")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrNoSpace: the store refuses writes because its disk is (nearly)
	// full; reads go on.
	ErrNoSpace = errors.New("store: not enough free disk space, writes refused")
	// ErrUnavailable: the backend cannot be reached; callers answer 503,
	// never a challenge.
	ErrUnavailable = errors.New("store: backend unavailable")
)

// Hash is the SHA-256 of an access token. Tokens themselves are never stored.
type Hash [32]byte

// Token is what the gateway knows about an access token it issued.
type Token struct {
	Hash Hash `json:"-"`

	// Issuer and Subject identify the user (the ID token's iss and sub).
	Issuer  string `json:"iss"`
	Subject string `json:"sub"`
	// SessionID is the IdP session (the ID token's sid), if any.
	SessionID string `json:"sid,omitempty"`
	// UserIdentifier is what the user typed on the device.
	UserIdentifier string `json:"user_identifier,omitempty"`
	// ManagedAppleID is the Managed Apple Account put in the profile.
	ManagedAppleID string `json:"managed_apple_id"`
	// Mode is "byod" or "adde".
	Mode string `json:"mode"`
	// ModelFamily is the discovery model-family (iPhone, Mac, ...).
	ModelFamily string `json:"model_family,omitempty"`

	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// RevokedAt is set when the token was revoked; zero otherwise.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// EnrollmentID is the enrollment (EnrollmentID or UDID) the token is
	// bound to; empty until its first MDM request.
	EnrollmentID string `json:"enrollment_id,omitempty"`
	// FamilyID names the OAuth 2 token family the token was issued in;
	// empty for web sign-in tokens.
	FamilyID string `json:"family_id,omitempty"`
	// Profile names the enrollment profile template the policy chose ("" is
	// the default); RequiredAppID is the policy's RequiredAppIDForMDM.
	Profile       string `json:"profile,omitempty"`
	RequiredAppID int64  `json:"required_app_id,omitempty"`
}

// ID is a stable, non-secret identifier of the token, safe for logs and the
// admin API: the first 12 bytes of its hash, hex-encoded.
func (t *Token) ID() string { return t.Hash.ID() }

// ID returns the loggable token id for this hash.
func (h Hash) ID() string {
	const hexdigits = "0123456789abcdef"
	b := make([]byte, 24)
	for i := 0; i < 12; i++ {
		b[2*i] = hexdigits[h[i]>>4]
		b[2*i+1] = hexdigits[h[i]&0x0f]
	}
	return string(b)
}

// State is the lifecycle state of an enrollment.
type State string

// Enrollment states. The allowed transitions are enforced by the token
// package, not by the store.
const (
	StateActive      State = "active"      // tokens bound to it are honoured
	StateReauth      State = "reauth"      // next request is challenged; a new sign-in of the same user re-binds
	StateBlocked     State = "blocked"     // every request challenged, sign-in refused
	StateOffboarding State = "offboarding" // MDM traffic passes without a valid token until CheckOut or the deadline
	StateRemoved     State = "removed"     // checked out or removed
)

// Platform of an enrollment, learned from its first Authenticate.
const (
	PlatformUnknown = ""
	PlatformMac     = "mac"
	PlatformOther   = "other"
)

// Enrollment is one device enrollment (keyed by EnrollmentID for User
// Enrollment, by UDID for Device Enrollment) and who owns it.
type Enrollment struct {
	ID string `json:"id"`

	// Issuer and Subject of the owning user; empty until a token binds.
	Issuer  string `json:"iss,omitempty"`
	Subject string `json:"sub,omitempty"`

	ManagedAppleID string `json:"managed_apple_id,omitempty"`
	Mode           string `json:"mode,omitempty"`
	// Platform is PlatformMac or PlatformOther once known; first seen wins.
	Platform string `json:"platform,omitempty"`

	State State `json:"state"`
	// Deadline ends the offboarding state.
	Deadline time.Time `json:"deadline,omitzero"`
	// TokenHash is the token currently bound to the enrollment.
	TokenHash Hash `json:"token_hash"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// LoginState is a pending web sign-in: created when the device's browser
// opens the sign-in URL, consumed once by the OIDC callback.
type LoginState struct {
	// Data is the serialized state, opaque to the store.
	Data      []byte
	ExpiresAt time.Time
}

// Tokens stores access tokens by hash.
type Tokens interface {
	// CreateToken stores a new token durably (synced before returning).
	// ErrExists if the hash is already present.
	CreateToken(ctx context.Context, t *Token) error
	// Token returns the token with that hash, revoked or not, expired or
	// not, until the backend purges it (some time after ExpiresAt).
	// ErrNotFound otherwise.
	Token(ctx context.Context, h Hash) (*Token, error)
	// UpdateToken applies fn to the current token atomically. If fn returns
	// an error nothing is written and that error is returned.
	UpdateToken(ctx context.Context, h Hash, fn func(*Token) error) (*Token, error)
}

// Enrollments stores enrollments by id.
type Enrollments interface {
	// Enrollment returns the enrollment, or ErrNotFound.
	Enrollment(ctx context.Context, id string) (*Enrollment, error)
	// UpdateEnrollment applies fn atomically. fn receives nil when the
	// enrollment does not exist yet; it returns the record to write (nil to
	// write nothing) or an error, which aborts and is returned unchanged.
	UpdateEnrollment(ctx context.Context, id string, fn func(*Enrollment) (*Enrollment, error)) (*Enrollment, error)
	// Bind atomically loads the token and the enrollment (nil if absent) and
	// calls fn, which may change both; if fn returns nil both are written.
	// ErrNotFound if the token does not exist.
	Bind(ctx context.Context, h Hash, enrollmentID string, fn func(t *Token, e *Enrollment) (*Enrollment, error)) (*Token, *Enrollment, error)
	// Lookup reads, in one consistent read, the enrollment (nil if
	// absent) and, unless h is the zero Hash, the token with that hash
	// (nil if absent): everything the check of one MDM request needs.
	Lookup(ctx context.Context, enrollmentID string, h Hash) (*Enrollment, *Token, error)
	// TokensForEnrollment lists the tokens bound to the enrollment.
	TokensForEnrollment(ctx context.Context, id string) ([]*Token, error)
	// EnrollmentsForUser lists the enrollments owned by (iss, sub), in any
	// state.
	EnrollmentsForUser(ctx context.Context, iss, sub string) ([]*Enrollment, error)
}

// LoginStates keeps pending sign-ins.
type LoginStates interface {
	// PutLoginState stores s under key until s.ExpiresAt. ErrExists if taken.
	PutLoginState(ctx context.Context, key string, s LoginState) error
	// TakeLoginState returns and deletes the state in one step, so a state
	// is used at most once. ErrNotFound if absent, taken or expired.
	TakeLoginState(ctx context.Context, key string) (LoginState, error)
}

// Secrets keeps the server's own keys (e.g. the key that signs sign-in URLs).
type Secrets interface {
	// Secret returns the secret stored under name, creating it with gen on
	// first use. Concurrent first calls all receive the same value.
	Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
}

// Inventory walks and summarises what the store holds, for the admin API,
// statistics and back-channel logout. Scans stop when fn returns false and
// see every record as it was at some moment of the scan: Badger scans one
// snapshot, PostgreSQL pages through several (so a record written during a
// long scan may or may not be seen, and none is seen twice). Records the
// backend has purged are not seen.
type Inventory interface {
	// ScanEnrollments calls fn for each enrollment whose id is >= from, in
	// ascending id order.
	ScanEnrollments(ctx context.Context, from string, fn func(*Enrollment) bool) error
	// ScanTokens calls fn for each token (revoked and expired ones
	// included) whose hash is >= from, in ascending hash order; from is a
	// hash prefix of 0 to 32 bytes.
	ScanTokens(ctx context.Context, from []byte, fn func(*Token) bool) error
	// ScanFamilies calls fn for each token family whose id is >= from, in
	// ascending id order.
	ScanFamilies(ctx context.Context, from string, fn func(*Family) bool) error
	// CountLoginStates returns the number of pending (unexpired) sign-ins.
	CountLoginStates(ctx context.Context) (int, error)
	// TokensForUser lists the tokens issued to (iss, sub), bound to an
	// enrollment or not.
	TokensForUser(ctx context.Context, iss, sub string) ([]*Token, error)
	// FamiliesForUser lists the token families of (iss, sub).
	FamiliesForUser(ctx context.Context, iss, sub string) ([]*Family, error)
	// Size returns the bytes the store occupies on disk, or -1 when the
	// backend cannot tell.
	Size(ctx context.Context) (int64, error)
}

// Backuper is implemented by backends that can stream a consistent backup
// of everything they hold while in use.
type Backuper interface {
	Backup(ctx context.Context, w io.Writer) error
}

// Store is everything a backend provides.
type Store interface {
	Tokens
	Enrollments
	LoginStates
	Secrets
	OAuth
	Inventory
	// Ping reports whether the backend is usable.
	Ping(ctx context.Context) error
	Close() error
}

// MarshalText encodes the hash as hex (compact in JSON records).
func (h Hash) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(b, h[:])
	return b, nil
}

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(h) {
		return errors.New("store: hash must be 64 hex digits")
	}
	_, err := hex.Decode(h[:], b)
	return err
}
