package checker

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mdmauth/mdmauth/internal/device"
)

// enrollContentType is what current devices send on the enrollment POST.
const enrollContentType = "application/pkcs7-signature"

// exampleChallenge is a valid challenge, for fixes.
const exampleChallenge = `WWW-Authenticate: Bearer method="apple-as-web", url="https://mdm.example.com/…"`

// enrollmentBody returns the body a device of the checked family POSTs: a
// CMS SignedData with the LANGUAGE/PRODUCT/VERSION plist, signed by a
// throwaway self-signed identity (the emulator's).
func enrollmentBody(o Options) ([]byte, error) {
	d, err := device.New(device.Config{
		Family: o.ModelFamily, Product: products[o.ModelFamily], OSVersion: "23A300", Language: "en-US",
		UserIdentifier: o.Identifier,
	})
	if err != nil {
		return nil, err
	}
	return d.EnrollmentRequest()
}

// enroll sends the first enrollment POST (no Authorization) to baseURL and
// checks the answer: a 401 with one valid Bearer challenge.
func (w *walker) enroll(ctx context.Context, u *url.URL) {
	body, err := enrollmentBody(w.o)
	if err != nil {
		w.aborted = fmt.Errorf("checker: building the enrollment request: %w", err)
		return
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequest(http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			w.fatalf(StepEnroll, "advertise a valid BaseURL", "cannot build a request for %s: %v", redact(u), err)
			return
		}
		req.Header.Set("Content-Type", enrollContentType)
		resp, respBody, ok := w.fetch(ctx, StepEnroll, req, limitLarge)
		if !ok {
			return
		}
		if !isRedirect(resp.StatusCode) {
			w.enrollAnswer(ctx, u, resp, respBody)
			return
		}
		if hop >= maxRedirects {
			w.fatalf(StepEnroll, "advertise the final enrollment URL as BaseURL", "more than %d redirects", maxRedirects)
			return
		}
		if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
			w.fatalf(StepEnroll, "advertise the final enrollment URL as BaseURL, or redirect the POST with 307/308",
				"the enrollment POST to %s is redirected with HTTP %d, which drops the body", redact(u), resp.StatusCode)
		}
		loc := resp.Header.Get("Location")
		next, err := u.Parse(loc)
		if loc == "" || err != nil {
			w.fatalf(StepEnroll, "advertise the final enrollment URL as BaseURL",
				"the enrollment POST to %s is redirected (HTTP %d) without a usable Location (%q)", redact(u), resp.StatusCode, loc)
			return
		}
		if next.Scheme != "https" || next.Host == "" {
			w.fatalf(StepEnroll, "advertise the final https:// enrollment URL as BaseURL",
				"the enrollment POST is redirected to %q: devices only follow https", loc)
			return
		}
		u = next
	}
}

// enrollAnswer checks the status of the first enrollment POST and, for a
// 401, the challenge and the Enrollment SSO header.
func (w *walker) enrollAnswer(ctx context.Context, u *url.URL, resp *http.Response, body []byte) {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
	case http.StatusOK:
		w.fatalf(StepEnroll, "answer the enrollment POST without Authorization with 401 and a challenge ("+exampleChallenge+"); serve the profile only to a request carrying the bearer token",
			"the first enrollment POST (no Authorization) was answered 200 (Content-Type %q): a device requires a 401 challenge and fails the enrollment",
			resp.Header.Get("Content-Type"))
		return
	case http.StatusForbidden:
		code, message := "", ""
		if obj, err := parseStrictObject(body); err == nil && mediaType(resp.Header.Get("Content-Type")) == "application/json" {
			code, _ = jsonString(obj.Values["code"])
			message, _ = jsonString(obj.Values["message"])
		}
		if code == "" {
			w.fatalf(StepEnroll, `if this user should enroll, allow them in the policy; to refuse, answer 403 application/json {"code":"…","message":"…"} so the device can say why`,
				"the enrollment POST was answered 403 without a JSON {code, message}: the device stops with no reason")
			return
		}
		w.fatalf(StepEnroll, "if this user and device should enroll, allow them in the policy",
			"the enrollment URL refuses this device (403 %q); the device shows %q", code, message)
		return
	case http.StatusBadRequest:
		w.fatalf(StepEnroll, "accept the device's request: a POST whose body is a DER CMS SignedData, whatever its Content-Type (read the raw bytes, never form-parse them)",
			"the enrollment POST was answered 400 Bad Request%s", bodyHint(body))
		return
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		w.fatalf(StepEnroll, "advertise the URL of the enrollment endpoint as BaseURL and route POST requests to it",
			"the enrollment POST to %s was answered HTTP %d: nothing serves enrollment there", redact(u), resp.StatusCode)
		return
	default:
		w.fatalf(StepEnroll, "answer the first enrollment POST with 401 and a challenge ("+exampleChallenge+")",
			"the enrollment POST to %s was answered HTTP %d%s: devices need 401", redact(u), resp.StatusCode, bodyHint(body))
		return
	}
	w.challenge(resp.Header)
	w.esso(ctx, resp.Header)
}

// challenge checks the WWW-Authenticate header of the enrollment 401.
func (w *walker) challenge(h http.Header) {
	vals := h.Values("WWW-Authenticate")
	switch len(vals) {
	case 0:
		w.fatalf(StepChallenge, "add "+exampleChallenge+" (or an apple-oauth2 challenge)",
			"the 401 has no WWW-Authenticate header: the device cancels")
		return
	case 1:
	default:
		w.fatalf(StepChallenge, "send exactly one WWW-Authenticate header holding one Bearer challenge; remove the others (e.g. one a proxy or another handler adds)",
			"the 401 has %d WWW-Authenticate headers (%s): a device joins them into one value and cancels", len(vals), quoteAll(vals))
	}
	// Analyze the Bearer one (the first when none is).
	value := vals[0]
	for _, v := range vals {
		if s, _, _ := strings.Cut(v, " "); strings.EqualFold(s, "Bearer") {
			value = v
			break
		}
	}
	start := len(w.rep.Findings)
	findings, params := analyzeChallenge(value)
	w.rep.Findings = append(w.rep.Findings, findings...)
	if !w.hasFatal(StepChallenge, start) {
		if _, err := device.ParseChallenge(http.Header{"Www-Authenticate": {value}}); err != nil {
			w.fatalf(StepChallenge, "send exactly "+exampleChallenge+" (or the apple-oauth2 form)", "%s", reason(err))
		}
	}
	if m := params["method"]; m == device.MethodWeb || m == device.MethodOAuth2 {
		w.rep.Method = m
	}
}

// bodyHint returns ": <start of body>" for messages ("" for no body).
func bodyHint(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return ""
	}
	return ": " + strings.ToValidUTF8(clip(s, 120), "?")
}

func quoteAll(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = fmt.Sprintf("%q", clip(v, 60))
	}
	return strings.Join(q, ", ")
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
