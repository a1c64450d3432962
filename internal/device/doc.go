// Package device emulates an Apple device going through account-driven
// enrollment and talking MDM afterwards.
//
// It is an independent, strict implementation of the device side of the
// protocol: service discovery, the enrollment POSTs, the 401 Bearer
// challenge, the web sign-in (apple-as-web) or OAuth 2 (apple-oauth2) flow,
// the enrollment profile, and MDM check-ins and command traffic carrying
// Mdm-Signature and Authorization: Bearer. It shares no code with the
// server's Apple wire-format package, so it can catch the server's mistakes.
//
// A typical run:
//
//	d, err := device.New(device.Config{
//		Family: "iPhone", Product: "iPhone17,2", OSVersion: "23A300", Language: "en-US",
//		UserIdentifier: "alice@example.com",
//		DiscoveryBase:  "https://example.com",
//		HTTPClient:     client,
//		Identity:       mdmIdentity, // e.g. device.NewIssued(ca, "…")
//		Browser:        &device.FormBrowser{Client: client, Username: "alice", Password: pw},
//	})
//	profile, err := d.Enroll(ctx)
//	err = d.Authenticate(ctx, device.DeviceChannel)
//	err = d.TokenUpdate(ctx, device.DeviceChannel)
//	cmd, err := d.Poll(ctx, device.DeviceChannel)         // nil: nothing queued
//	next, err := d.Acknowledge(ctx, device.DeviceChannel, cmd)
//
// # Strictness
//
// Wherever a real iPhone or Mac would refuse a server answer, the emulator
// fails with a *ProtocolError whose Reason names the deviation. It checks:
//
//   - discovery: 200 with media type application/json and exactly
//     {"Servers":[{"Version":…,"BaseURL":…}]} (no other key, one entry,
//     no duplicate keys, Version mdm-byod or mdm-adde, https BaseURL);
//     redirects are followed without copying the query; a 403 must be JSON
//     with code com.apple.well-known.failed (then a *RefusedError);
//   - the first enrollment POST: 401 (200 is a deviation; 403 JSON is a
//     *RefusedError); only 307/308 redirects; exactly one WWW-Authenticate
//     header with one challenge, scheme "Bearer" (case-sensitive),
//     lower-case parameter names, quoted values without '"' or '\', ", "
//     separators, no unknown parameter (redirect-uri is named), and the
//     parameters of apple-as-web or apple-oauth2;
//   - Enrollment SSO, on that 401 only: X-Apple-MDM-ESSO (or, with
//     Config.DeveloperESSO, X-Apple-MDM-ESSO-Developer) must never reach a
//     Mac; it names one https URL, fetched with DeviceManagementClient/1.0
//     and no Authorization, answered 200 application/json with an
//     EnrollmentSSODocument of the documented keys and types (see
//     ParseESSODocument; Device.ESSO returns it); the sign-in then runs
//     unchanged;
//   - the sign-in: the challenge url opened with its query replaced by
//     ?user-identifier=…; the final redirect to
//     apple-remotemanagement-user-login: must be a 308 (FormBrowser) and
//     allowed by the login page's Content-Security-Policy form-action; the
//     callback's scheme, host authentication-results and access-token;
//     OAuth 2: echoed state, token answer 200 JSON with token_type Bearer;
//   - the second POST: 401 ends the enrollment (ErrAccountInvalidated); 200
//     must be application/x-apple-aspen-config;
//   - the profile (XML, or CMS-signed XML): a Configuration with standard
//     payload keys and one com.apple.mdm payload whose EnrollmentMode
//     matches the discovered Version, with AssignedManagedAppleID, no
//     ManagedAppleID, no AccessRights for BYOD, https ServerURL and
//     CheckInURL, a com.apple.mgmt. Topic, SignMessage true and an
//     IdentityCertificateUUID naming the profile's SCEP/ACME/PKCS#12 payload;
//   - MDM traffic: 200, or 401 with a valid challenge (the device signs in
//     again, counts a prompt and retries once; with an OAuth 2 refresh token
//     it refreshes silently first). A 401 on CheckOut or on a Mac's device
//     channel (which never carries the bearer) is a deviation; other
//     statuses are *HTTPError.
//
// Package devicetest provides a conforming fake server to test against.
package device
