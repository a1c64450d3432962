package device

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

const (
	userAgentDMC = "DeviceManagementClient/1.0"
	userAgentMDM = "MDM/1.0"

	maxRedirects = 10
	limitSmall   = 64 << 10 // discovery, token, error bodies
	limitLarge   = 1 << 20  // profiles, pages, commands
)

// do sends req with the device's client and reads at most limit bytes of the
// answer. The returned response's Body is already closed.
func (d *Device) do(req *http.Request, limit int64) (*http.Response, []byte, error) {
	return doRead(d.client, req, limit)
}

func doRead(c *http.Client, req *http.Request, limit int64) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return resp, nil, fmt.Errorf("reading %s answer: %w", req.URL.Redacted(), err)
	}
	if int64(len(body)) > limit {
		return resp, nil, fmt.Errorf("%s answered more than %d bytes", req.URL.Redacted(), limit)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if resp.TLS != nil && resp.TLS.Version < tls.VersionTLS12 {
		return resp, body, fmt.Errorf("%s negotiated a TLS version below 1.2", req.URL.Host)
	}
	return resp, body, nil
}

func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// mediaType returns the lower-cased media type of a Content-Type value
// ("" when absent or unparsable).
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return strings.ToLower(mt)
}

// redirectTarget resolves the Location of a redirect answer.
func redirectTarget(step string, base *url.URL, resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, deviation(step, "HTTP %d redirect without a Location header", resp.StatusCode)
	}
	target, err := base.Parse(loc)
	if err != nil {
		return nil, deviation(step, "redirect Location %q is not a URL", loc)
	}
	return target, nil
}

// shortURL renders u for logs: scheme, host and path, with long path
// segments (signed state) elided and the query dropped.
func shortURL(u *url.URL) string {
	segs := strings.Split(u.EscapedPath(), "/")
	for i, s := range segs {
		if len(s) > 24 {
			segs[i] = s[:8] + "…"
		}
	}
	s := u.Scheme + "://" + u.Host + strings.Join(segs, "/")
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}
