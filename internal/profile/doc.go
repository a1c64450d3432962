// Package profile turns an operator-supplied enrollment profile template (an XML .mobileconfig
// holding an identity payload and one com.apple.mdm payload) into the per-enrollment profile an
// account-driven enrollment answers with: EnrollmentMode and AssignedManagedAppleID set,
// AccessRights stripped for BYOD, the legacy ManagedAppleID key removed, and fresh payload UUIDs
// with every reference to them rewritten. A Signer wraps the result in CMS SignedData.
package profile
