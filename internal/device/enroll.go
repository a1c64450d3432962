package device

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// enrollRequestContentType is what current devices send on the enrollment POST.
const enrollRequestContentType = "application/pkcs7-signature"

// EnrollmentRequest returns the enrollment POST body: DER CMS SignedData,
// signed by the built-in identity, with the XML plist {LANGUAGE, PRODUCT,
// VERSION} attached.
func (d *Device) EnrollmentRequest() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.enrollMsg != nil {
		return d.enrollMsg, nil
	}
	content, err := plist.MarshalIndent(map[string]string{
		"LANGUAGE": d.cfg.Language,
		"PRODUCT":  d.cfg.Product,
		"VERSION":  d.cfg.OSVersion,
	}, "\t")
	if err != nil {
		return nil, err
	}
	msg, err := signAttached(d.cfg.BuiltIn, content)
	if err != nil {
		return nil, fmt.Errorf("%s: signing the enrollment request: %w", StepEnroll, err)
	}
	d.enrollMsg = msg
	return msg, nil
}

// Enroll runs account-driven enrollment: discovery; the first enrollment
// POST, which must be answered 401 with exactly one valid challenge (403
// JSON is a *RefusedError); the Enrollment SSO document when that 401 names
// one (see ParseESSODocument; never for a Mac); the sign-in through the
// Browser; the second POST with the bearer token, which must be answered
// 200 with an application/x-apple-aspen-config profile (401 there means
// "account invalidated": ErrAccountInvalidated); the profile checks; then
// it installs the profile and generates the enrollment identifiers.
func (d *Device) Enroll(ctx context.Context) (*Profile, error) {
	version, baseURL, err := d.Discover(ctx)
	if err != nil {
		return nil, err
	}
	body, err := d.EnrollmentRequest()
	if err != nil {
		return nil, err
	}
	resp, respBody, err := d.enrollPOST(ctx, baseURL, body, "")
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
	case http.StatusOK:
		return nil, deviation(StepEnroll, "first enrollment POST (no Authorization) answered 200: the device requires a 401 challenge and fails the enrollment")
	case http.StatusForbidden:
		if ref, err := parseRefusal(StepEnroll, resp, respBody); err == nil {
			return nil, ref
		}
		return nil, &HTTPError{Step: StepEnroll, Status: resp.StatusCode, Body: respBody}
	default:
		return nil, &HTTPError{Step: StepEnroll, Status: resp.StatusCode, Body: respBody}
	}
	ch, err := ParseChallenge(resp.Header)
	if err != nil {
		return nil, err
	}
	d.log(StepChallenge, "401 Bearer method=%s", ch.Method)
	// Enrollment SSO: the device fetches and installs the SSO app's
	// settings first; the SSO app then answers the same challenge.
	esso, err := d.enrollmentSSO(ctx, resp.Header)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.esso = esso
	d.mu.Unlock()
	token, err := d.signIn(ctx, ch)
	if err != nil {
		return nil, err
	}
	resp, respBody, err = d.enrollPOST(ctx, baseURL, body, token)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%s: second enrollment POST (with the bearer token) answered 401; the device ends the enrollment: %w: %w",
			StepEnroll, ErrAccountInvalidated, &HTTPError{Step: StepEnroll, Status: resp.StatusCode, Body: respBody})
	case http.StatusForbidden:
		if ref, err := parseRefusal(StepEnroll, resp, respBody); err == nil {
			return nil, ref
		}
		return nil, &HTTPError{Step: StepEnroll, Status: resp.StatusCode, Body: respBody}
	default:
		return nil, &HTTPError{Step: StepEnroll, Status: resp.StatusCode, Body: respBody}
	}
	if ct := resp.Header.Get("Content-Type"); mediaType(ct) != ProfileContentType {
		return nil, deviation(StepProfile, "Content-Type %q, want %s", ct, ProfileContentType)
	}
	p, err := parseProfile(respBody, version, d.cfg.InsecureHTTP)
	if err != nil {
		return nil, err
	}
	if roots := d.cfg.ProfileRoots; roots != nil {
		if !p.Signed {
			return nil, deviation(StepProfile, "profile is not signed, but a signed profile is expected")
		}
		p7, err := pkcs7.Parse(respBody)
		if err == nil {
			err = p7.VerifyWithChain(roots)
		}
		if err != nil {
			return nil, &ProtocolError{Step: StepProfile, Reason: "the profile's signer does not chain to the expected roots", Err: err}
		}
		d.log(StepProfile, "signature verified to the expected roots")
	}
	d.log(StepProfile, "EnrollmentMode %s, AssignedManagedAppleID %s, ServerURL %s, signed %t",
		p.EnrollmentMode, p.AssignedManagedAppleID, p.ServerURL, p.Signed)
	if err := d.install(p, version); err != nil {
		return nil, err
	}
	d.SetToken(token)
	return p, nil
}

// enrollPOST sends the enrollment request to baseURL, with the bearer
// token when token is set, following 307/308 redirects only.
func (d *Device) enrollPOST(ctx context.Context, baseURL string, body []byte, token string) (*http.Response, []byte, error) {
	u, err := d.checkURL(StepEnroll, "BaseURL", baseURL)
	if err != nil {
		return nil, nil, err
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(string(body)))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Content-Type", enrollRequestContentType)
		req.Header.Set("User-Agent", userAgentDMC)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, respBody, err := d.do(req, limitLarge)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", StepEnroll, err)
		}
		d.log(StepEnroll, "POST %s (bearer: %t) → %d", shortURL(u), token != "", resp.StatusCode)
		if !isRedirect(resp.StatusCode) {
			return resp, respBody, nil
		}
		if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
			return nil, nil, deviation(StepEnroll, "enrollment POST redirected with %d, which drops the body (only 307/308 keep it)", resp.StatusCode)
		}
		if hop >= maxRedirects {
			return nil, nil, deviation(StepEnroll, "more than %d redirects", maxRedirects)
		}
		next, err := redirectTarget(StepEnroll, u, resp)
		if err != nil {
			return nil, nil, err
		}
		if u, err = d.checkURL(StepEnroll, "enrollment redirect", next.String()); err != nil {
			return nil, nil, err
		}
	}
}

// Install makes the device use p as its installed enrollment profile
// without running Enroll, e.g. to talk to NanoMDM directly. It checks the
// MDM URLs and generates the enrollment identifiers: for BYOD a random
// EnrollmentID (and EnrollmentUserID on a Mac), for ADDE a UDID and serial
// number (and UserID, UserShortName, UserLongName on a Mac).
func (d *Device) Install(p *Profile) error {
	d.mu.Lock()
	version := d.version
	d.mu.Unlock()
	return d.install(p, version)
}

func (d *Device) install(p *Profile, version string) error {
	if p == nil {
		return errors.New("device: Install: nil profile")
	}
	switch {
	case p.EnrollmentMode == ModeBYOD && version != VersionADDE:
	case p.EnrollmentMode == ModeADDE && version != VersionBYOD:
	default:
		return deviation(StepProfile, "EnrollmentMode %q does not fit the discovered Version %q", p.EnrollmentMode, version)
	}
	if err := p.checkURLs(d.cfg.InsecureHTTP); err != nil {
		return err
	}
	if p.Topic == "" {
		return deviation(StepProfile, "profile has no Topic")
	}
	ids, err := d.newIDs(p.EnrollmentMode)
	if err != nil {
		return err
	}
	magic, err := newUUID(d.rand)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.profile, d.ids, d.pushMagic = p, ids, magic
	d.mu.Unlock()
	d.log(StepProfile, "installed: %s channel id %s", p.EnrollmentMode, d.EnrollmentKey())
	return nil
}

func (d *Device) newIDs(mode string) (IDs, error) {
	var ids IDs
	var err error
	if mode == ModeBYOD {
		if ids.EnrollmentID, err = newUUID(d.rand); err != nil {
			return ids, err
		}
		if d.mac {
			ids.EnrollmentUserID, err = newUUID(d.rand)
		}
		return ids, err
	}
	if ids.UDID, err = newUDID(d.rand, d.cfg.Family); err != nil {
		return ids, err
	}
	if ids.SerialNumber, err = newSerial(d.rand); err != nil {
		return ids, err
	}
	if d.mac {
		if ids.UserID, err = newUUID(d.rand); err != nil {
			return ids, err
		}
		local, _, _ := strings.Cut(d.cfg.UserIdentifier, "@")
		ids.UserShortName = local
		ids.UserLongName = local
	}
	return ids, nil
}
