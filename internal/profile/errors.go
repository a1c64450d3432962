package profile

import "errors"

// TemplateError reports why an enrollment profile template was rejected. Problem is written for
// the operator who configured the template.
type TemplateError struct {
	Problem string
}

// Error implements error.
func (e *TemplateError) Error() string {
	return "enrollment profile template: " + e.Problem
}

// SignerError reports why a profile signing certificate or key was rejected. Problem is written
// for the operator who configured them; Err, if set, is the underlying parse or verify error.
type SignerError struct {
	Problem string
	Err     error
}

// Error implements error.
func (e *SignerError) Error() string {
	msg := "profile signing identity: " + e.Problem
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error, if any.
func (e *SignerError) Unwrap() error { return e.Err }

// Errors returned by Render for invalid Params.
var (
	// ErrUnknownMode is returned when Params.Mode is neither "byod" nor "adde".
	ErrUnknownMode = errors.New("profile: unknown enrollment mode")
	// ErrNoManagedAppleID is returned when Params.ManagedAppleID is empty.
	ErrNoManagedAppleID = errors.New("profile: managed Apple ID is required")
	// ErrRequiredAppID is returned when Params.RequiredAppID is negative.
	ErrRequiredAppID = errors.New("profile: RequiredAppID must not be negative")
	// ErrRandom is returned when the random source fails or yields duplicate UUIDs.
	ErrRandom = errors.New("profile: random source failed")
)
