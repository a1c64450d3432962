package device

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// Enrollment modes of the com.apple.mdm payload.
const (
	ModeBYOD = "BYOD"
	ModeADDE = "ADDE"
)

// ProfileContentType is the media type of the enrollment profile answer.
const ProfileContentType = "application/x-apple-aspen-config"

// identityPayloadTypes are the payloads IdentityCertificateUUID may point to.
var identityPayloadTypes = map[string]bool{
	"com.apple.security.scep":   true,
	"com.apple.security.acme":   true,
	"com.apple.security.pkcs12": true,
}

var uuidPattern = regexp.MustCompile(`^[0-9A-Za-z]{8}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{12}$`)

// Profile is what the device keeps from the enrollment profile's
// com.apple.mdm payload.
type Profile struct {
	EnrollmentMode          string // BYOD or ADDE
	AssignedManagedAppleID  string
	ServerURL               string
	CheckInURL              string // "" means ServerURL
	Topic                   string
	IdentityCertificateUUID string
	IdentityPayloadType     string // e.g. com.apple.security.scep
	SignMessage             bool
	CheckOutWhenRemoved     bool
	ServerCapabilities      []string
	RequiredAppIDForMDM     int64 // 0 when absent

	Signed bool   // the profile came as CMS SignedData (signature verified, chain not)
	Raw    []byte // the profile plist (the CMS content when signed)
}

// ParseProfile checks an enrollment profile body (XML plist, or CMS
// SignedData wrapping one) as a device does for an account-driven
// enrollment whose discovery answered version, and returns its
// com.apple.mdm settings. ServerURL and CheckInURL must be https.
func ParseProfile(body []byte, version string) (*Profile, error) {
	return parseProfile(body, version, false)
}

func parseProfile(body []byte, version string, allowHTTP bool) (*Profile, error) {
	content, signed, err := profileContent(StepProfile, "profile", body)
	if err != nil {
		return nil, err
	}
	var top map[string]any
	if err := plist.NewXMLDecoder(bytes.NewReader(content)).Decode(&top); err != nil {
		return nil, &ProtocolError{Step: StepProfile, Reason: "profile is not a valid XML property list dictionary", Err: err}
	}
	if err := checkPayloadHeader(StepProfile, top, "profile"); err != nil {
		return nil, err
	}
	if t := top["PayloadType"]; t != "Configuration" {
		return nil, deviation(StepProfile, "top-level PayloadType %v, want Configuration", t)
	}
	items, ok := top["PayloadContent"].([]any)
	if !ok || len(items) == 0 {
		return nil, deviation(StepProfile, "profile has no PayloadContent array")
	}
	var mdm map[string]any
	uuids := map[string]string{} // PayloadUUID → PayloadType
	for i, it := range items {
		p, ok := it.(map[string]any)
		if !ok {
			return nil, deviation(StepProfile, "PayloadContent[%d] is not a dictionary", i)
		}
		if err := checkPayloadHeader(StepProfile, p, fmt.Sprintf("PayloadContent[%d]", i)); err != nil {
			return nil, err
		}
		typ, _ := p["PayloadType"].(string)
		uuid, _ := p["PayloadUUID"].(string)
		uuids[uuid] = typ
		if typ == "com.apple.mdm" {
			if mdm != nil {
				return nil, deviation(StepProfile, "more than one com.apple.mdm payload")
			}
			mdm = p
		}
	}
	if mdm == nil {
		return nil, deviation(StepProfile, "no com.apple.mdm payload")
	}
	p := &Profile{Signed: signed, Raw: content}
	if err := p.readMDM(mdm, version); err != nil {
		return nil, err
	}
	p.IdentityPayloadType = uuids[p.IdentityCertificateUUID]
	if !identityPayloadTypes[p.IdentityPayloadType] {
		return nil, deviation(StepProfile, "IdentityCertificateUUID %s does not name an identity payload (SCEP, ACME or PKCS#12) in the profile", p.IdentityCertificateUUID)
	}
	if err := p.checkURLs(allowHTTP); err != nil {
		return nil, err
	}
	return p, nil
}

// profileContent unwraps a CMS-signed profile (verifying the signature, not
// the chain) or returns an XML plist as is. what names the profile in
// errors.
func profileContent(step, what string, body []byte) ([]byte, bool, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n\ufeff")
	switch {
	case len(trimmed) == 0:
		return nil, false, deviation(step, "empty %s", what)
	case bytes.HasPrefix(trimmed, []byte("bplist")):
		return nil, false, deviation(step, "binary property list %s (send XML, optionally CMS-signed)", what)
	case trimmed[0] == '<':
		return body, false, nil
	case body[0] == 0x30:
		p7, err := pkcs7.Parse(body)
		if err != nil {
			return nil, false, &ProtocolError{Step: step, Reason: what + " is neither XML nor CMS SignedData", Err: err}
		}
		if err := p7.Verify(); err != nil {
			return nil, false, &ProtocolError{Step: step, Reason: "signed " + what + "'s signature does not verify", Err: err}
		}
		if len(p7.Content) == 0 {
			return nil, false, deviation(step, "signed %s has no attached content", what)
		}
		c := bytes.TrimLeft(p7.Content, " \t\r\n\ufeff")
		if len(c) == 0 || c[0] != '<' {
			return nil, false, deviation(step, "signed %s content is not an XML property list", what)
		}
		return p7.Content, true, nil
	}
	return nil, false, deviation(step, "%s is neither an XML property list nor CMS SignedData", what)
}

// checkPayloadHeader requires the four standard payload keys.
func checkPayloadHeader(step string, p map[string]any, where string) error {
	for _, k := range []string{"PayloadType", "PayloadIdentifier", "PayloadUUID"} {
		if s, ok := p[k].(string); !ok || s == "" {
			return deviation(step, "%s has no string %s", where, k)
		}
	}
	if v, ok := plistInt(p["PayloadVersion"]); !ok || v != 1 {
		return deviation(step, "%s PayloadVersion %v, want integer 1", where, p["PayloadVersion"])
	}
	return nil
}

func (p *Profile) readMDM(m map[string]any, version string) error {
	if _, ok := m["ManagedAppleID"]; ok {
		return deviation(StepProfile, "com.apple.mdm has ManagedAppleID (removed profile-based key; use AssignedManagedAppleID)")
	}
	mode, ok := m["EnrollmentMode"].(string)
	if !ok || mode == "" {
		return deviation(StepProfile, "com.apple.mdm has no EnrollmentMode (required for account-driven enrollment)")
	}
	want := map[string]string{VersionBYOD: ModeBYOD, VersionADDE: ModeADDE}[version]
	if mode != ModeBYOD && mode != ModeADDE {
		return deviation(StepProfile, "EnrollmentMode %q, want BYOD or ADDE", mode)
	}
	if want != "" && mode != want {
		return deviation(StepProfile, "EnrollmentMode %s does not match the discovered Version %s (want %s)", mode, version, want)
	}
	p.EnrollmentMode = mode
	if p.AssignedManagedAppleID, ok = m["AssignedManagedAppleID"].(string); !ok || p.AssignedManagedAppleID == "" {
		return deviation(StepProfile, "com.apple.mdm has no AssignedManagedAppleID (required for account-driven enrollment)")
	}
	if _, ok := m["AccessRights"]; ok && mode == ModeBYOD {
		return deviation(StepProfile, "com.apple.mdm has AccessRights, which must be absent when EnrollmentMode is BYOD")
	}
	if p.ServerURL, ok = m["ServerURL"].(string); !ok || p.ServerURL == "" {
		return deviation(StepProfile, "com.apple.mdm has no ServerURL")
	}
	if v, present := m["CheckInURL"]; present {
		if p.CheckInURL, ok = v.(string); !ok || p.CheckInURL == "" {
			return deviation(StepProfile, "CheckInURL is not a non-empty string")
		}
	}
	if p.Topic, ok = m["Topic"].(string); !ok || p.Topic == "" {
		return deviation(StepProfile, "com.apple.mdm has no Topic")
	}
	if !strings.HasPrefix(p.Topic, "com.apple.mgmt.") {
		return deviation(StepProfile, "Topic %q must begin with com.apple.mgmt.", p.Topic)
	}
	if p.IdentityCertificateUUID, ok = m["IdentityCertificateUUID"].(string); !ok || !uuidPattern.MatchString(p.IdentityCertificateUUID) {
		return deviation(StepProfile, "com.apple.mdm has no valid IdentityCertificateUUID")
	}
	if v, present := m["SignMessage"]; present {
		if p.SignMessage, ok = v.(bool); !ok {
			return deviation(StepProfile, "SignMessage is not a boolean")
		}
	}
	if !p.SignMessage {
		// A device would then authenticate with its identity in TLS
		// instead; the deployment this emulator checks relies on
		// Mdm-Signature, and the emulator has no TLS client identity.
		return deviation(StepProfile, "SignMessage is not true: without it the device sends no Mdm-Signature")
	}
	if v, present := m["CheckOutWhenRemoved"]; present {
		if p.CheckOutWhenRemoved, ok = v.(bool); !ok {
			return deviation(StepProfile, "CheckOutWhenRemoved is not a boolean")
		}
	}
	if v, present := m["ServerCapabilities"]; present {
		arr, ok := v.([]any)
		if !ok {
			return deviation(StepProfile, "ServerCapabilities is not an array")
		}
		for _, c := range arr {
			s, ok := c.(string)
			if !ok {
				return deviation(StepProfile, "ServerCapabilities holds a non-string")
			}
			p.ServerCapabilities = append(p.ServerCapabilities, s)
		}
	}
	if v, present := m["RequiredAppIDForMDM"]; present {
		n, ok := plistInt(v)
		if !ok {
			return deviation(StepProfile, "RequiredAppIDForMDM is not an integer")
		}
		p.RequiredAppIDForMDM = n
	}
	return nil
}

func (p *Profile) checkURLs(allowHTTP bool) error {
	for _, f := range [][2]string{{"ServerURL", p.ServerURL}, {"CheckInURL", p.CheckInURL}} {
		if f[1] == "" {
			continue
		}
		u, err := url.Parse(f[1])
		if err != nil || !u.IsAbs() || u.Host == "" {
			return deviation(StepProfile, "%s %q is not an absolute URL", f[0], f[1])
		}
		if u.Scheme != "https" && !(allowHTTP && u.Scheme == "http") {
			return deviation(StepProfile, "%s %q must begin with https://", f[0], f[1])
		}
	}
	return nil
}

func plistInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case uint64:
		if n > 1<<63-1 {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}
