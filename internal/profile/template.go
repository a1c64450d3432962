package profile

// Keys and values of the Configuration profile and its com.apple.mdm payload.
const (
	keyPayloadContent    = "PayloadContent"
	keyPayloadType       = "PayloadType"
	keyPayloadUUID       = "PayloadUUID"
	keyPayloadIdentifier = "PayloadIdentifier"

	keyServerURL               = "ServerURL"
	keyCheckInURL              = "CheckInURL"
	keyTopic                   = "Topic"
	keyIdentityCertificateUUID = "IdentityCertificateUUID"
	keyEnrollmentMode          = "EnrollmentMode"
	keyAssignedManagedAppleID  = "AssignedManagedAppleID"
	keyAccessRights            = "AccessRights"
	keyManagedAppleID          = "ManagedAppleID"
	keyChallenge               = "Challenge"
	keyRequiredAppIDForMDM     = "RequiredAppIDForMDM"

	typeConfiguration = "Configuration"
	typeMDM           = "com.apple.mdm"
	typeSCEP          = "com.apple.security.scep"
)

// Template is a parsed, validated enrollment profile template. Safe for concurrent use.
//
// The decoded plist tree is never modified after ParseTemplate; Render works on a deep copy.
type Template struct {
	root map[string]any // decoded top-level profile dictionary (read-only)

	// uuidSlot maps an upper-cased template PayloadUUID to its slot in a render's fresh UUID
	// list: 0 is the profile itself, i+1 is PayloadContent[i].
	uuidSlot map[string]int
	nSlots   int
	mdmIndex int // index of the com.apple.mdm payload in PayloadContent

	serverURL     string
	checkInURL    string
	topic         string
	scepChallenge bool
}

// ServerURL returns the com.apple.mdm payload's ServerURL.
func (t *Template) ServerURL() string { return t.serverURL }

// CheckInURL returns the com.apple.mdm payload's CheckInURL, or "" if the template has none.
func (t *Template) CheckInURL() string { return t.checkInURL }

// Topic returns the com.apple.mdm payload's APNs Topic.
func (t *Template) Topic() string { return t.topic }

// HasStaticSCEPChallenge reports whether a SCEP payload carries a Challenge string. Such a
// challenge is handed to every enrolling device, so anyone who obtains one profile can request
// certificates from the SCEP server.
func (t *Template) HasStaticSCEPChallenge() bool { return t.scepChallenge }
