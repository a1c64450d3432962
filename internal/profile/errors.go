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

// Errors returned by Render for invalid Params.
var (
	// ErrUnknownMode is returned when Params.Mode is neither "byod" nor "adde".
	ErrUnknownMode = errors.New("profile: unknown enrollment mode")
	// ErrNoManagedAppleID is returned when Params.ManagedAppleID is empty.
	ErrNoManagedAppleID = errors.New("profile: managed Apple ID is required")
	// ErrRandom is returned when the random source fails or yields duplicate UUIDs.
	ErrRandom = errors.New("profile: random source failed")
)
