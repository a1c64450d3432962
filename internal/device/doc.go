// Package device emulates an Apple device going through account-driven
// enrollment and talking MDM afterwards.
//
// It is an independent, strict implementation of the device side of the
// protocol: service discovery, the enrollment POSTs, the 401 Bearer
// challenge, the web sign-in (apple-as-web) or OAuth 2 (apple-oauth2) flow,
// the enrollment profile, and MDM check-ins and command traffic carrying
// Mdm-Signature and Authorization: Bearer. Wherever a real iPhone or Mac
// would refuse a server answer, the emulator fails with an error naming the
// deviation (see ProtocolError), so it doubles as a conformance checker for
// the server.
//
// A typical run:
//
//	d, err := device.New(device.Config{
//		Family: "iPhone", Product: "iPhone17,2", OSVersion: "23A300", Language: "en-US",
//		UserIdentifier: "alice@example.com",
//		DiscoveryBase:  "https://example.com",
//		Identity:       mdmIdentity,
//		Browser:        &device.FormBrowser{Username: "alice", Password: pw},
//	})
//	profile, err := d.Enroll(ctx)
//	err = d.Authenticate(ctx, device.DeviceChannel)
//	err = d.TokenUpdate(ctx, device.DeviceChannel)
//	cmd, err := d.Poll(ctx, device.DeviceChannel)
//
// The package deliberately shares no code with the server's Apple wire
// format package so that it can catch the server's mistakes.
package device
