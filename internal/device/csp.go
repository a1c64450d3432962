package device

import (
	"net/http"
	"net/url"
	"strings"
)

// formActionPolicy is the Content-Security-Policy form-action directive of a
// page (one source list per CSP header that has the directive). A browser
// applies it to the form submission and to every redirect that follows.
type formActionPolicy struct {
	self    *url.URL
	sources [][]string
}

// parseFormAction returns the page's form-action policy, or nil when no CSP
// header restricts form-action.
func parseFormAction(h http.Header, self *url.URL) *formActionPolicy {
	var p *formActionPolicy
	for _, v := range h.Values("Content-Security-Policy") {
		for dir := range strings.SplitSeq(v, ";") {
			f := strings.Fields(dir)
			if len(f) == 0 || !strings.EqualFold(f[0], "form-action") {
				continue
			}
			if p == nil {
				p = &formActionPolicy{self: self}
			}
			p.sources = append(p.sources, f[1:])
			break
		}
	}
	return p
}

// allows reports whether every form-action list allows target.
func (p *formActionPolicy) allows(target *url.URL) bool {
	if p == nil {
		return true
	}
	for _, list := range p.sources {
		if !p.listAllows(list, target) {
			return false
		}
	}
	return true
}

func (p *formActionPolicy) listAllows(list []string, t *url.URL) bool {
	for _, src := range list {
		if sourceMatches(src, p.self, t) {
			return true
		}
	}
	return false
}

// sourceMatches implements the CSP source-expression match for the source
// forms a sign-in page uses: 'self', *, scheme sources and host sources.
func sourceMatches(src string, self, t *url.URL) bool {
	s := strings.ToLower(src)
	scheme := strings.ToLower(t.Scheme)
	network := scheme == "http" || scheme == "https"
	switch {
	case s == "'none'":
		return false
	case s == "'self'":
		return sameOrigin(self, t)
	case s == "*":
		// '*' matches network schemes and the page's own scheme only,
		// never a custom scheme such as the sign-in callback's.
		return network || scheme == strings.ToLower(self.Scheme)
	case strings.HasSuffix(s, ":") && !strings.Contains(s, "/"):
		want := strings.TrimSuffix(s, ":")
		return scheme == want || (want == "http" && scheme == "https")
	case strings.HasPrefix(s, "'"):
		return false
	}
	// host-source: [scheme://]host[:port][/path]
	srcScheme := ""
	if i := strings.Index(s, "://"); i >= 0 {
		srcScheme, s = s[:i], s[i+3:]
	}
	if srcScheme != "" {
		if scheme != srcScheme && !(srcScheme == "http" && scheme == "https") {
			return false
		}
	} else if !network && scheme != strings.ToLower(self.Scheme) {
		return false
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i] // paths are not matched after redirects; ignore them
	}
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
	}
	th := strings.ToLower(t.Hostname())
	switch {
	case strings.HasPrefix(host, "*."):
		if !strings.HasSuffix(th, host[1:]) {
			return false
		}
	case host != th:
		return false
	}
	if port == "*" {
		return true
	}
	tp := t.Port()
	if tp == "" {
		tp = defaultPort(scheme)
	}
	if port == "" {
		port = defaultPort(srcScheme)
		if srcScheme == "" {
			port = defaultPort(scheme)
		}
	}
	return port == tp
}

func sameOrigin(a, b *url.URL) bool {
	if a == nil || !strings.EqualFold(a.Scheme, b.Scheme) || !strings.EqualFold(a.Hostname(), b.Hostname()) {
		return false
	}
	pa, pb := a.Port(), b.Port()
	if pa == "" {
		pa = defaultPort(a.Scheme)
	}
	if pb == "" {
		pb = defaultPort(b.Scheme)
	}
	return pa == pb
}

func defaultPort(scheme string) string {
	switch strings.ToLower(scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
