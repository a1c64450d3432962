package apple

import "fmt"

// Mode is the kind of account-driven enrollment a discovery answer announces.
type Mode string

const (
	// ModeBYOD is account-driven User Enrollment (discovery Version "mdm-byod").
	ModeBYOD Mode = "byod"
	// ModeADDE is account-driven Device Enrollment (discovery Version "mdm-adde").
	ModeADDE Mode = "adde"
)

// ParseMode parses a configured mode. Only "byod" and "adde" are accepted.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeBYOD, ModeADDE:
		return m, nil
	}
	return "", fmt.Errorf("apple: unknown enrollment mode %q (want %q or %q)", s, ModeBYOD, ModeADDE)
}

// Version returns the discovery Version string of m: "mdm-byod" or
// "mdm-adde". It returns "" for an unknown mode.
func (m Mode) Version() string {
	switch m {
	case ModeBYOD:
		return "mdm-byod"
	case ModeADDE:
		return "mdm-adde"
	}
	return ""
}

// EnrollmentMode returns the value of the EnrollmentMode key of the
// com.apple.mdm payload for m: "BYOD" or "ADDE". It returns "" for an unknown
// mode.
func (m Mode) EnrollmentMode() string {
	switch m {
	case ModeBYOD:
		return "BYOD"
	case ModeADDE:
		return "ADDE"
	}
	return ""
}
