package checker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mdmauth/mdmauth/internal/device"
)

// exampleAnswer is the shape of a discovery answer, for fixes.
const exampleAnswer = `{"Servers":[{"Version":"mdm-byod","BaseURL":"https://mdm.example.com/…"}]}`

// discover asks the discovery URL and follows redirects the way a device
// does. It returns the BaseURL to POST to, when one is usable.
func (w *walker) discover(ctx context.Context, base *url.URL) (*url.URL, bool) {
	raw := base.String() + device.DiscoveryPath +
		"?user-identifier=" + escapeQueryValue(w.o.Identifier, keepIdentifier) +
		"&model-family=" + escapeQueryValue(w.o.ModelFamily, "")
	w.rep.DiscoveryURL = raw
	u, err := url.Parse(raw)
	if err != nil {
		w.fatalf(StepDiscovery, "check the identifier and the discovery base", "discovery URL %q does not parse: %v", raw, err)
		return nil, false
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			w.fatalf(StepDiscovery, "check the discovery URL", "cannot build a request for %s: %v", redact(u), err)
			return nil, false
		}
		resp, body, ok := w.fetch(ctx, StepDiscovery, req, limitSmall)
		if !ok {
			return nil, false
		}
		if !isRedirect(resp.StatusCode) {
			return w.discoveryAnswer(u, resp, body)
		}
		if hop >= maxRedirects {
			w.fatalf(StepRedirect, "redirect discovery once, straight to the host that answers it",
				"more than %d redirects", maxRedirects)
			return nil, false
		}
		next, ok := w.discoveryRedirect(u, resp)
		if !ok {
			return nil, false
		}
		u = next
	}
}

// discoveryRedirect checks one redirect of the discovery request: a device
// follows it without copying the query, so the redirecting server must put
// user-identifier and model-family into Location itself.
func (w *walker) discoveryRedirect(from *url.URL, resp *http.Response) (*url.URL, bool) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		w.fatalf(StepRedirect, "send the full discovery URL of the MDM host in Location",
			"%s answered HTTP %d without a Location header", redact(from), resp.StatusCode)
		return nil, false
	}
	target, err := from.Parse(loc)
	if err != nil {
		w.fatalf(StepRedirect, "send an absolute https:// URL in Location",
			"%s redirected to %q, which is not a URL", redact(from), loc)
		return nil, false
	}
	w.rep.Redirects = append(w.rep.Redirects, target.String())
	if target.Scheme != "https" || target.Host == "" {
		w.fatalf(StepRedirect, "redirect to the https:// discovery URL of the MDM host",
			"%s redirected to %q: devices only follow https", redact(from), loc)
		return nil, false
	}
	uid, hasUID := rawQueryFirst(target.RawQuery, "user-identifier")
	mf, hasMF := rawQueryFirst(target.RawQuery, "model-family")
	var missing []string
	if !hasUID {
		missing = append(missing, "user-identifier")
	}
	if !hasMF {
		missing = append(missing, "model-family")
	}
	if len(missing) > 0 {
		want := *target
		want.RawQuery = "user-identifier=" + escapeQueryValue(w.o.Identifier, keepIdentifier) +
			"&model-family=" + escapeQueryValue(w.o.ModelFamily, "")
		w.fatalf(StepRedirect, "put user-identifier and model-family into Location yourself, e.g. Location: "+want.String(),
			"the HTTP %d redirect from %s to %s does not carry %s: a device does not copy the query onto the new URL",
			resp.StatusCode, redact(from), redact(target), strings.Join(missing, " and "))
	}
	if hasUID && uid != w.o.Identifier {
		w.fatalf(StepRedirect, "copy user-identifier into Location as received: percent-encode it, but leave '@' and '+' as they are and never turn '+' into a space",
			"the redirect changes user-identifier from %q to %q", w.o.Identifier, uid)
	}
	if hasMF && mf != w.o.ModelFamily {
		w.fatalf(StepRedirect, "copy model-family into Location as received",
			"the redirect changes model-family from %q to %q", w.o.ModelFamily, mf)
	}
	return target, true
}

// discoveryAnswer checks the final (non-redirect) discovery answer.
func (w *walker) discoveryAnswer(u *url.URL, resp *http.Response, body []byte) (*url.URL, bool) {
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusForbidden:
		w.refusal(resp, body)
		return nil, false
	case http.StatusNotFound:
		w.fatalf(StepDiscovery, "serve discovery at this URL: on the organization's website, redirect it to the MDM host (with the query in Location) or answer it there. "+
			"If you rely on Apple Business Manager instead, register the MDM's discovery URL there (mdm_service_discovery_url) and check that URL as the discovery base",
			"%s answered 404 Not Found: iOS 18.2, macOS 15.2 and later then ask Apple Business Manager, older devices fail", redact(u))
		return nil, false
	default:
		w.fatalf(StepDiscovery, `answer 200 with `+exampleAnswer+` (or 403 com.apple.well-known.failed to refuse)`,
			"%s answered HTTP %d: devices need 200", redact(u), resp.StatusCode)
		return nil, false
	}
	start := len(w.rep.Findings)
	ct := resp.Header.Get("Content-Type")
	if mt := mediaType(ct); mt != "application/json" {
		w.fatalf(StepDiscovery, "send Content-Type: application/json",
			"Content-Type %q: devices require application/json", ct)
	}
	findings, entries := analyzeDiscovery(body)
	w.rep.Findings = append(w.rep.Findings, findings...)
	if !w.hasFatal(StepDiscovery, start) {
		// The emulator's parser is the reference; anything it refuses
		// that the analysis above missed is still reported.
		if _, _, err := device.ParseDiscovery(ct, body); err != nil {
			w.fatalf(StepDiscovery, "answer exactly "+exampleAnswer, "%s", reason(err))
		}
	}
	if !hasDirective(resp.Header.Values("Cache-Control"), "no-store") {
		w.warnf(StepDiscovery, "send Cache-Control: no-store",
			"the answer has no Cache-Control: no-store, although it depends on the query and may be cached")
	}
	for _, e := range entries {
		if e.url != nil {
			w.rep.Version, w.rep.BaseURL = e.Version, e.BaseURL
			return e.url, true
		}
	}
	return nil, false
}

// refusal reports a 403 discovery answer.
func (w *walker) refusal(resp *http.Response, body []byte) {
	const serveFix = "if this user should enroll, answer them: add the domain to the discovery domains and allow the user and model family in the policy"
	ct := resp.Header.Get("Content-Type")
	if mediaType(ct) != "application/json" {
		w.fatalf(StepDiscovery, serveFix+`; to refuse, send 403 application/json {"code":"com.apple.well-known.failed","message":"…"}`,
			"403 with Content-Type %q: a device only reads 403 bodies sent as application/json and shows no reason", ct)
		return
	}
	obj, err := parseStrictObject(body)
	if err != nil {
		w.fatalf(StepDiscovery, serveFix+`; to refuse, send {"code":"com.apple.well-known.failed","message":"…"}`,
			"403 body is not a JSON object: %v", err)
		return
	}
	code, _ := jsonString(obj.Values["code"])
	message, _ := jsonString(obj.Values["message"])
	description, _ := jsonString(obj.Values["description"])
	if code != device.WellKnownFailedCode {
		w.fatalf(StepDiscovery, serveFix+`; to refuse, set "code" to exactly "com.apple.well-known.failed"`,
			"403 with code %q: devices only show refusals with code %q", code, device.WellKnownFailedCode)
		return
	}
	problem := fmt.Sprintf("the deployment refuses %s (403 %s); the device shows %q", w.o.Identifier, code, message)
	if description != "" {
		problem += fmt.Sprintf(" (description: %q)", description)
	}
	w.fatalf(StepDiscovery, serveFix, "%s", problem)
}

// serverEntry is one entry of "Servers"; url is set when BaseURL is an
// absolute https URL.
type serverEntry struct {
	Version, BaseURL string
	url              *url.URL
}

// analyzeDiscovery checks a 200 discovery body and reports every problem:
// not a JSON object, keys besides "Servers", "Servers" missing or not an
// array, zero or several entries, and for each entry: not an object, keys
// besides Version and BaseURL, Version missing or not mdm-byod/mdm-adde,
// BaseURL missing, not absolute or not https.
func analyzeDiscovery(body []byte) ([]Finding, []serverEntry) {
	var out []Finding
	add := func(fix, format string, args ...any) {
		out = append(out, Finding{Step: StepDiscovery, Problem: fmt.Sprintf(format, args...), Fix: fix, Fatal: true})
	}
	top, err := parseStrictObject(body)
	if err != nil {
		add("answer exactly "+exampleAnswer, "the body is not a valid JSON object: %v", err)
		return out, nil
	}
	for _, k := range top.Keys {
		if k != "Servers" {
			add(fmt.Sprintf("remove %q: send nothing but \"Servers\" at the top level", k),
				"unexpected top-level key %q", k)
		}
	}
	raw, ok := top.Values["Servers"]
	if !ok {
		add("answer exactly "+exampleAnswer, `the body has no "Servers"`)
		return out, nil
	}
	var items []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		add("make \"Servers\" an array holding one server entry: "+exampleAnswer, `"Servers" is not a JSON array`)
		return out, nil
	}
	switch len(items) {
	case 0:
		add("list exactly one server entry: "+exampleAnswer, `"Servers" is empty: devices need exactly one entry`)
	case 1:
	default:
		add("answer with a single entry; choose the mode per request (e.g. by model-family) instead of listing several",
			`"Servers" has %d entries: devices need exactly one`, len(items))
	}
	var entries []serverEntry
	for i, item := range items {
		where := "the server entry"
		if len(items) > 1 {
			where = fmt.Sprintf("server entry %d", i+1)
		}
		obj, err := parseStrictObject(item)
		if err != nil {
			add(`make each entry {"Version":…,"BaseURL":…}`, "%s is not a JSON object: %v", where, err)
			continue
		}
		for _, k := range obj.Keys {
			if k != "Version" && k != "BaseURL" {
				add(fmt.Sprintf("remove %q from the entry: only Version and BaseURL are allowed", k),
					"unexpected key %q in %s: devices fail with \"Unexpected payload keys\"", k, where)
			}
		}
		var e serverEntry
		version, ok := jsonString(obj.Values["Version"])
		switch {
		case !ok:
			add(`set "Version" to "mdm-byod" (User Enrollment) or "mdm-adde" (Device Enrollment)`,
				`%s has no string "Version"`, where)
		case version != device.VersionBYOD && version != device.VersionADDE:
			add(`set "Version" to "mdm-byod" (User Enrollment) or "mdm-adde" (Device Enrollment)`,
				"%s has Version %q: devices know only %q and %q", where, version, device.VersionBYOD, device.VersionADDE)
		}
		e.Version = version
		base, ok := jsonString(obj.Values["BaseURL"])
		if !ok || base == "" {
			add(`set "BaseURL" to the https:// enrollment URL`, `%s has no string "BaseURL"`, where)
			entries = append(entries, e)
			continue
		}
		e.BaseURL = base
		u, err := absoluteURL(base)
		switch {
		case err != nil:
			add("advertise the full https://host/path enrollment URL", "%s has BaseURL %q, which is not an absolute URL", where, base)
		case u.Scheme != "https":
			add("advertise an https:// BaseURL (behind a TLS-terminating proxy, configure the public https URL)",
				"%s has BaseURL %q: devices only use https", where, base)
		default:
			e.url = u
		}
		entries = append(entries, e)
	}
	return out, entries
}

// hasDirective reports whether a Cache-Control header carries directive.
func hasDirective(values []string, directive string) bool {
	for _, v := range values {
		for d := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(d), "=")
			if strings.EqualFold(name, directive) {
				return true
			}
		}
	}
	return false
}

// reason returns the Reason of an emulator *device.ProtocolError, or the
// error text.
func reason(err error) string {
	var pe *device.ProtocolError
	if errors.As(err, &pe) {
		if pe.Err != nil {
			return pe.Reason + ": " + pe.Err.Error()
		}
		return pe.Reason
	}
	return err.Error()
}
