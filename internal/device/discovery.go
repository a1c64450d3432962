package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// DiscoveryPath is the well-known path of account-driven enrollment service
// discovery.
const DiscoveryPath = "/.well-known/com.apple.remotemanagement"

// Discovery Version values.
const (
	VersionBYOD = "mdm-byod" // account-driven User Enrollment
	VersionADDE = "mdm-adde" // account-driven Device Enrollment
)

// WellKnownFailedCode is the code of a discovery refusal.
const WellKnownFailedCode = "com.apple.well-known.failed"

// Discover performs service discovery: GET DiscoveryBase + DiscoveryPath
// with user-identifier and model-family, User-Agent
// DeviceManagementClient/1.0, no cookies and no Authorization. Redirects
// are followed without copying the query. The answer must be 200,
// application/json and exactly {"Servers":[{"Version":…,"BaseURL":…}]}. A
// 403 JSON com.apple.well-known.failed answer is a *RefusedError.
func (d *Device) Discover(ctx context.Context) (version, baseURL string, err error) {
	if d.cfg.DiscoveryBase == "" {
		return "", "", errors.New("discovery: no DiscoveryBase configured")
	}
	raw := strings.TrimSuffix(d.cfg.DiscoveryBase, "/") + DiscoveryPath +
		"?user-identifier=" + escapeQueryValue(d.cfg.UserIdentifier, keepIdentifier) +
		"&model-family=" + escapeQueryValue(d.cfg.Family, "")
	u, err := d.checkURL(StepDiscovery, "discovery URL", raw)
	if err != nil {
		return "", "", err
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return "", "", err
		}
		req.Header.Set("User-Agent", userAgentDMC)
		resp, body, err := d.do(req, limitSmall)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", StepDiscovery, err)
		}
		d.log(StepDiscovery, "GET %s → %d", shortURL(u), resp.StatusCode)
		if isRedirect(resp.StatusCode) {
			if hop >= maxRedirects {
				return "", "", deviation(StepDiscovery, "more than %d redirects", maxRedirects)
			}
			next, err := redirectTarget(StepDiscovery, u, resp)
			if err != nil {
				return "", "", err
			}
			// The device does not carry the query over: whatever the
			// Location says is what it asks next.
			if u, err = d.checkURL(StepDiscovery, "discovery redirect", next.String()); err != nil {
				return "", "", err
			}
			continue
		}
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusForbidden:
			return "", "", parseWellKnownFailed(resp, body)
		default:
			return "", "", &HTTPError{Step: StepDiscovery, Status: resp.StatusCode, Body: body}
		}
		version, baseURL, err = ParseDiscovery(resp.Header.Get("Content-Type"), body)
		if err != nil {
			return "", "", err
		}
		if _, err := d.checkURL(StepDiscovery, "BaseURL", baseURL); err != nil {
			return "", "", err
		}
		if !strings.Contains(strings.ToLower(resp.Header.Get("Cache-Control")), "no-store") {
			d.log(StepDiscovery, "note: answer lacks Cache-Control: no-store")
		}
		d.mu.Lock()
		d.version, d.baseURL = version, baseURL
		d.mu.Unlock()
		d.log(StepDiscovery, "Version %s, BaseURL %s", version, baseURL)
		return version, baseURL, nil
	}
}

// ParseDiscovery checks a 200 discovery answer the way a device does: media
// type application/json, a JSON object with only the key "Servers", holding
// an array of exactly one object with only the string keys "Version"
// (mdm-byod or mdm-adde) and "BaseURL". It does not check the URL scheme.
func ParseDiscovery(contentType string, body []byte) (version, baseURL string, err error) {
	if mt := mediaType(contentType); mt != "application/json" {
		return "", "", deviation(StepDiscovery, "Content-Type %q, want application/json", contentType)
	}
	top, err := parseStrictObject(body)
	if err != nil {
		return "", "", &ProtocolError{Step: StepDiscovery, Reason: "body is not a JSON object", Err: err}
	}
	for _, k := range top.Keys {
		if k != "Servers" {
			return "", "", deviation(StepDiscovery, "unexpected top-level key %q (only \"Servers\" is allowed)", k)
		}
	}
	rawServers, ok := top.Values["Servers"]
	if !ok {
		return "", "", deviation(StepDiscovery, "missing \"Servers\"")
	}
	var servers []json.RawMessage
	if err := json.Unmarshal(rawServers, &servers); err != nil || servers == nil {
		return "", "", deviation(StepDiscovery, "\"Servers\" is not a JSON array")
	}
	if len(servers) != 1 {
		return "", "", deviation(StepDiscovery, "\"Servers\" has %d entries, exactly one is required", len(servers))
	}
	server, err := parseStrictObject(servers[0])
	if err != nil {
		return "", "", &ProtocolError{Step: StepDiscovery, Reason: "server entry is not a JSON object", Err: err}
	}
	for _, k := range server.Keys {
		if k != "Version" && k != "BaseURL" {
			return "", "", deviation(StepDiscovery, "unexpected payload key %q in the server entry (only Version and BaseURL are allowed)", k)
		}
	}
	version, ok, err = server.stringField("Version")
	if err != nil || !ok {
		return "", "", deviation(StepDiscovery, "server entry needs a string \"Version\"")
	}
	if version != VersionBYOD && version != VersionADDE {
		return "", "", deviation(StepDiscovery, "Version %q, want %q or %q", version, VersionBYOD, VersionADDE)
	}
	baseURL, ok, err = server.stringField("BaseURL")
	if err != nil || !ok || baseURL == "" {
		return "", "", deviation(StepDiscovery, "server entry needs a string \"BaseURL\"")
	}
	return version, baseURL, nil
}

// parseWellKnownFailed turns a discovery 403 into a *RefusedError, or a
// ProtocolError when the body is not the JSON refusal a device can show.
func parseWellKnownFailed(resp *http.Response, body []byte) error {
	ref, err := parseRefusal(StepDiscovery, resp, body)
	if err != nil {
		return err
	}
	if ref.Code != WellKnownFailedCode {
		return deviation(StepDiscovery, "403 code %q, want %q", ref.Code, WellKnownFailedCode)
	}
	return ref
}

// parseRefusal reads a 403 JSON {"code","message","description"} body.
func parseRefusal(step string, resp *http.Response, body []byte) (*RefusedError, error) {
	ct := resp.Header.Get("Content-Type")
	if mediaType(ct) != "application/json" {
		return nil, deviation(step, "403 with Content-Type %q: a device only reads 403 bodies sent as application/json", ct)
	}
	obj, err := parseStrictObject(body)
	if err != nil {
		return nil, &ProtocolError{Step: step, Reason: "403 body is not a JSON object", Err: err}
	}
	ref := &RefusedError{Step: step, Status: resp.StatusCode}
	var ok bool
	if ref.Code, ok, err = obj.stringField("code"); err != nil || !ok || ref.Code == "" {
		return nil, deviation(step, "403 body needs a string \"code\"")
	}
	if ref.Message, _, err = obj.stringField("message"); err != nil {
		return nil, deviation(step, "403 body: %v", err)
	}
	if ref.Description, _, err = obj.stringField("description"); err != nil {
		return nil, deviation(step, "403 body: %v", err)
	}
	return ref, nil
}
