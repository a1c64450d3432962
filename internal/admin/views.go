package admin

import (
	"time"

	"github.com/mdmauth/mdmauth/internal/store"
)

// Enrollment is the API's view of an enrollment.
type Enrollment struct {
	ID             string      `json:"id"`
	Issuer         string      `json:"iss,omitempty"`
	Subject        string      `json:"sub,omitempty"`
	ManagedAppleID string      `json:"managed_apple_id,omitempty"`
	Mode           string      `json:"mode,omitempty"`
	Platform       string      `json:"platform,omitempty"`
	State          store.State `json:"state"`
	Deadline       *time.Time  `json:"deadline,omitempty"`
	// TokenID names the token bound to the enrollment.
	TokenID   string    `json:"token_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Token states in views.
const (
	TokenLive    = "live"
	TokenExpired = "expired"
	TokenRevoked = "revoked"
)

// Token is the API's view of an access token: never the token or its
// hash, only its token id.
type Token struct {
	TokenID        string     `json:"token_id"`
	State          string     `json:"state"`
	Issuer         string     `json:"iss"`
	Subject        string     `json:"sub"`
	UserIdentifier string     `json:"user_identifier,omitempty"`
	ManagedAppleID string     `json:"managed_apple_id"`
	Mode           string     `json:"mode"`
	ModelFamily    string     `json:"model_family,omitempty"`
	EnrollmentID   string     `json:"enrollment_id,omitempty"`
	FamilyID       string     `json:"family_id,omitempty"`
	Profile        string     `json:"profile,omitempty"`
	RequiredAppID  int64      `json:"required_app_id,omitempty"`
	IssuedAt       time.Time  `json:"issued_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
}

// Family is the API's view of an OAuth 2 token family: no refresh token
// hashes and no identity provider token.
type Family struct {
	FamilyID       string     `json:"family_id"`
	State          string     `json:"state"`
	Issuer         string     `json:"iss"`
	Subject        string     `json:"sub"`
	ManagedAppleID string     `json:"managed_apple_id,omitempty"`
	Mode           string     `json:"mode,omitempty"`
	ModelFamily    string     `json:"model_family,omitempty"`
	ClientID       string     `json:"client_id,omitempty"`
	EnrollmentID   string     `json:"enrollment_id,omitempty"`
	SignedInAt     time.Time  `json:"signed_in_at"`
	RotatedAt      *time.Time `json:"rotated_at,omitempty"`
	Generation     uint64     `json:"generation"`
	ExpiresAt      time.Time  `json:"expires_at"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	RevokeReason   string     `json:"revoke_reason,omitempty"`
	RevalidatedAt  *time.Time `json:"revalidated_at,omitempty"`
	// IdPRefreshKept says whether the family keeps the identity
	// provider's (encrypted) refresh token.
	IdPRefreshKept bool `json:"idp_refresh_kept"`
}

func enrollmentView(e *store.Enrollment) Enrollment {
	v := Enrollment{
		ID: e.ID, Issuer: e.Issuer, Subject: e.Subject, ManagedAppleID: e.ManagedAppleID,
		Mode: e.Mode, Platform: e.Platform, State: e.State, Deadline: timeOrZero(e.Deadline),
		CreatedAt: e.CreatedAt.UTC(), UpdatedAt: e.UpdatedAt.UTC(),
	}
	if e.TokenHash != (store.Hash{}) {
		v.TokenID = e.TokenHash.ID()
	}
	return v
}

// grantState is the state in views of a token or token family that was
// revoked at revokedAt (zero if not) and expires at expiresAt.
func grantState(revokedAt, expiresAt, now time.Time) string {
	switch {
	case !revokedAt.IsZero():
		return TokenRevoked
	case !now.Before(expiresAt):
		return TokenExpired
	}
	return TokenLive
}

func tokenView(t *store.Token, now time.Time) Token {
	return Token{
		TokenID: t.Hash.ID(), State: grantState(t.RevokedAt, t.ExpiresAt, now),
		Issuer: t.Issuer, Subject: t.Subject, UserIdentifier: t.UserIdentifier,
		ManagedAppleID: t.ManagedAppleID, Mode: t.Mode, ModelFamily: t.ModelFamily,
		EnrollmentID: t.EnrollmentID, FamilyID: t.FamilyID, Profile: t.Profile, RequiredAppID: t.RequiredAppID,
		IssuedAt: t.IssuedAt.UTC(), ExpiresAt: t.ExpiresAt.UTC(), RevokedAt: timeOrZero(t.RevokedAt),
	}
}

func familyView(f *store.Family, now time.Time) Family {
	return Family{
		FamilyID: f.ID, State: grantState(f.RevokedAt, f.ExpiresAt, now), Issuer: f.Issuer, Subject: f.Subject,
		ManagedAppleID: f.ManagedAppleID, Mode: f.Mode, ModelFamily: f.ModelFamily, ClientID: f.ClientID,
		EnrollmentID: f.EnrollmentID, SignedInAt: f.SignedInAt.UTC(), RotatedAt: timeOrZero(f.RotatedAt),
		Generation: f.Generation, ExpiresAt: f.ExpiresAt.UTC(), RevokedAt: timeOrZero(f.RevokedAt),
		RevokeReason: f.RevokeReason, RevalidatedAt: timeOrZero(f.RevalidatedAt),
		IdPRefreshKept: len(f.IdPRefresh) > 0,
	}
}
