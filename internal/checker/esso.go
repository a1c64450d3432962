package checker

import (
	"context"
	"net/http"
	"net/url"

	"github.com/mdmauth/mdmauth/internal/device"
)

// esso checks the Enrollment SSO headers of the enrollment 401: never for
// a Mac; otherwise the document each names must be valid. Problems with
// X-Apple-MDM-ESSO-Developer, which only test devices follow, are warnings.
func (w *walker) esso(ctx context.Context, h http.Header) {
	std, dev := h.Values(device.ESSOHeader), h.Values(device.ESSODeveloperHeader)
	if len(std) == 0 && len(dev) == 0 {
		return
	}
	if w.o.ModelFamily == "Mac" {
		for _, name := range []string{device.ESSOHeader, device.ESSODeveloperHeader} {
			if len(h.Values(name)) > 0 {
				w.fatalf(StepESSO, "never send "+name+" when model-family is Mac",
					"the enrollment 401 for a Mac carries %s: Enrollment SSO does not exist on macOS and the device cancels", name)
			}
		}
		return
	}
	if len(std) > 0 {
		w.essoDocument(ctx, device.ESSOHeader, std, false)
	}
	if len(dev) > 0 {
		start := len(w.rep.Findings)
		w.essoDocument(ctx, device.ESSODeveloperHeader, dev, true)
		for i := start; i < len(w.rep.Findings); i++ {
			f := &w.rep.Findings[i]
			f.Fatal = false
			f.Problem = "test devices only (" + device.ESSODeveloperHeader + "): " + f.Problem
		}
	}
}

// essoDocument fetches the document the header name names and checks it
// with the emulator's parser.
func (w *walker) essoDocument(ctx context.Context, name string, vals []string, developer bool) {
	if len(vals) > 1 {
		w.fatalf(StepESSO, "send exactly one "+name+" header", "the 401 has %d %s headers", len(vals), name)
	}
	u, err := absoluteURL(vals[0])
	if err != nil {
		w.fatalf(StepESSO, "name the document with an absolute https:// URL", "%s %q is not an absolute URL", name, vals[0])
		return
	}
	if u.Scheme != "https" {
		w.fatalf(StepESSO, "serve the Enrollment SSO document over https", "%s %q is not https", name, vals[0])
		return
	}
	if !developer {
		w.rep.ESSOURL = u.String()
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			w.fatalf(StepESSO, "name the document with a valid URL", "cannot build a request for %s: %v", redact(u), err)
			return
		}
		resp, body, ok := w.fetch(ctx, StepESSO, req, limitLarge)
		if !ok {
			return
		}
		if isRedirect(resp.StatusCode) {
			next, ok := w.essoRedirect(u, resp, hop)
			if !ok {
				return
			}
			u = next
			continue
		}
		if resp.StatusCode != http.StatusOK {
			w.fatalf(StepESSO, "serve the Enrollment SSO document at "+redact(u)+" with 200",
				"the Enrollment SSO document %s answered HTTP %d: the device needs 200 and cancels the enrollment", redact(u), resp.StatusCode)
			return
		}
		if _, err := device.ParseESSODocument(resp.Header.Get("Content-Type"), body, developer); err != nil {
			w.fatalf(StepESSO, "serve a valid EnrollmentSSODocument: application/json with iTunesStoreID (AppIDs only for "+device.ESSODeveloperHeader+
				") and a ConfigurationProfile of com.apple.extensiblesso payloads and/or Declarations",
				"the Enrollment SSO document %s is invalid: %s", redact(u), reason(err))
		}
		return
	}
}

func (w *walker) essoRedirect(u *url.URL, resp *http.Response, hop int) (*url.URL, bool) {
	if hop >= maxRedirects {
		w.fatalf(StepESSO, "name the document's final URL", "more than %d redirects", maxRedirects)
		return nil, false
	}
	next, err := u.Parse(resp.Header.Get("Location"))
	if resp.Header.Get("Location") == "" || err != nil || next.Scheme != "https" {
		w.fatalf(StepESSO, "name the document's final https:// URL",
			"the Enrollment SSO document %s redirects (HTTP %d) to %q, which a device does not follow", redact(u), resp.StatusCode, resp.Header.Get("Location"))
		return nil, false
	}
	return next, true
}
