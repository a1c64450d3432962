package apple

import "strings"

// Message is what the gateway needs from a check-in or command-report body:
// the top-level string values of a few keys. Absent keys are "".
type Message struct {
	// MessageType is the check-in type (Authenticate, TokenUpdate,
	// CheckOut, ...); "" for command reports.
	MessageType string
	// Status is the command-report status (Idle, Acknowledged, Error,
	// CommandFormatError, NotNow); "" for check-ins.
	Status string
	// CommandUUID identifies the command a report answers.
	CommandUUID string

	// UDID identifies a device enrolled through Device Enrollment.
	UDID string
	// EnrollmentID identifies a User Enrollment (no UDID is sent).
	EnrollmentID string
	// UserID identifies the macOS user channel of a Device Enrollment.
	UserID string
	// EnrollmentUserID identifies the macOS user channel of a User Enrollment.
	EnrollmentUserID string

	// Model and ProductName come from Authenticate, such as "iPhone17,2"
	// or "Mac14,2".
	Model       string
	ProductName string

	// Topic is the APNs topic of the enrollment.
	Topic string
}

// EnrollmentKey returns the identifier of the enrollment the message belongs
// to: EnrollmentID when set, UDID otherwise. For a user channel it is the
// key of the device the user channel runs on.
func (m Message) EnrollmentKey() string {
	if m.EnrollmentID != "" {
		return m.EnrollmentID
	}
	return m.UDID
}

// UserChannel reports whether the message comes from a macOS user channel,
// that is whether UserID or EnrollmentUserID is set.
func (m Message) UserChannel() bool {
	return m.UserID != "" || m.EnrollmentUserID != ""
}

// macFamilies are the model identifier prefixes of Macs, current and past.
var macFamilies = [...]string{
	"Mac", "MacBook", "MacBookAir", "MacBookPro", "MacPro", "Macmini",
	"iMac", "iMacPro", "VirtualMac", "Xserve",
}

// IsMacModel reports whether s, a Model or ProductName value, names a Mac:
// a Mac family (Mac, MacBook, MacBookAir, MacBookPro, MacPro, Macmini, iMac,
// iMacPro, VirtualMac, Xserve) followed by digits, a comma and digits, as in
// "Mac14,2", "MacBookPro18,3" or "VirtualMac2,1". It is false for iPhone,
// iPad, RealityDevice, AppleTV and Watch identifiers.
func IsMacModel(s string) bool {
	i := 0
	for i < len(s) && ('a' <= s[i] && s[i] <= 'z' || 'A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	family, rest := s[:i], s[i:]
	known := false
	for _, f := range macFamilies {
		if family == f {
			known = true
			break
		}
	}
	if !known {
		return false
	}
	major, minor, ok := strings.Cut(rest, ",")
	return ok && allDigits(major) && allDigits(minor)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
