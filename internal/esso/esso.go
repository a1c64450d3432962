package esso

import (
	"encoding/json"
)

// Header names the Enrollment SSO document URL on the enrollment 401.
const Header = "X-Apple-MDM-ESSO"

// DeveloperHeader replaces Header for test devices that have Developer >
// Enrollment SSO enabled; the document it names carries AppIDs.
const DeveloperHeader = "X-Apple-MDM-ESSO-Developer"

// HeaderName returns the header that names the document: DeveloperHeader in
// test mode, Header otherwise.
func HeaderName(testMode bool) string {
	if testMode {
		return DeveloperHeader
	}
	return Header
}

// Config describes the Enrollment SSO app and how to set it up before
// enrollment.
type Config struct {
	// ITunesStoreID is the App Store id of the app with the SSO extension.
	// Required unless TestMode (a test device ignores it).
	ITunesStoreID int64
	// AssociatedDomains are the app's associated domains, each "service:host"
	// or a host, e.g. "authsrv:login.example.com". Optional.
	AssociatedDomains []string
	// DirectDownloads sets AssociatedDomainsEnableDirectDownloads: the device
	// verifies the site association at the domain itself instead of at
	// Apple's servers (for domains not reachable from the Internet).
	DirectDownloads bool
	// ConfigurationProfile is an unsigned .mobileconfig (XML property list)
	// holding com.apple.extensiblesso payloads and, optionally, certificate
	// payloads. Optional when Declarations are given.
	ConfigurationProfile []byte
	// Declarations are declarative management declarations (JSON, iOS
	// 18.4+): one com.apple.activation.simple referencing every
	// configuration, one com.apple.configuration.app.managed for the SSO
	// app, the assets it references, and com.apple.configuration.legacy
	// configurations. Devices that support them use them instead of the
	// profile. Optional when ConfigurationProfile is given.
	Declarations [][]byte
	// AppIDs are the test apps (TEAMID.bundle.id) a test device may use.
	// Test mode only, where at least one is required.
	AppIDs []string
	// TestMode builds the document served through DeveloperHeader.
	TestMode bool
}

// document is the EnrollmentSSODocument, in Apple's key spelling. []byte
// fields are encoded as base64 by encoding/json.
type document struct {
	ITunesStoreID        int64    `json:"iTunesStoreID,omitempty"`
	AppIDs               []string `json:"AppIDs,omitempty"`
	AssociatedDomains    []string `json:"AssociatedDomains,omitempty"`
	DirectDownloads      bool     `json:"AssociatedDomainsEnableDirectDownloads,omitempty"`
	ConfigurationProfile []byte   `json:"ConfigurationProfile,omitempty"`
	Declarations         [][]byte `json:"Declarations,omitempty"`
}

// Build validates c and returns the EnrollmentSSODocument JSON to serve at
// the URL named by HeaderName(c.TestMode). Keys are present only when set:
// iTunesStoreID (an integer), AppIDs (test mode only),
// AssociatedDomains, AssociatedDomainsEnableDirectDownloads (only when
// true), ConfigurationProfile (base64 of the profile bytes) and
// Declarations (base64 of each declaration). Errors are *ConfigError.
func Build(c Config) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	doc := document{
		ITunesStoreID:        c.ITunesStoreID,
		AssociatedDomains:    c.AssociatedDomains,
		DirectDownloads:      c.DirectDownloads,
		ConfigurationProfile: c.ConfigurationProfile,
		Declarations:         c.Declarations,
	}
	if c.TestMode {
		doc.AppIDs = c.AppIDs
	}
	return json.Marshal(doc)
}

func (c *Config) validate() error {
	switch {
	case c.ITunesStoreID < 0:
		return problem("ITunesStoreID %d is negative; give the App Store id of the app with the SSO extension", c.ITunesStoreID)
	case c.ITunesStoreID == 0 && !c.TestMode:
		return problem("ITunesStoreID is required: the App Store id of the app with the SSO extension (only test mode can do without it)")
	}
	if err := checkAppIDs(c.AppIDs, c.TestMode); err != nil {
		return err
	}
	if err := checkAssociatedDomains(c.AssociatedDomains); err != nil {
		return err
	}
	if c.DirectDownloads && len(c.AssociatedDomains) == 0 {
		return problem("DirectDownloads (AssociatedDomainsEnableDirectDownloads) is set without AssociatedDomains")
	}
	if len(c.ConfigurationProfile) == 0 && len(c.Declarations) == 0 {
		return problem("give a ConfigurationProfile, Declarations, or both: the document needs at least one of them")
	}
	if len(c.ConfigurationProfile) > 0 {
		if err := checkProfile(c.ConfigurationProfile); err != nil {
			return err
		}
	}
	if len(c.Declarations) > 0 {
		if err := checkDeclarations(c.Declarations, c.ITunesStoreID, c.TestMode, c.AppIDs); err != nil {
			return err
		}
	}
	return nil
}
