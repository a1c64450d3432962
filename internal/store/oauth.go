package store

import (
	"context"
	"time"
)

// Family is an OAuth 2 token family: everything issued from one
// interactive sign-in (apple-oauth2), across refreshes. Revoking the family
// revokes its refresh token and every access token issued in it.
type Family struct {
	ID string `json:"id"`

	// The user and grant, as for Token.
	Issuer         string `json:"iss"`
	Subject        string `json:"sub"`
	SessionID      string `json:"sid,omitempty"`
	UserIdentifier string `json:"user_identifier,omitempty"`
	ManagedAppleID string `json:"managed_apple_id"`
	Mode           string `json:"mode"`
	ModelFamily    string `json:"model_family,omitempty"`
	ClientID       string `json:"client_id"`
	Profile        string `json:"profile,omitempty"`
	RequiredAppID  int64  `json:"required_app_id,omitempty"`

	// EnrollmentID is the enrollment the family's tokens are bound to,
	// once one of them was used on an MDM path; refreshed access tokens
	// inherit it.
	EnrollmentID string `json:"enrollment_id,omitempty"`

	// SignedInAt is the interactive sign-in that started the family.
	SignedInAt time.Time `json:"signed_in_at"`
	// RefreshHash is the hash of the current refresh token; PreviousHash
	// the one it replaced at RotatedAt (honoured during the grace window).
	RefreshHash  Hash      `json:"refresh_hash"`
	PreviousHash Hash      `json:"previous_hash"`
	RotatedAt    time.Time `json:"rotated_at,omitzero"`
	// Generation counts rotations.
	Generation uint64 `json:"generation"`
	// Salt is mixed into the derivation of the current refresh token's
	// successors and renewed at each rotation; PreviousSalt derived the
	// current pair (for retries within the grace window). So the rotation
	// key and a refresh token, even with a copy of this record, derive at
	// most the next pair, never the family's later tokens. Empty in
	// families created before salts existed.
	Salt         []byte `json:"salt,omitempty"`
	PreviousSalt []byte `json:"previous_salt,omitempty"`
	// ExpiresAt is the idle expiry of the current refresh token.
	ExpiresAt time.Time `json:"expires_at"`
	// RevokedAt is set when the family was revoked; zero otherwise.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// RevokeReason says why (reuse, code_replay, idp_refused, ...).
	RevokeReason string `json:"revoke_reason,omitempty"`

	// IdPRefresh is the identity provider's refresh token, encrypted; the
	// key that encrypted it is named by IdPKeyID.
	IdPRefresh []byte `json:"idp_refresh,omitempty"`
	IdPKeyID   string `json:"idp_key_id,omitempty"`
	// RevalidatedAt is the last successful check at the identity provider.
	RevalidatedAt time.Time `json:"revalidated_at,omitzero"`
	// RevalidatingUntil is a lease: one refresh at a time talks to the
	// identity provider for this family.
	RevalidatingUntil time.Time `json:"revalidating_until,omitzero"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Code is an OAuth 2 authorization code: single use, short-lived, bound to
// the client and redirect URI, and to the sign-in it came from.
type Code struct {
	Hash Hash `json:"-"`

	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	// CodeChallenge is the PKCE S256 challenge, if the client sent one.
	CodeChallenge string `json:"code_challenge,omitempty"`

	// The signed-in user and grant the code stands for.
	Issuer         string    `json:"iss"`
	Subject        string    `json:"sub"`
	SessionID      string    `json:"sid,omitempty"`
	UserIdentifier string    `json:"user_identifier,omitempty"`
	ManagedAppleID string    `json:"managed_apple_id"`
	Mode           string    `json:"mode"`
	ModelFamily    string    `json:"model_family,omitempty"`
	EnrollmentID   string    `json:"enrollment_id,omitempty"`
	Profile        string    `json:"profile,omitempty"`
	RequiredAppID  int64     `json:"required_app_id,omitempty"`
	SignedInAt     time.Time `json:"signed_in_at"`
	// IdPRefresh and IdPKeyID carry the provider's (encrypted) refresh
	// token to the family.
	IdPRefresh []byte `json:"idp_refresh,omitempty"`
	IdPKeyID   string `json:"idp_key_id,omitempty"`

	ExpiresAt time.Time `json:"expires_at"`
	// UsedAt is set by the first redemption; FamilyID names the family it
	// started, so that a replay can revoke it.
	UsedAt   time.Time `json:"used_at,omitzero"`
	FamilyID string    `json:"family_id,omitempty"`
}

// OAuth stores token families and authorization codes.
type OAuth interface {
	// CreateCode stores a new code (synced). ErrExists if present.
	CreateCode(ctx context.Context, c *Code) error
	// UpdateCode applies fn to the code atomically (fn may run more than
	// once and must have no side effects). ErrNotFound when absent. Codes
	// are kept at least until ExpiresAt plus a minute, used or not, so a
	// replay is recognised.
	UpdateCode(ctx context.Context, h Hash, fn func(*Code) error) (*Code, error)

	// CreateFamily stores a new family (synced). ErrExists if present.
	CreateFamily(ctx context.Context, f *Family) error
	// Family returns the family, or ErrNotFound.
	Family(ctx context.Context, id string) (*Family, error)
	// UpdateFamily applies fn to the family atomically (fn may run more
	// than once and must have no side effects; an error aborts and is
	// returned unchanged). ErrNotFound when absent.
	UpdateFamily(ctx context.Context, id string, fn func(*Family) error) (*Family, error)
	// TokensForFamily lists the access tokens whose FamilyID is id.
	TokensForFamily(ctx context.Context, id string) ([]*Token, error)
}
