package device_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

func TestEnrollBYODWebSignIn(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	_, mdmID, builtIn := identities(t)
	d, logs := newDevice(t, srv, func(c *device.Config) { c.UserIdentifier = "a+b@example.com" })
	ctx := testContext(t)

	p, err := d.Enroll(ctx)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if p.EnrollmentMode != device.ModeBYOD || p.AssignedManagedAppleID != "alice@example.com" ||
		p.ServerURL != srv.MDMURL() || p.CheckInURL != srv.MDMURL() || p.Topic != "com.apple.mgmt.External.devicetest" ||
		!p.SignMessage || p.IdentityPayloadType != "com.apple.security.scep" || p.Signed {
		t.Errorf("profile = %+v", p)
	}

	// Discovery and sign-in carry the identifier as typed ('+' and '@' unencoded).
	if got, want := srv.Discoveries(), []string{"user-identifier=a+b@example.com&model-family=iPhone"}; !equal(got, want) {
		t.Errorf("discovery queries = %q, want %q", got, want)
	}
	if got, want := srv.SignInQueries(), []string{"user-identifier=a+b@example.com"}; !equal(got, want) {
		t.Errorf("sign-in queries = %q, want %q", got, want)
	}
	enrolls := srv.Enrollments()
	if len(enrolls) != 2 || enrolls[0].HasBearer || !enrolls[1].HasBearer {
		t.Fatalf("enrollment POSTs = %+v, want one without and one with a bearer", enrolls)
	}
	for _, e := range enrolls {
		if e.ContentType != "application/pkcs7-signature" || e.Err != "" || !e.Signer.Equal(builtIn.Cert) {
			t.Errorf("enrollment POST = %+v", e)
		}
		want := map[string]string{"LANGUAGE": "en-US", "PRODUCT": "iPhone17,2", "VERSION": "23A300"}
		if len(e.Content) != 3 || e.Content["LANGUAGE"] != want["LANGUAGE"] || e.Content["PRODUCT"] != want["PRODUCT"] || e.Content["VERSION"] != want["VERSION"] {
			t.Errorf("enrollment content = %v, want %v", e.Content, want)
		}
	}

	ids := d.IDs()
	if ids.EnrollmentID == "" || ids.UDID != "" || ids.SerialNumber != "" || ids.EnrollmentUserID != "" {
		t.Errorf("IDs = %+v, want only an EnrollmentID", ids)
	}
	if d.EnrollmentKey() != ids.EnrollmentID || d.Token() == "" {
		t.Errorf("EnrollmentKey = %q, token set %t", d.EnrollmentKey(), d.Token() != "")
	}

	if err := d.Authenticate(ctx, device.DeviceChannel); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if err := d.TokenUpdate(ctx, device.DeviceChannel); err != nil {
		t.Fatalf("TokenUpdate: %v", err)
	}
	if cmd, err := d.Poll(ctx, device.DeviceChannel); err != nil || cmd != nil {
		t.Fatalf("Poll on an empty queue = %v, %v", cmd, err)
	}
	uuid := srv.Enqueue(d.EnrollmentKey(), "ProfileList")
	cmd, err := d.Poll(ctx, device.DeviceChannel)
	if err != nil || cmd == nil || cmd.UUID != uuid || cmd.RequestType != "ProfileList" {
		t.Fatalf("Poll = %+v, %v; want ProfileList %s", cmd, err, uuid)
	}
	if next, err := d.Acknowledge(ctx, device.DeviceChannel, cmd); err != nil || next != nil {
		t.Fatalf("Acknowledge = %v, %v", next, err)
	}
	if err := d.CheckOut(ctx); err != nil {
		t.Fatalf("CheckOut: %v", err)
	}

	reqs := srv.MDMRequests()
	kinds := []string{"Authenticate", "TokenUpdate", "Status Idle", "Status Idle", "Status Acknowledged", "CheckOut"}
	if len(reqs) != len(kinds) {
		t.Fatalf("%d MDM requests, want %d", len(reqs), len(kinds))
	}
	for i, r := range reqs {
		wantCT := "application/x-apple-aspen-mdm-checkin"
		if strings.HasPrefix(kinds[i], "Status") {
			wantCT = "application/x-apple-aspen-mdm"
		}
		if r.Kind != kinds[i] || r.Status != 200 || !r.HasBearer || !r.TokenValid || r.ContentType != wantCT ||
			r.UserAgent != "MDM/1.0" || !r.Signer.Equal(mdmID.Cert) || r.ChannelID != ids.EnrollmentID {
			t.Errorf("MDM request %d = %+v, want %s", i, r, kinds[i])
		}
		if _, ok := r.Message["UDID"]; ok {
			t.Errorf("MDM request %d carries a UDID in a User Enrollment", i)
		}
	}
	if tu := reqs[1].Message; tu["Topic"] != p.Topic || len(tu["Token"].([]byte)) != 32 || tu["PushMagic"] == "" {
		t.Errorf("TokenUpdate = %v", tu)
	}
	if ack := reqs[4].Message; ack["CommandUUID"] != uuid {
		t.Errorf("Acknowledged result = %v", ack)
	}
	for _, l := range *logs {
		if strings.Contains(l, d.Token()) {
			t.Errorf("log line leaks the token: %q", l)
		}
	}
}

func TestEnrollADDEMac(t *testing.T) {
	srv := devicetest.New(devicetest.Options{Version: device.VersionADDE, MacDevice: true})
	defer srv.Close()
	d, _ := newDevice(t, srv, func(c *device.Config) {
		c.Family, c.Product, c.OSVersion = "Mac", "Mac14,2", "25A354"
	})
	ctx := testContext(t)
	p, err := d.Enroll(ctx)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if p.EnrollmentMode != device.ModeADDE {
		t.Errorf("EnrollmentMode = %q", p.EnrollmentMode)
	}
	ids := d.IDs()
	uuidRE := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	if !uuidRE.MatchString(ids.UDID) || !uuidRE.MatchString(ids.UserID) || ids.EnrollmentID != "" || ids.SerialNumber == "" || ids.UserShortName != "alice" {
		t.Errorf("IDs = %+v", ids)
	}
	if got, want := d.ChannelID(device.UserChannel), ids.UDID+":"+ids.UserID; got != want {
		t.Errorf("ChannelID(user) = %q, want %q", got, want)
	}
	if err := d.Authenticate(ctx, device.UserChannel); err == nil {
		t.Error("Authenticate on the user channel succeeded; the user channel starts with TokenUpdate")
	}
	for _, step := range []func() error{
		func() error { return d.Authenticate(ctx, device.DeviceChannel) },
		func() error { return d.TokenUpdate(ctx, device.DeviceChannel) },
		func() error { return d.TokenUpdate(ctx, device.UserChannel) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	srv.Enqueue(d.ChannelID(device.UserChannel), "InstalledApplicationList")
	cmd, err := d.Poll(ctx, device.UserChannel)
	if err != nil || cmd == nil || cmd.RequestType != "InstalledApplicationList" {
		t.Fatalf("user channel Poll = %+v, %v", cmd, err)
	}
	if _, err := d.Poll(ctx, device.DeviceChannel); err != nil {
		t.Fatalf("device channel Poll: %v", err)
	}
	reqs := srv.MDMRequests()
	if len(reqs) != 5 {
		t.Fatalf("%d MDM requests, want 5", len(reqs))
	}
	// A Mac sends the bearer on the user channel only.
	wantBearer := []bool{false, false, true, true, false}
	for i, r := range reqs {
		if r.HasBearer != wantBearer[i] || r.Status != 200 {
			t.Errorf("request %d (%s, %s): bearer %t status %d, want bearer %t", i, r.Kind, r.ChannelID, r.HasBearer, r.Status, wantBearer[i])
		}
	}
	auth := reqs[0].Message
	if auth["UDID"] != ids.UDID || auth["Model"] != "Mac14,2" || auth["DeviceName"] == nil || auth["ModelName"] == nil || auth["SerialNumber"] != ids.SerialNumber {
		t.Errorf("Authenticate = %v", auth)
	}
	if tu := reqs[2].Message; tu["UserID"] != ids.UserID || tu["UserShortName"] != "alice" || tu["UDID"] != ids.UDID {
		t.Errorf("user TokenUpdate = %v", tu)
	}
}

func TestEnrollBYODMacUserChannel(t *testing.T) {
	srv := devicetest.New(devicetest.Options{MacDevice: true})
	defer srv.Close()
	d, _ := newDevice(t, srv, func(c *device.Config) { c.Family, c.Product = "Mac", "MacBookPro18,3" })
	ctx := testContext(t)
	if _, err := d.Enroll(ctx); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	ids := d.IDs()
	if ids.EnrollmentID == "" || ids.EnrollmentUserID == "" || ids.UDID != "" || ids.UserID != "" {
		t.Fatalf("IDs = %+v", ids)
	}
	if err := d.TokenUpdate(ctx, device.UserChannel); err != nil {
		t.Fatal(err)
	}
	r := srv.MDMRequests()[0]
	if r.ChannelID != ids.EnrollmentID+":"+ids.EnrollmentUserID || !r.HasBearer {
		t.Errorf("user TokenUpdate = %+v", r)
	}
}

func TestEnrollOAuth2AndSilentRefresh(t *testing.T) {
	srv := devicetest.New(devicetest.Options{OAuth2: true})
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	ctx := testContext(t)
	if _, err := d.Enroll(ctx); err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	authz := srv.AuthorizeQueries()
	re := regexp.MustCompile(`^response_type=code&client_id=mdm-device&redirect_uri=apple-remotemanagement-user-login%3A%2Foauth2%2Fredirection&scope=mdm&state=[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}&login_hint=alice%40example.com$`)
	if len(authz) != 1 || !re.MatchString(authz[0]) {
		t.Errorf("authorization queries = %q", authz)
	}
	bodies := srv.TokenBodies()
	if len(bodies) != 1 || !regexp.MustCompile(`^grant_type=authorization_code&code=[0-9a-f]+&redirect_uri=apple-remotemanagement-user-login:/oauth2/redirection&client_id=mdm-device$`).MatchString(bodies[0]) {
		t.Errorf("token request bodies = %q", bodies)
	}
	if d.RefreshToken() == "" {
		t.Fatal("no refresh token kept")
	}
	if err := d.Authenticate(ctx, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}

	// An expired access token: silent refresh, no prompt.
	old := d.Token()
	srv.RevokeAccess()
	if err := d.TokenUpdate(ctx, device.DeviceChannel); err != nil {
		t.Fatalf("TokenUpdate after access revocation: %v", err)
	}
	if d.Refreshes() != 1 || d.Prompts() != 0 || d.Token() == old {
		t.Errorf("refreshes %d prompts %d token changed %t; want a silent refresh", d.Refreshes(), d.Prompts(), d.Token() != old)
	}
	if b := srv.TokenBodies(); len(b) != 2 || !strings.HasPrefix(b[1], "grant_type=refresh_token&refresh_token=") || !strings.HasSuffix(b[1], "&client_id=mdm-device") {
		t.Errorf("refresh body = %q", b)
	}

	// Everything revoked: the refresh fails, the user signs in again.
	srv.RevokeAll()
	if _, err := d.Poll(ctx, device.DeviceChannel); err != nil {
		t.Fatalf("Poll after revocation: %v", err)
	}
	if d.Refreshes() != 2 || d.Prompts() != 1 {
		t.Errorf("refreshes %d prompts %d; want a failed refresh then a prompt", d.Refreshes(), d.Prompts())
	}
}

func TestRefreshWithoutNewRefreshTokenStopsSilentRefresh(t *testing.T) {
	srv := devicetest.New(devicetest.Options{OAuth2: true, NoRefreshOnRefresh: true})
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	ctx := testContext(t)
	if _, err := d.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	srv.RevokeAccess()
	if _, err := d.Poll(ctx, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if d.RefreshToken() != "" || d.Refreshes() != 1 {
		t.Fatalf("refresh token kept %t, refreshes %d", d.RefreshToken() != "", d.Refreshes())
	}
	srv.RevokeAccess()
	if _, err := d.Poll(ctx, device.DeviceChannel); err != nil {
		t.Fatal(err)
	}
	if d.Refreshes() != 1 || d.Prompts() != 1 {
		t.Errorf("refreshes %d prompts %d; without a refresh token the user must sign in", d.Refreshes(), d.Prompts())
	}
}

func TestReauthenticationWebSignIn(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	ctx := testContext(t)
	if _, err := d.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	old := d.Token()
	srv.RevokeAll()
	srv.Enqueue(d.EnrollmentKey(), "DeviceInformation")
	cmd, err := d.Poll(ctx, device.DeviceChannel)
	if err != nil || cmd == nil {
		t.Fatalf("Poll after revocation = %v, %v", cmd, err)
	}
	if d.Prompts() != 1 || d.Token() == old || srv.Minted() != 2 {
		t.Errorf("prompts %d, token changed %t, minted %d", d.Prompts(), d.Token() != old, srv.Minted())
	}
	reqs := srv.MDMRequests()
	if len(reqs) != 2 || reqs[0].Status != 401 || reqs[1].Status != 200 {
		t.Errorf("MDM requests = %+v, want a 401 then the retried 200", reqs)
	}
	// CheckOut is accepted with a stolen, revoked token.
	srv.RevokeAll()
	if err := d.CheckOut(ctx); err != nil {
		t.Errorf("CheckOut with a revoked token: %v", err)
	}
}

func TestSendRawRequests(t *testing.T) {
	srv := devicetest.New(devicetest.Options{})
	defer srv.Close()
	d, _ := newDevice(t, srv, nil)
	ctx := testContext(t)
	if _, err := d.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	body, err := d.AuthenticateMessage()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := device.NewSelfSigned("intruder")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		opts   device.SendOptions
		status int
	}{
		{"as the device", device.SendOptions{}, 200},
		{"no bearer", device.SendOptions{NoBearer: true}, 401},
		{"forged bearer", device.SendOptions{Bearer: "forged"}, 401},
		{"no signature", device.SendOptions{NoSignature: true}, 400},
		{"foreign signer", device.SendOptions{Signer: foreign}, 200},
	} {
		resp, _, err := d.Send(ctx, srv.MDMURL(), body, tc.opts)
		if err != nil || resp.StatusCode != tc.status {
			t.Errorf("%s: status %v, err %v; want %d", tc.name, resp.StatusCode, err, tc.status)
		}
	}
	reqs := srv.MDMRequests()
	if last := reqs[len(reqs)-1]; !last.Signer.Equal(foreign.Cert) {
		t.Error("Send did not sign with the given Signer")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
