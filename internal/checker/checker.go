package checker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Steps named in findings.
const (
	StepTLS       = "tls"       // the TLS connection and certificate of a host
	StepDiscovery = "discovery" // GET /.well-known/com.apple.remotemanagement
	StepRedirect  = "redirect"  // a redirect of the discovery request
	StepEnroll    = "enroll"    // the first enrollment POST
	StepChallenge = "challenge" // the WWW-Authenticate header of its 401
	StepESSO      = "esso"      // the Enrollment SSO header and document
)

// DefaultTimeout bounds a whole check when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// DefaultModelFamily is the model family checked when Options.ModelFamily
// is empty.
const DefaultModelFamily = "iPhone"

// Finding is one deviation from what a device needs.
type Finding struct {
	// Step is where it was seen: one of the Step constants.
	Step string `json:"step"`
	// Problem says what is wrong, naming the values seen.
	Problem string `json:"problem"`
	// Fix says what to change.
	Fix string `json:"fix"`
	// Fatal means a device would fail the enrollment here; otherwise the
	// finding is a warning.
	Fatal bool `json:"fatal"`
}

// String renders the finding on one line: "✗" (fatal) or "!" (warning),
// the step, the problem and the fix.
func (f Finding) String() string {
	mark := "!"
	if f.Fatal {
		mark = "✗"
	}
	return mark + " " + f.Step + ": " + f.Problem + " → " + f.Fix
}

// Options say whom to check and how.
type Options struct {
	// Identifier is what the user types on the device, e.g.
	// "alice@example.com". Required; exactly one '@'.
	Identifier string
	// ModelFamily is the model-family the device sends: AppleTV, iPad,
	// iPhone, Mac, RealityDevice or Watch. Default: iPhone.
	ModelFamily string
	// DiscoveryBase is the https://host[:port] asked first. Default:
	// "https://" + the domain of Identifier, as a device does. Set it to
	// check the discovery host registered in Apple Business Manager, or a
	// test deployment.
	DiscoveryBase string
	// HTTPClient carries the transport (TLS roots, proxy). It is copied;
	// the copy follows no redirects and keeps no cookies. nil means
	// NewClient(nil): the system roots, like a device.
	HTTPClient *http.Client
	// Timeout bounds the whole check. Default: DefaultTimeout.
	Timeout time.Duration
	// Now is the clock for certificate lifetimes. Default: time.Now.
	Now func() time.Time
}

// Report is the outcome of a check.
type Report struct {
	// OK is true when a device would get through discovery and the first
	// enrollment request: no finding is Fatal.
	OK bool `json:"ok"`
	// Findings in the order they were seen.
	Findings []Finding `json:"findings"`
	// DiscoveryURL is the first URL asked.
	DiscoveryURL string `json:"discovery_url"`
	// Redirects are the URLs discovery was redirected to, in order.
	Redirects []string `json:"redirects,omitempty"`
	// Version and BaseURL are the discovered server entry (the first
	// usable one when there were several).
	Version string `json:"version,omitempty"`
	BaseURL string `json:"base_url,omitempty"`
	// Method is the challenge method of the enrollment 401 (apple-as-web
	// or apple-oauth2), when the challenge named a known one.
	Method string `json:"method,omitempty"`
	// ESSOURL is the Enrollment SSO document URL the 401 named, if any.
	ESSOURL string `json:"esso_url,omitempty"`
}

// Fatal returns the fatal findings.
func (r Report) Fatal() []Finding { return r.filter(true) }

// Warnings returns the findings that are not fatal.
func (r Report) Warnings() []Finding { return r.filter(false) }

func (r Report) filter(fatal bool) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Fatal == fatal {
			out = append(out, f)
		}
	}
	return out
}

// modelFamilies are the model-family values a device sends.
var modelFamilies = []string{"AppleTV", "iPad", "iPhone", "Mac", "RealityDevice", "Watch"}

// products are the PRODUCT values the enrollment request carries per
// model family.
var products = map[string]string{
	"AppleTV": "AppleTV14,1", "iPad": "iPad16,3", "iPhone": "iPhone17,2",
	"Mac": "Mac14,2", "RealityDevice": "RealityDevice14,1", "Watch": "Watch7,1",
}

// Check walks discovery and the first enrollment POST against a live
// deployment like a device and reports every deviation it sees. The error
// is for unusable Options and for ctx ending; everything the deployment
// does wrong, including being unreachable, is a Finding.
func Check(ctx context.Context, o Options) (Report, error) {
	if o.ModelFamily == "" {
		o.ModelFamily = DefaultModelFamily
	}
	if _, ok := products[o.ModelFamily]; !ok {
		return Report{}, fmt.Errorf("checker: unknown model family %q (want one of %s)", o.ModelFamily, strings.Join(modelFamilies, ", "))
	}
	local, domain, ok := strings.Cut(o.Identifier, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return Report{}, fmt.Errorf("checker: identifier %q must be name@domain with exactly one '@'", o.Identifier)
	}
	if o.DiscoveryBase == "" {
		o.DiscoveryBase = "https://" + domain
	}
	base, err := url.Parse(strings.TrimSuffix(o.DiscoveryBase, "/"))
	if err != nil || base.Host == "" || base.Scheme != "https" || base.Path != "" || base.RawQuery != "" {
		return Report{}, fmt.Errorf("checker: discovery base %q must be https://host[:port]", o.DiscoveryBase)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := newWalker(o)
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	w.parent = ctx
	w.run(wctx, base)
	if w.aborted != nil {
		return w.rep, w.aborted
	}
	w.rep.OK = w.rep.Method != "" && len(w.rep.Fatal()) == 0
	if !w.rep.OK && len(w.rep.Fatal()) == 0 {
		// Defensive: every early stop records a fatal finding.
		w.fatalf(StepEnroll, "check the deployment's logs", "the check ended before a valid challenge was seen")
	}
	return w.rep, nil
}

// walker holds the state of one check.
type walker struct {
	o      Options
	client *http.Client
	rep    Report

	parent  context.Context
	aborted error           // set when the caller's context ended
	tlsSeen map[string]bool // hosts whose connection was inspected
}

func newWalker(o Options) *walker {
	c := o.HTTPClient
	if c == nil {
		c = NewClient(nil)
	}
	cc := *c
	cc.Jar = nil
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &walker{o: o, client: &cc, tlsSeen: map[string]bool{}}
}

func (w *walker) fatalf(step, fix, format string, args ...any) {
	w.rep.Findings = append(w.rep.Findings, Finding{Step: step, Problem: fmt.Sprintf(format, args...), Fix: fix, Fatal: true})
}

func (w *walker) warnf(step, fix, format string, args ...any) {
	w.rep.Findings = append(w.rep.Findings, Finding{Step: step, Problem: fmt.Sprintf(format, args...), Fix: fix})
}

// hasFatal reports whether a fatal finding was recorded for step since
// index from.
func (w *walker) hasFatal(step string, from int) bool {
	for _, f := range w.rep.Findings[from:] {
		if f.Fatal && f.Step == step {
			return true
		}
	}
	return false
}

// run performs the walk: discovery, then the enrollment POST.
func (w *walker) run(ctx context.Context, base *url.URL) {
	baseURL, ok := w.discover(ctx, base)
	if !ok || w.aborted != nil {
		return
	}
	w.enroll(ctx, baseURL)
}

// stopped reports whether the caller's context ended, recording it.
func (w *walker) stopped() bool {
	if err := w.parent.Err(); err != nil {
		w.aborted = errors.Join(errors.New("checker: check interrupted"), err)
		return true
	}
	return false
}
