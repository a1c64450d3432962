package soak

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmauth/mdmauth/internal/admin"
	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/token"
)

// tokenState is what the soak knows about a device's current access token:
// it expires at some instant in [expLo, expHi] (a single instant for the
// tokens the soak minted), and revoked is set once an admin action or a
// CheckOut means the gateway must refuse it.
type tokenState struct {
	expLo, expHi time.Time
	revoked      bool
}

// expectation is what a request with the token must get.
type expectation int

const (
	mustAccept expectation = iota // live: a 401 is an error
	mustRefuse                    // revoked or expired: a 200 is an error
	mayRefuse                     // sent while it was expiring
)

// clockSlack absorbs the moments at which the gateway and the soak read
// the (same) clock.
const clockSlack = time.Second

// expect says what a request sent at sent and answered at received must
// get.
func (s tokenState) expect(sent, received time.Time) expectation {
	switch {
	case s.revoked:
		return mustRefuse
	case !sent.Before(s.expHi.Add(clockSlack)):
		return mustRefuse
	case received.Before(s.expLo.Add(-clockSlack)):
		return mustAccept
	}
	return mayRefuse
}

// opKind is an MDM request a device sends.
type opKind string

const (
	opAuthenticate opKind = "Authenticate"
	opTokenUpdate  opKind = "TokenUpdate"
	opIdle         opKind = "Status Idle"
	opAck          opKind = "Status Acknowledged"
)

// visitTimeout bounds one visit (a sign-in on a loaded machine included).
const visitTimeout = 3 * time.Minute

// errorf records an unexpected outcome, unless the run itself was
// interrupted (its requests then fail for that reason alone).
func (r *runner) errorf(kind, format string, args ...any) {
	if r.ctx.Err() != nil {
		return
	}
	r.errs.add(kind, format, args...)
}

// errFailed ends an operation whose error is already in the tally.
var errFailed = errors.New("soak: operation failed")

// adminKinds are the admin actions a visit may start with.
var adminKinds = []string{"token-revoke", "enrollment-revoke", "reauth", "block-unblock"}

// visit is one turn of a device: maybe an admin action, then a re-enrollment,
// a command, a TokenUpdate or a Status Idle.
func (r *runner) visit(ctx context.Context, dv *dev, rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(ctx, visitTimeout)
	defer cancel()
	r.c.visits.Add(1)
	if rng.Float64() < r.o.AdminShare && !dv.tok.revoked {
		r.adminAction(ctx, dv, adminKinds[rng.IntN(len(adminKinds))])
	}
	x := rng.Float64()
	switch {
	case x < r.o.ReenrollShare:
		r.reenroll(ctx, dv)
	case x < r.o.ReenrollShare+r.o.CommandShare:
		r.command(ctx, dv)
	case x < r.o.ReenrollShare+r.o.CommandShare+r.o.CheckInShare:
		if _, err := r.mdm(ctx, dv, opTokenUpdate, ""); err == nil {
			r.c.checkIns.Add(1)
		}
	default:
		if body, err := r.mdm(ctx, dv, opIdle, ""); err == nil {
			r.drain(ctx, dv, body)
		}
	}
}

// checkIn is a device's first contact through the gateway: Authenticate
// (which binds its first token to a new enrollment) and TokenUpdate.
func (r *runner) checkIn(ctx context.Context, dv *dev) {
	ctx, cancel := context.WithTimeout(ctx, visitTimeout)
	defer cancel()
	if _, err := r.mdm(ctx, dv, opAuthenticate, ""); err == nil {
		_, _ = r.mdm(ctx, dv, opTokenUpdate, "")
	}
}

// message builds the body of op and returns it with its URL and media type.
func message(d *device.Device, op opKind, commandUUID string) ([]byte, string, string, error) {
	p := d.Profile()
	ids := d.IDs()
	m := map[string]any{"EnrollmentID": ids.EnrollmentID}
	switch op {
	case opAuthenticate:
		b, err := d.AuthenticateMessage()
		return b, p.CheckInURL, device.CheckInContentType, err
	case opTokenUpdate:
		push := make([]byte, 32)
		if _, err := crand.Read(push); err != nil {
			return nil, "", "", err
		}
		m["MessageType"], m["Topic"], m["Token"], m["PushMagic"] = "TokenUpdate", p.Topic, push, newUUID()
		b, err := plist.MarshalIndent(m, "\t")
		return b, p.CheckInURL, device.CheckInContentType, err
	case opIdle:
		m["Status"] = "Idle"
	case opAck:
		m["Status"], m["CommandUUID"] = "Acknowledged", commandUUID
	}
	b, err := plist.MarshalIndent(m, "\t")
	return b, p.ServerURL, device.CommandContentType, err
}

// mdm sends op with the device's current token, without the emulator's 401
// handling, checks the answer against what the soak knows of the token,
// and after an expected 401 gets a new token (a refresh, or a sign-in
// through the emulator) and sends op again. It returns the body of the 200.
func (r *runner) mdm(ctx context.Context, dv *dev, op opKind, commandUUID string) ([]byte, error) {
	return r.send(ctx, dv, op, commandUUID, true)
}

// send is mdm; renew says whether a 401 may lead to a new token (false
// for the request sent again with one).
func (r *runner) send(ctx context.Context, dv *dev, op opKind, commandUUID string, renew bool) ([]byte, error) {
	body, target, ct, err := message(dv.d, op, commandUUID)
	if err != nil {
		r.errorf("soak: message", "%s: %v", op, err)
		return nil, errFailed
	}
	sent := time.Now()
	resp, rbody, err := dv.d.Send(ctx, target, body, device.SendOptions{ContentType: ct})
	received := time.Now()
	if err != nil {
		r.errorf("mdm: no answer", "%s: %v", op, err)
		return nil, errFailed
	}
	exp := dv.tok.expect(sent, received)
	switch resp.StatusCode {
	case http.StatusOK:
		if exp == mustRefuse {
			r.errorf("mdm: dead token accepted", "%s with a token that is %s was answered 200", op, dv.tok.why(sent))
		}
		r.c.accepted.Add(1)
		return rbody, nil
	case http.StatusUnauthorized:
	default:
		r.errorf(fmt.Sprintf("mdm: %d", resp.StatusCode), "%s answered %d: %s", op, resp.StatusCode, clip(strings.TrimSpace(string(rbody)), 200))
		return nil, errFailed
	}
	if !renew {
		r.errorf("mdm: 401 after a new token", "%s answered 401 right after the device got a new token", op)
		return nil, errFailed
	}
	switch {
	case exp == mustAccept:
		r.errorf("mdm: 401 on a live token", "%s answered 401 with a live token (expiring %s after the request)",
			op, dv.tok.expLo.Sub(received).Round(time.Second))
	case dv.tok.revoked:
		r.c.refusedRevoked.Add(1)
	default:
		r.c.refusedExpired.Add(1)
	}
	if dv.refresh != "" && r.refresh(ctx, dv) {
		return r.send(ctx, dv, op, commandUUID, false)
	}
	return r.signIn(ctx, dv, op, commandUUID)
}

// why names what makes a token dead at t.
func (s tokenState) why(t time.Time) string {
	if s.revoked {
		return "revoked"
	}
	return fmt.Sprintf("expired %s before", t.Sub(s.expHi).Round(time.Second))
}

// tokenAnswer is the token endpoint's JSON.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Error        string `json:"error"`
}

// refresh answers a 401 as a device holding a refresh token does: a
// refresh_token grant at the token endpoint. It reports whether the
// device got a new access token. After an admin action revoked the
// family, the refresh must be refused (invalid_grant); otherwise it must
// succeed.
func (r *runner) refresh(ctx context.Context, dv *dev) bool {
	rt := dv.refresh
	dv.refresh = ""
	form := "grant_type=refresh_token&refresh_token=" + url.QueryEscape(rt) + "&client_id=" + url.QueryEscape(oauth2ClientID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dv.site.tokenURL(), strings.NewReader(form))
	if err != nil {
		r.errorf("refresh: request", "%v", err)
		return false
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "DeviceManagementClient/1.0")
	sent := time.Now()
	resp, err := r.e.client.Do(req)
	if err != nil {
		r.errorf("refresh: no answer", "%v", err)
		return false
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	received := time.Now()
	if err != nil {
		r.errorf("refresh: no answer", "%v", err)
		return false
	}
	var ta tokenAnswer
	jerr := json.Unmarshal(b, &ta)
	switch {
	case resp.StatusCode == http.StatusOK:
		if jerr != nil || ta.AccessToken == "" || ta.RefreshToken == "" || ta.ExpiresIn <= 0 || !strings.EqualFold(ta.TokenType, "Bearer") {
			r.errorf("refresh: bad answer", "the token endpoint's 200 lacks a Bearer access token, refresh token or expires_in")
			return false
		}
		if dv.familyDead {
			r.errorf("refresh: revoked family refreshed", "a refresh token of a family revoked by an admin action was accepted")
		}
		dv.d.SetToken(ta.AccessToken)
		dv.refresh = ta.RefreshToken
		in := time.Duration(ta.ExpiresIn) * time.Second
		dv.tok = tokenState{expLo: sent.Add(in), expHi: received.Add(in + time.Second)}
		r.c.refreshes.Add(1)
		r.c.tokensIssued.Add(1)
		return true
	case resp.StatusCode == http.StatusBadRequest && jerr == nil && ta.Error == token.ErrCodeInvalidGrant:
		if dv.familyDead {
			r.c.refreshesRefused.Add(1)
		} else {
			r.errorf("refresh: live family refused", "the refresh of a family no admin action revoked was refused (invalid_grant)")
		}
		return false
	}
	r.errorf(fmt.Sprintf("refresh: %d", resp.StatusCode), "the token endpoint answered %d %s", resp.StatusCode, clip(ta.Error, 60))
	return false
}

// signIn lets the emulator handle op's 401 as a device does (a silent
// refresh when it holds a refresh token, else the user signs in again at
// the provider) and send op again; it returns the 200's body.
func (r *runner) signIn(ctx context.Context, dv *dev, op opKind, commandUUID string) ([]byte, error) {
	d := dv.d
	old, prompts, refreshes := d.Token(), d.Prompts(), d.Refreshes()
	start := time.Now()
	var (
		cmd *device.Command
		err error
	)
	switch op {
	case opIdle:
		cmd, err = d.Poll(ctx, device.DeviceChannel)
	case opAck:
		cmd, err = d.Report(ctx, device.DeviceChannel, commandUUID, "Acknowledged")
	case opTokenUpdate:
		err = d.TokenUpdate(ctx, device.DeviceChannel)
	case opAuthenticate:
		err = d.Authenticate(ctx, device.DeviceChannel)
	}
	end := time.Now()
	r.c.deviceRefreshes.Add(int64(d.Refreshes() - refreshes))
	if err != nil {
		r.errorf("re-auth: "+errorStep(err), "%s: %v", op, err)
		return nil, errFailed
	}
	if d.Token() == old || d.Prompts() != prompts+1 {
		r.errorf("re-auth: no sign-in", "%s: the device went on without signing in again", op)
	}
	dv.tok = dv.site.window(start, end)
	dv.refresh = d.RefreshToken()
	dv.familyDead = false
	if dv.site.oauth2 {
		r.c.signInsOAuth2.Add(1)
	} else {
		r.c.signInsWeb.Add(1)
	}
	r.c.tokensIssued.Add(1)
	if cmd != nil {
		return cmd.Raw, nil
	}
	return nil, nil
}

// errorStep names the step an emulator error happened at.
func errorStep(err error) string {
	var (
		pe *device.ProtocolError
		he *device.HTTPError
		se *device.SignInError
		oe *device.OAuthError
		re *device.RefusedError
	)
	switch {
	case errors.As(err, &pe):
		return pe.Step + " deviation"
	case errors.As(err, &he):
		return fmt.Sprintf("%s %d", he.Step, he.Status)
	case errors.As(err, &se):
		return fmt.Sprintf("%s %d", device.StepSignIn, se.Status)
	case errors.As(err, &oe):
		return oe.Step + " " + oe.Code
	case errors.As(err, &re):
		return re.Step + " refused"
	}
	return "other"
}

// drain acknowledges commands an answer carried that the visit did not
// queue (left over from a failed visit).
func (r *runner) drain(ctx context.Context, dv *dev, body []byte) {
	for range 5 {
		cmd, err := device.ParseCommand(body)
		if err != nil {
			r.errorf("mdm: bad command", "%v", err)
			return
		}
		if cmd == nil {
			return
		}
		r.c.leftover.Add(1)
		if body, err = r.mdm(ctx, dv, opAck, cmd.UUID); err != nil {
			return
		}
	}
}

// command queues a command for the device at NanoMDM, polls it through
// the gateway and acknowledges it.
func (r *runner) command(ctx context.Context, dv *dev) {
	id := newUUID()
	cmd := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict><key>Command</key><dict><key>RequestType</key><string>ProfileList</string></dict><key>CommandUUID</key><string>` + id + `</string></dict></plist>
`)
	if _, err := r.e.nano.Enqueue(dv.d.EnrollmentKey(), cmd); err != nil {
		r.errorf("nanomdm: enqueue", "%v", err)
		return
	}
	body, err := r.mdm(ctx, dv, opIdle, "")
	if err != nil {
		return
	}
	got, err := device.ParseCommand(body)
	switch {
	case err != nil:
		r.errorf("mdm: bad command", "%v", err)
		return
	case got == nil || got.UUID != id:
		r.errorf("mdm: command not delivered", "the command queued at NanoMDM did not come with the next Status Idle")
		r.drain(ctx, dv, body)
		return
	}
	if body, err = r.mdm(ctx, dv, opAck, id); err != nil {
		return
	}
	r.c.commands.Add(1)
	r.drain(ctx, dv, body)
}

// reenroll checks the device out and enrolls it again as a new device
// (new MDM identity, new enrollment id) of the same user: discovery, the
// enrollment challenge, a sign-in, the profile, Authenticate, TokenUpdate.
func (r *runner) reenroll(ctx context.Context, dv *dev) {
	// CheckOut is accepted with the enrollment's own token in every state
	// but removed, even expired or revoked: a device cannot handle a 401
	// there.
	if err := dv.d.CheckOut(ctx); err != nil {
		r.errorf("checkout: "+errorStep(err), "%v", err)
		return
	}
	dv.tok.revoked, dv.familyDead, dv.refresh = true, true, ""
	dv.generation++
	d, err := r.e.newDevice(dv.site, dv.user, fmt.Sprintf("soak device %d.%d", dv.i, dv.generation))
	if err != nil {
		r.errorf("soak: device", "%v", err)
		return
	}
	start := time.Now()
	if _, err := d.Enroll(ctx); err != nil {
		r.errorf("enroll: "+errorStep(err), "%v", err)
		return
	}
	end := time.Now()
	dv.d, dv.tok, dv.refresh, dv.familyDead = d, dv.site.window(start, end), d.RefreshToken(), false
	r.c.enrollments.Add(1)
	r.c.tokensIssued.Add(1)
	if _, err := r.mdm(ctx, dv, opAuthenticate, ""); err == nil {
		_, _ = r.mdm(ctx, dv, opTokenUpdate, "")
	}
}

// adminAction changes the device's enrollment or token through Caddy's
// admin API, as an operator does; every kind leaves the device's token
// (and OAuth 2 family) refused until it signs in again.
func (r *runner) adminAction(ctx context.Context, dv *dev, kind string) {
	id := url.PathEscape(dv.d.EnrollmentKey())
	var err error
	switch kind {
	case "token-revoke":
		// A token that expired meanwhile stays "expired" (its family is
		// revoked all the same); a live one must be "revoked".
		var res admin.RevokeResult
		if err = r.adminPost(ctx, "tokens/"+token.HashOf(dv.d.Token()).ID()+"/revoke", &res); err == nil && res.Token.State == admin.TokenLive {
			err = fmt.Errorf("token still %q after revoke", res.Token.State)
		}
		if err == nil && res.Family != nil && res.Family.State == admin.TokenLive {
			err = fmt.Errorf("token family still %q after revoke", res.Family.State)
		}
	case "enrollment-revoke":
		err = r.enrollmentAction(ctx, id, "revoke", store.StateActive)
	case "reauth":
		err = r.enrollmentAction(ctx, id, "reauth", store.StateReauth)
	case "block-unblock":
		if err = r.enrollmentAction(ctx, id, "block", store.StateBlocked); err == nil {
			err = r.enrollmentAction(ctx, id, "unblock", store.StateReauth)
		}
	}
	if err != nil {
		r.errorf("admin: "+kind, "%v", err)
		return
	}
	dv.tok.revoked, dv.familyDead = true, true
	r.countAdmin(kind)
}

// enrollmentAction posts an enrollment action and checks the new state.
func (r *runner) enrollmentAction(ctx context.Context, id, action string, want store.State) error {
	var res admin.ActionResult
	if err := r.adminPost(ctx, "enrollments/"+id+"/"+action, &res); err != nil {
		return err
	}
	if res.Enrollment.State != want {
		return fmt.Errorf("%s: enrollment state %q, want %q", action, res.Enrollment.State, want)
	}
	return nil
}

// adminPost posts to the mdm_auth admin API and decodes the 200 answer.
func (r *runner) adminPost(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.e.adminURL+admin.DefaultPrefix+path, bytes.NewReader(nil))
	if err != nil {
		return err
	}
	resp, err := r.e.adminClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d: %s", strings.SplitN(path, "/", 2)[0], resp.StatusCode, clip(strings.TrimSpace(string(b)), 200))
	}
	return json.Unmarshal(b, out)
}

// newUUID returns a random upper-case UUID.
func newUUID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}
