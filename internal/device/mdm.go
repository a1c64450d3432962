package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
)

// MDM media types.
const (
	CheckInContentType = "application/x-apple-aspen-mdm-checkin"
	CommandContentType = "application/x-apple-aspen-mdm"
)

// sendsBearer reports whether requests on ch carry the bearer token: a Mac
// sends it on the user channel only, other devices on every request.
func (d *Device) sendsBearer(ch Channel) bool {
	return !d.mac || ch == UserChannel
}

// mdmRequest is one check-in or command request.
type mdmRequest struct {
	step     string // StepCheckIn or StepCommand
	what     string // e.g. "TokenUpdate" or "Status Idle"
	ch       Channel
	body     []byte
	checkOut bool // CheckOut: the device cannot handle a 401
}

// sendMDM sends r with Mdm-Signature and (per channel) the bearer token.
// A 401 with a valid challenge makes the device refresh silently (OAuth 2
// with a refresh token) or ask the user to sign in again, then retry once.
func (d *Device) sendMDM(ctx context.Context, r mdmRequest) ([]byte, error) {
	p := d.Profile()
	if p == nil {
		return nil, fmt.Errorf("%s: device is not enrolled", r.step)
	}
	target, contentType := p.ServerURL, CommandContentType
	if r.step == StepCheckIn {
		contentType = CheckInContentType
		if p.CheckInURL != "" {
			target = p.CheckInURL
		}
	}
	for attempt := 0; ; attempt++ {
		opts := SendOptions{Method: http.MethodPut, ContentType: contentType}
		if !d.sendsBearer(r.ch) {
			opts.NoBearer = true
		}
		resp, body, err := d.Send(ctx, target, r.body, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", r.step, r.what, err)
		}
		d.log(r.step, "%s (%s, bearer: %t) → %d", r.what, r.ch, !opts.NoBearer && d.Token() != "", resp.StatusCode)
		switch resp.StatusCode {
		case http.StatusOK:
			return body, nil
		case http.StatusUnauthorized:
		default:
			return nil, &HTTPError{Step: r.step, Status: resp.StatusCode, Body: body}
		}
		if !d.sendsBearer(r.ch) {
			return nil, deviation(r.step, "%s on a Mac device channel answered 401: a Mac never sends the bearer token there", r.what)
		}
		if r.checkOut {
			return nil, deviation(r.step, "CheckOut answered 401: the device cannot handle a 401 on CheckOut; accept it even with an expired token")
		}
		if resp.Header.Get(ESSOHeader) != "" || resp.Header.Get(ESSODeveloperHeader) != "" {
			d.log(r.step, "note: Enrollment SSO header on an MDM 401 ignored (it belongs on the enrollment 401 only)")
		}
		ch, err := ParseChallenge(resp.Header)
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				pe.Reason = "401 on " + r.what + " without a valid challenge: " + pe.Reason
			}
			return nil, err
		}
		if attempt > 0 {
			return nil, fmt.Errorf("%s: %s answered 401 again after a new sign-in: %w",
				r.step, r.what, &HTTPError{Step: r.step, Status: resp.StatusCode, Body: body})
		}
		if err := d.reauthenticate(ctx, ch); err != nil {
			return nil, err
		}
	}
}

// reauthenticate gets a new access token after a 401 on an MDM request.
func (d *Device) reauthenticate(ctx context.Context, ch *Challenge) error {
	tok, held, err := d.refresh(ctx)
	if held && err == nil {
		d.log(StepReAuth, "silent refresh succeeded")
		d.SetToken(tok)
		return nil
	}
	if held {
		d.log(StepReAuth, "silent refresh failed (%v); asking the user to sign in", err)
	}
	d.mu.Lock()
	d.prompts++
	d.mu.Unlock()
	d.log(StepReAuth, "asking the user to sign in again (method %s)", ch.Method)
	tok, err = d.signIn(ctx, ch)
	if err != nil {
		return fmt.Errorf("%s: %w", StepReAuth, err)
	}
	d.SetToken(tok)
	return nil
}

// SendOptions tune Send. The zero value sends a signed PUT check-in with
// the current bearer token.
type SendOptions struct {
	Method      string // default PUT
	ContentType string // default CheckInContentType
	// Bearer, when set, is sent instead of the current token.
	Bearer string
	// NoBearer omits the Authorization header.
	NoBearer bool
	// Signer signs Mdm-Signature instead of Config.Identity.
	Signer *Identity
	// NoSignature omits Mdm-Signature.
	NoSignature bool
	// Header holds extra headers (set after the defaults).
	Header http.Header
}

// Send is the raw request helper for negative tests (forged bodies, a
// missing bearer, a foreign signature). It applies no protocol checks and
// no 401 handling. The returned response's Body is already read and closed.
func (d *Device) Send(ctx context.Context, url string, body []byte, opts SendOptions) (*http.Response, []byte, error) {
	method := opts.Method
	if method == "" {
		method = http.MethodPut
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	ct := opts.ContentType
	if ct == "" {
		ct = CheckInContentType
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", userAgentMDM)
	if !opts.NoSignature {
		signer := opts.Signer
		if signer == nil {
			signer = d.cfg.Identity
		}
		if signer == nil {
			return nil, nil, errors.New("no MDM identity configured (Config.Identity)")
		}
		sig, err := mdmSignature(signer, body)
		if err != nil {
			return nil, nil, fmt.Errorf("Mdm-Signature: %w", err)
		}
		req.Header.Set("Mdm-Signature", sig)
	}
	if !opts.NoBearer {
		tok := opts.Bearer
		if tok == "" {
			tok = d.Token()
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	for k, vs := range opts.Header {
		req.Header[k] = vs
	}
	return d.do(req, limitLarge)
}
