package profile

import (
	"crypto/rand"
	"fmt"
	"io"
	"strings"

	"github.com/micromdm/plist"
)

// Enrollment modes accepted in Params.Mode.
const (
	ModeBYOD = "byod" // User Enrollment (discovery version mdm-byod); EnrollmentMode "BYOD"
	ModeADDE = "adde" // account-driven Device Enrollment (mdm-adde); EnrollmentMode "ADDE"
)

// Params are the per-enrollment values for Render.
type Params struct {
	Mode           string    // "byod" → EnrollmentMode "BYOD", "adde" → "ADDE"; anything else is an error
	ManagedAppleID string    // required, set as AssignedManagedAppleID
	Rand           io.Reader // source for new UUIDs; nil = crypto/rand

	// RequiredAppID, when positive, is set as RequiredAppIDForMDM (the App Store id of the app
	// the enrollment requires, iOS 15.1+). Zero leaves the template's value, if any.
	// Negative is an error.
	RequiredAppID int64
}

// Render returns the profile for one enrollment as an XML plist.
//
// In the com.apple.mdm payload it sets EnrollmentMode and AssignedManagedAppleID, removes
// AccessRights for BYOD (Apple's device cancels a BYOD enrollment that has them), always removes
// the legacy ManagedAppleID key and, when Params.RequiredAppID is positive, sets
// RequiredAppIDForMDM. The profile and every payload get fresh upper-case UUIDs, and every string
// value equal (ignoring case) to a template PayloadUUID is rewritten to the new UUID, so
// references such as IdentityCertificateUUID stay intact. PayloadIdentifier values and all other
// content are preserved.
func (t *Template) Render(p Params) ([]byte, error) {
	var enrollmentMode string
	switch p.Mode {
	case ModeBYOD:
		enrollmentMode = "BYOD"
	case ModeADDE:
		enrollmentMode = "ADDE"
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownMode, p.Mode)
	}
	if strings.TrimSpace(p.ManagedAppleID) == "" {
		return nil, ErrNoManagedAppleID
	}
	if p.RequiredAppID < 0 {
		return nil, fmt.Errorf("%w: %d", ErrRequiredAppID, p.RequiredAppID)
	}
	r := p.Rand
	if r == nil {
		r = rand.Reader
	}

	c := copier{slot: t.uuidSlot, fresh: make([]string, t.nSlots)}
	seen := make(map[string]struct{}, t.nSlots)
	for i := range c.fresh {
		u, err := newUUID(r)
		if err != nil {
			return nil, err
		}
		if _, dup := seen[u]; dup {
			return nil, fmt.Errorf("%w: duplicate UUID generated", ErrRandom)
		}
		seen[u] = struct{}{}
		c.fresh[i] = u
	}

	root := c.dict(t.root)
	// The string rewrite already replaced every PayloadUUID; the MDM payload needs its keys.
	mdm := root[keyPayloadContent].([]any)[t.mdmIndex].(map[string]any)
	mdm[keyEnrollmentMode] = enrollmentMode
	mdm[keyAssignedManagedAppleID] = p.ManagedAppleID
	delete(mdm, keyManagedAppleID)
	if p.Mode == ModeBYOD {
		delete(mdm, keyAccessRights)
	}
	if p.RequiredAppID > 0 {
		mdm[keyRequiredAppIDForMDM] = p.RequiredAppID
	}

	out, err := plist.MarshalIndent(root, "\t")
	if err != nil {
		return nil, fmt.Errorf("profile: encoding plist: %w", err)
	}
	return out, nil
}

// copier deep-copies a decoded plist tree, replacing template payload UUIDs with fresh ones.
// Dictionaries and arrays are copied; strings, numbers, dates and data are immutable and shared.
type copier struct {
	slot  map[string]int // upper-case template UUID → index into fresh
	fresh []string
}

func (c *copier) value(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return c.dict(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = c.value(e)
		}
		return out
	case string:
		if len(x) == 36 {
			if i, ok := c.slot[strings.ToUpper(x)]; ok {
				return c.fresh[i]
			}
		}
		return x
	default:
		return v
	}
}

func (c *copier) dict(d map[string]any) map[string]any {
	out := make(map[string]any, len(d))
	for k, e := range d {
		out[k] = c.value(e)
	}
	return out
}
