// Package esso builds the Enrollment SSO document an MDM serves during
// account-driven enrollment (iOS/iPadOS 16+, visionOS 2+; never macOS).
//
// On the enrollment 401, next to WWW-Authenticate, the server names the
// document's URL in the X-Apple-MDM-ESSO header (X-Apple-MDM-ESSO-Developer
// for test devices with Developer > Enrollment SSO enabled). The device GETs
// that URL and expects a JSON EnrollmentSSODocument:
//
//	{"iTunesStoreID":1234567890,
//	 "AssociatedDomains":["authsrv:login.example.com"],
//	 "ConfigurationProfile":"<base64 of a .mobileconfig>",
//	 "Declarations":["<base64 of a declaration>", …]}
//
// Build checks a Config against Apple's rules (the profile holds only
// com.apple.extensiblesso and certificate payloads; the declarations are one
// com.apple.activation.simple, the com.apple.configuration.app.managed of the
// SSO app, assets and legacy profiles) and renders that document. The
// package does no I/O: the caller reads the profile and declaration files and
// serves the bytes Build returns with Content-Type application/json.
package esso
