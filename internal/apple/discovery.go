package apple

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// WellKnownPath is the path of the service discovery endpoint a device
// requests on the domain of the identifier the user typed.
const WellKnownPath = "/.well-known/com.apple.remotemanagement"

// Limits applied to discovery requests.
const (
	maxDiscoveryQuery    = 2048
	maxUserIdentifierLen = 320
)

// Messages shown to the user when discovery refuses a request.
const (
	msgBadIdentifier = "Enter your full work account, such as name@example.com."
	msgBadRequest    = "This device sent a request the server cannot handle."
)

// DiscoveryRequest is a parsed service discovery query.
type DiscoveryRequest struct {
	// UserIdentifier is the identifier as typed, percent-decoded.
	UserIdentifier string
	// LocalPart is the part of UserIdentifier before the '@'.
	LocalPart string
	// Domain is the part of UserIdentifier after the '@', lower-cased.
	Domain string
	// ModelFamily is one of AppleTV, iPad, iPhone, Mac, RealityDevice,
	// Watch, or "" when the device did not send it.
	ModelFamily string
}

// ParseDiscoveryQuery parses the raw query of a discovery request with
// RFC 3986 rules: parameters are separated by '&', names and values are
// percent-decoded, and '+' stays '+' (devices do not encode it).
//
// user-identifier is required: exactly one '@', a non-empty local part and
// domain, at most 320 bytes of valid UTF-8 without spaces or control
// characters. model-family is optional; when present it must be one of
// AppleTV, iPad, iPhone, Mac, RealityDevice, Watch (case-sensitive).
// Repeating either parameter, bad percent-encoding anywhere, or a raw query
// longer than 2048 bytes is refused with a *RequestError. Other parameters
// are ignored.
func ParseDiscoveryQuery(rawQuery string) (DiscoveryRequest, error) {
	var req DiscoveryRequest
	if len(rawQuery) > maxDiscoveryQuery {
		return req, &RequestError{Reason: "discovery query too long", Message: msgBadRequest}
	}
	var haveUser, haveFamily bool
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.PathUnescape(rawName)
		if err != nil {
			return DiscoveryRequest{}, &RequestError{Reason: "bad percent-encoding in discovery query", Message: msgBadRequest}
		}
		value, err := url.PathUnescape(rawValue)
		if err != nil {
			return DiscoveryRequest{}, &RequestError{Reason: "bad percent-encoding in discovery query", Message: msgBadRequest}
		}
		switch name {
		case "user-identifier":
			if haveUser {
				return DiscoveryRequest{}, &RequestError{Reason: "repeated user-identifier", Message: msgBadRequest}
			}
			haveUser = true
			req.UserIdentifier = value
		case "model-family":
			if haveFamily {
				return DiscoveryRequest{}, &RequestError{Reason: "repeated model-family", Message: msgBadRequest}
			}
			haveFamily = true
			req.ModelFamily = value
		}
	}
	if !haveUser || req.UserIdentifier == "" {
		return DiscoveryRequest{}, &RequestError{Reason: "missing user-identifier", Message: msgBadIdentifier}
	}
	local, domain, err := splitUserIdentifier(req.UserIdentifier)
	if err != nil {
		return DiscoveryRequest{}, err
	}
	req.LocalPart = local
	req.Domain = strings.ToLower(domain)
	if haveFamily && !knownModelFamily(req.ModelFamily) {
		return DiscoveryRequest{}, &RequestError{Reason: "unknown model-family", Message: msgBadRequest}
	}
	return req, nil
}

// splitUserIdentifier validates id and splits it at its only '@'.
func splitUserIdentifier(id string) (local, domain string, err error) {
	if len(id) > maxUserIdentifierLen {
		return "", "", &RequestError{Reason: "user-identifier too long", Message: msgBadIdentifier}
	}
	if !utf8.ValidString(id) {
		return "", "", &RequestError{Reason: "user-identifier is not valid UTF-8", Message: msgBadIdentifier}
	}
	for _, r := range id {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return "", "", &RequestError{Reason: "user-identifier contains spaces or control characters", Message: msgBadIdentifier}
		}
	}
	if n := strings.Count(id, "@"); n != 1 {
		return "", "", &RequestError{Reason: "user-identifier must contain exactly one '@'", Message: msgBadIdentifier}
	}
	local, domain, _ = strings.Cut(id, "@")
	if local == "" || domain == "" {
		return "", "", &RequestError{Reason: "user-identifier has an empty local part or domain", Message: msgBadIdentifier}
	}
	return local, domain, nil
}

// knownModelFamily reports whether s is a model-family value devices send.
func knownModelFamily(s string) bool {
	switch s {
	case "AppleTV", "iPad", "iPhone", "Mac", "RealityDevice", "Watch":
		return true
	}
	return false
}

// SupportsAccountDrivenEnrollment reports whether a device of the given
// model family can enroll through account-driven enrollment. It is false for
// AppleTV and Watch and true otherwise, including for a missing ("") family.
func SupportsAccountDrivenEnrollment(modelFamily string) bool {
	switch modelFamily {
	case "AppleTV", "Watch":
		return false
	}
	return true
}

type discoveryServer struct {
	Version string
	BaseURL string
}

type discoveryBody struct {
	Servers []discoveryServer
}

// DiscoveryResponse renders the 200 body of a discovery answer, exactly
// {"Servers":[{"Version":"mdm-byod","BaseURL":"..."}]} with one server, no
// other keys and no trailing newline. An unknown mode renders an empty
// Version, which devices refuse.
func DiscoveryResponse(m Mode, baseURL string) []byte {
	return mustJSON(discoveryBody{Servers: []discoveryServer{{Version: m.Version(), BaseURL: baseURL}}})
}

type wellKnownFailed struct {
	Code        string `json:"code"`
	Description string `json:"description"`
	Message     string `json:"message"`
}

// wellKnownFailedCode is the code of a discovery refusal body.
const wellKnownFailedCode = "com.apple.well-known.failed"

// WellKnownFailed renders the 403 body of a discovery refusal:
// {"code":"com.apple.well-known.failed","description":...,"message":...}.
// description is for logs, message is shown to the user.
func WellKnownFailed(description, message string) []byte {
	return mustJSON(wellKnownFailed{Code: wellKnownFailedCode, Description: description, Message: message})
}

type enrollmentRefused struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// EnrollmentRefused renders a 403 JSON body {"code":code,"message":message}
// refusing an enrollment request. The device shows message to the user.
func EnrollmentRefused(code, message string) []byte {
	return mustJSON(enrollmentRefused{Code: code, Message: message})
}

// mustJSON marshals values that cannot fail to marshal (structs of strings)
// without HTML escaping, so '&' in a URL stays '&', and without the trailing
// newline of json.Encoder.
func mustJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("apple: marshal of string-only struct failed: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
