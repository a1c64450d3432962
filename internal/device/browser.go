package device

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
)

// SafariUserAgent is the User-Agent FormBrowser sends unless told otherwise.
const SafariUserAgent = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"

// SafariMacUserAgent is a Mac Safari User-Agent for FormBrowser.UserAgent.
const SafariMacUserAgent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15"

const defaultMaxSteps = 25

// FormBrowser emulates ASWebAuthenticationSession and a user who types a
// username and password. It keeps its own cookie jar (across sign-ins, like
// the system browser), follows 301/302/303/307/308 redirects for http(s),
// fills the first HTML form that has a password input (username field: an
// input named username, email or login, else the first text or email input;
// hidden inputs kept; action resolved against the page), submits it, and
// continues until a redirect to the apple-remotemanagement-user-login:
// scheme, which must be a 308. Content-Security-Policy form-action is
// enforced on the submission and the redirects after it. An HTTP error page
// (>= 400) ends the sign-in with a *SignInError, as does the login form
// coming back after the credentials were submitted.
type FormBrowser struct {
	Client             *http.Client // transport and TLS roots; nil: a zero client
	Username, Password string
	UserAgent          string // default SafariUserAgent
	MaxSteps           int    // page loads and redirects per sign-in; default 25

	mu  sync.Mutex
	jar http.CookieJar
}

var _ Browser = (*FormBrowser)(nil)

func (b *FormBrowser) client() *http.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.jar == nil {
		b.jar, _ = cookiejar.New(nil)
	}
	c := &http.Client{}
	if b.Client != nil {
		cc := *b.Client
		c = &cc
	}
	c.Jar = b.jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// SignIn opens signInURL and returns the callback URL the flow ends at.
func (b *FormBrowser) SignIn(ctx context.Context, signInURL string) (string, error) {
	c := b.client()
	ua := b.UserAgent
	if ua == "" {
		ua = SafariUserAgent
	}
	maxSteps := b.MaxSteps
	if maxSteps <= 0 {
		maxSteps = defaultMaxSteps
	}
	u, err := url.Parse(signInURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("%s: cannot open %q", StepSignIn, clipURL(signInURL))
	}
	method, body, contentType := http.MethodGet, "", ""
	var policy *formActionPolicy // active while a form navigation lasts
	submitted := false
	for step := 0; step < maxSteps; step++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), strings.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("User-Agent", ua)
		req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, page, err := doRead(c, req, limitLarge)
		if err != nil {
			return "", fmt.Errorf("%s: %w", StepSignIn, err)
		}
		if isRedirect(resp.StatusCode) {
			next, err := redirectTarget(StepSignIn, u, resp)
			if err != nil {
				return "", err
			}
			if !policy.allows(next) {
				return "", deviation(StepSignIn, "Content-Security-Policy form-action of the login page blocks the redirect to %s:", next.Scheme)
			}
			if strings.EqualFold(next.Scheme, CallbackScheme) {
				if resp.StatusCode != http.StatusPermanentRedirect {
					return "", deviation(StepSignIn, "the redirect to %s: is a %d; the device requires 308 Permanent Redirect", CallbackScheme, resp.StatusCode)
				}
				return resp.Header.Get("Location"), nil
			}
			if next.Scheme != "https" && next.Scheme != "http" {
				return "", deviation(StepSignIn, "redirect to unsupported scheme %q", next.Scheme)
			}
			if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
				method, body, contentType = http.MethodGet, "", ""
			}
			u = next
			continue
		}
		where := pageName(u)
		if resp.StatusCode >= 400 {
			return "", &SignInError{Status: resp.StatusCode, URL: where, Snippet: snippet(page, 300)}
		}
		if resp.StatusCode != http.StatusOK {
			return "", &SignInError{Status: resp.StatusCode, URL: where, Reason: "unexpected status", Snippet: snippet(page, 300)}
		}
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "" && mt != "text/html" && mt != "application/xhtml+xml" {
			return "", &SignInError{Status: resp.StatusCode, URL: where, Reason: "not an HTML page (" + mt + ")", Snippet: snippet(page, 300)}
		}
		form, err := findLoginForm(page, u, b.Username, b.Password)
		if err != nil {
			return "", fmt.Errorf("%s: parsing %s: %w", StepSignIn, where, err)
		}
		if form == nil {
			return "", &SignInError{Status: resp.StatusCode, URL: where, Reason: "page has no login form and does not redirect", Snippet: snippet(page, 300)}
		}
		if submitted {
			return "", &SignInError{Status: resp.StatusCode, URL: where, Reason: "login form shown again after submitting the credentials", Snippet: snippet(page, 300)}
		}
		if form.enctype != "" && form.enctype != "application/x-www-form-urlencoded" {
			return "", fmt.Errorf("%s: login form enctype %q is not supported", StepSignIn, form.enctype)
		}
		policy = parseFormAction(resp.Header, u)
		if !policy.allows(form.action) {
			return "", deviation(StepSignIn, "Content-Security-Policy form-action of the login page blocks its own form action %s", pageName(form.action))
		}
		submitted = true
		u = form.action
		if form.method == http.MethodPost {
			method, body, contentType = http.MethodPost, form.encode(), "application/x-www-form-urlencoded"
		} else {
			target := *form.action
			target.RawQuery = form.encode()
			u = &target
			method, body, contentType = http.MethodGet, "", ""
		}
	}
	return "", fmt.Errorf("%s: no callback after %d steps", StepSignIn, maxSteps)
}

// pageName is a URL without its query, for messages.
func pageName(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment, c.RawFragment = "", "", ""
	return c.String()
}
