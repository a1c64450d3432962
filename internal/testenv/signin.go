package testenv

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// maxSignInHops bounds the redirects and pages SignIn goes through.
const maxSignInHops = 30

// SignInError reports a sign-in that ended on a page instead of a redirect out of the web.
type SignInError struct {
	URL        string // the page's URL
	StatusCode int    // its status
	Message    string // the provider's error text, or the start of the body
}

// Error implements error.
func (e *SignInError) Error() string {
	return fmt.Sprintf("testenv: sign-in stopped at %s (status %d): %s", e.URL, e.StatusCode, e.Message)
}

// loginErrorRE finds the message the example provider's login page shows after a bad password.
var loginErrorRE = regexp.MustCompile(`(?s)<p style="color:red[^"]*">(.*?)</p>`)

// SignIn plays the browser of a web sign-in: it starts with a GET of startURL, follows
// redirects (keeping cookies), fills the provider's login form with username and password, and
// returns the first redirect target whose scheme is neither http nor https, such as
// apple-remotemanagement-user-login://authentication-results?access-token=…. Any other final
// page, including the login form shown again after a wrong password, is a *SignInError.
// client provides TLS trust; its redirect policy is not used, and a cookie jar is added when it
// has none.
func (o *OIDC) SignIn(ctx context.Context, client *http.Client, startURL, username, password string) (*url.URL, error) {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.Jar == nil {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return nil, err
		}
		c.Jar = jar
	}
	issuer, err := url.Parse(o.Issuer)
	if err != nil {
		return nil, err
	}

	method, target := http.MethodGet, startURL
	var body []byte
	posted := false
	for hop := 0; hop < maxSignInHops; hop++ {
		req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("testenv: sign-in: %w", err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("testenv: sign-in: %w", err)
		}
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()

		if isRedirect(resp.StatusCode) {
			loc, err := resp.Location()
			if err != nil {
				return nil, fmt.Errorf("testenv: sign-in: %d from %s: %w", resp.StatusCode, target, err)
			}
			if loc.Scheme != "http" && loc.Scheme != "https" {
				return loc, nil
			}
			if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
				method, body = http.MethodGet, nil
			}
			target = loc.String()
			continue
		}

		u := resp.Request.URL
		if resp.StatusCode == http.StatusOK && u.Host == issuer.Host && u.Path == "/login/username" {
			if posted {
				msg := "login form shown again"
				if m := loginErrorRE.FindSubmatch(page); m != nil {
					msg = html.UnescapeString(strings.TrimSpace(string(m[1])))
				}
				return nil, &SignInError{URL: u.String(), StatusCode: resp.StatusCode, Message: msg}
			}
			id := u.Query().Get("authRequestID")
			if id == "" {
				return nil, &SignInError{URL: u.String(), StatusCode: resp.StatusCode, Message: "login page without authRequestID"}
			}
			form := url.Values{"id": {id}, "username": {username}, "password": {password}}
			method, target, body, posted = http.MethodPost, o.Issuer+"login/username", []byte(form.Encode()), true
			continue
		}
		return nil, &SignInError{URL: u.String(), StatusCode: resp.StatusCode, Message: snippet(page)}
	}
	return nil, fmt.Errorf("testenv: sign-in: more than %d hops from %s", maxSignInHops, startURL)
}

// isRedirect reports whether code is a redirect with a Location.
func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// snippet returns the start of a body, on one line.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
