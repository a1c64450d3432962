package device

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Steps named in errors and log lines.
const (
	StepDiscovery = "discovery"
	StepEnroll    = "enroll"
	StepChallenge = "challenge"
	StepESSO      = "esso"
	StepSignIn    = "sign-in"
	StepCallback  = "callback"
	StepToken     = "token"
	StepProfile   = "profile"
	StepCheckIn   = "check-in"
	StepCommand   = "command"
	StepReAuth    = "re-auth"
)

// ErrAccountInvalidated is wrapped by the error Enroll returns when the
// second enrollment POST (the one carrying the bearer token) is answered
// with 401: a device reads that as "account invalidated" and ends the
// enrollment without signing in again.
var ErrAccountInvalidated = errors.New("account invalidated")

// ProtocolError reports a server answer that a real device would reject:
// the server deviates from the Apple protocol. Reason names the deviation.
type ProtocolError struct {
	Step   string // one of the Step constants
	Reason string
	Err    error // optional underlying error
}

// Error implements error.
func (e *ProtocolError) Error() string {
	s := e.Step + ": protocol deviation: " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error, if any.
func (e *ProtocolError) Unwrap() error { return e.Err }

func deviation(step, format string, args ...any) *ProtocolError {
	return &ProtocolError{Step: step, Reason: fmt.Sprintf(format, args...)}
}

// RefusedError is a deliberate refusal by the server that a device shows to
// the user: a 403 with a JSON body carrying code and message (discovery's
// com.apple.well-known.failed, or an enrollment refusal).
type RefusedError struct {
	Step        string
	Status      int
	Code        string
	Message     string // shown to the user
	Description string // for logs; optional
}

// Error implements error.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s: refused (HTTP %d, code %q): %s", e.Step, e.Status, e.Code, e.Message)
}

// HTTPError is a response status the device does not accept at that step
// and that is not a protocol-defined refusal.
type HTTPError struct {
	Step   string
	Status int
	Body   []byte // at most the first 64 KiB
}

// Error implements error.
func (e *HTTPError) Error() string {
	s := e.Step + ": HTTP " + strconv.Itoa(e.Status)
	if t := http.StatusText(e.Status); t != "" {
		s += " " + t
	}
	if len(e.Body) > 0 {
		s += ": " + snippet(e.Body, 200)
	}
	return s
}

// SignInError ends a web sign-in that did not reach the callback: an HTTP
// error page (Status >= 400), or a page the emulated user cannot get past
// (Status 200, Reason says why). Snippet holds the start of the page text,
// so tests can assert the reason shown to the user.
type SignInError struct {
	Status  int
	Reason  string
	URL     string // the page's URL without its query
	Snippet string
}

// Error implements error.
func (e *SignInError) Error() string {
	s := fmt.Sprintf("sign-in: page %s answered HTTP %d", e.URL, e.Status)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	if e.Snippet != "" {
		s += ": " + e.Snippet
	}
	return s
}

// OAuthError is an error=… answer from the authorization endpoint or an
// RFC 6749 error from the token endpoint.
type OAuthError struct {
	Step        string
	Status      int // token endpoint status; 0 for an authorization redirect
	Code        string
	Description string
}

// Error implements error.
func (e *OAuthError) Error() string {
	s := e.Step + ": OAuth error " + strconv.Quote(e.Code)
	if e.Status != 0 {
		s += " (HTTP " + strconv.Itoa(e.Status) + ")"
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}
