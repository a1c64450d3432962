package checker

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/mdmauth/mdmauth/internal/device"
)

// knownParams are the challenge parameters a device reads.
var knownParams = map[string]bool{
	"method": true, "url": true, "authorization-url": true, "token-url": true,
	"redirect-url": true, "client-id": true, "scope": true,
}

const knownParamList = "method, url, authorization-url, token-url, redirect-url, client-id and scope"

// analyzeChallenge checks one WWW-Authenticate value the way a device reads
// it and reports every problem rather than the first: the scheme (exactly
// "Bearer"), the syntax (lower-case names, quoted values without escapes,
// ", " separators, one challenge), unknown parameters and redirect-uri, and
// per method the required parameters and their URLs. It returns the
// parameters it could read (the first of repeated ones).
func analyzeChallenge(v string) ([]Finding, map[string]string) {
	var out []Finding
	add := func(fatal bool, fix, format string, args ...any) {
		out = append(out, Finding{Step: StepChallenge, Problem: fmt.Sprintf(format, args...), Fix: fix, Fatal: fatal})
	}
	scheme, rest, _ := strings.Cut(v, " ")
	switch {
	case scheme == "Bearer":
	case strings.EqualFold(scheme, "Bearer"):
		add(true, `write the scheme exactly "Bearer" (capital B, then lower case)`,
			`auth scheme %q: devices compare "Bearer" case-sensitively`, scheme)
	case strings.Contains(scheme, "="):
		add(true, `start the value with the scheme: Bearer method="…", …`, "the challenge has no auth scheme")
		rest = v
	default:
		add(true, "answer with a Bearer challenge: "+exampleChallenge,
			`auth scheme %q: devices need "Bearer"`, scheme)
	}
	params := map[string]string{}
	var order []string
	badName := map[string]bool{}
	sepReported := false
	s, i := rest, 0
	for i < len(s) {
		// Name, up to '='.
		j := i
		for j < len(s) && !strings.ContainsRune("= ,;\"\t", rune(s[j])) {
			j++
		}
		if j == len(s) || s[j] != '=' || j == i {
			if tok := s[i:j]; tok != "" && j < len(s) && s[j] == ' ' {
				add(true, "send exactly one challenge in one WWW-Authenticate header",
					"a second challenge (%q) follows in the same header", clip(s[i:], 40))
			} else {
				add(true, `write the parameters as name="value" pairs separated by ", "`,
					"malformed parameter list at %q", clip(s[i:], 40))
			}
			break
		}
		name := s[i:j]
		if f, ok := checkParamName(name); !ok {
			out = append(out, f)
			badName[name] = true
		}
		i = j + 1
		// Value: quoted, without escapes.
		var value string
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			escaped := false
			k := i + 1
			for k < len(s) && s[k] != '"' {
				if s[k] == '\\' && k+1 < len(s) {
					escaped = true
					b.WriteByte(s[k+1])
					k += 2
					continue
				}
				b.WriteByte(s[k])
				k++
			}
			if k >= len(s) {
				add(true, "close every quoted value", "the value of %s has no closing quote", name)
				break
			}
			value = b.String()
			if escaped {
				add(true, `keep '"' and '\' out of values (percent-encode them in URLs): devices do not unescape`,
					"the value of %s contains a backslash escape", name)
			}
			i = k + 1
		} else {
			k := i
			for k < len(s) && !strings.ContainsRune(" ,;\t", rune(s[k])) {
				k++
			}
			value = s[i:k]
			add(true, fmt.Sprintf(`quote every value: %s="%s"`, name, value),
				"the value of %s is not quoted", name)
			i = k
		}
		if _, dup := params[name]; dup {
			add(true, "send each parameter once", "parameter %s appears twice", name)
		} else {
			params[name] = value
			order = append(order, name)
		}
		// Separator: exactly ", ".
		if i >= len(s) {
			break
		}
		if strings.HasPrefix(s[i:], ", ") && i+2 < len(s) && !strings.ContainsRune(" ,;\t", rune(s[i+2])) {
			i += 2
			continue
		}
		k := i
		for k < len(s) && strings.ContainsRune(" ,;\t", rune(s[k])) {
			k++
		}
		if k >= len(s) {
			add(true, "end the header after the last value", "%q after the last parameter", s[i:])
			break
		}
		if !sepReported {
			add(true, `separate the parameters with a comma and one space: ", "`,
				`parameters separated by %q instead of ", "`, s[i:k])
			sepReported = true
		}
		i = k
	}
	out = append(out, checkParams(params, order, badName)...)
	return out, params
}

// checkParamName requires lower-case letters, digits and '-'.
func checkParamName(name string) (Finding, bool) {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case 'A' <= c && c <= 'Z':
			return Finding{Step: StepChallenge, Fatal: true,
				Problem: fmt.Sprintf("parameter name %q is not lower-case: devices compare names case-sensitively", name),
				Fix:     "write it " + strings.ToLower(name)}, false
		default:
			return Finding{Step: StepChallenge, Fatal: true,
				Problem: fmt.Sprintf("invalid parameter name %q", clip(name, 30)),
				Fix:     "use only the lower-case parameter names " + knownParamList}, false
		}
	}
	return Finding{}, true
}

// checkParams checks the parameters' names and, per method, the required
// ones and their URLs.
func checkParams(params map[string]string, order []string, badName map[string]bool) []Finding {
	var out []Finding
	add := func(fatal bool, fix, format string, args ...any) {
		out = append(out, Finding{Step: StepChallenge, Problem: fmt.Sprintf(format, args...), Fix: fix, Fatal: fatal})
	}
	for _, name := range order {
		switch {
		case name == "redirect-uri":
			add(true, "rename redirect-uri to redirect-url", "parameter redirect-uri: devices read redirect-url")
		case !knownParams[name] && !badName[name]:
			add(true, "remove "+name+": devices accept only "+knownParamList,
				"unknown parameter %q", name)
		}
	}
	requireURL := func(method, name string) {
		v, ok := params[name]
		if !ok || v == "" {
			add(true, fmt.Sprintf(`add %s="https://…"`, name), "%s challenge without %s", method, name)
			return
		}
		u, err := url.Parse(v)
		switch {
		case err != nil || !u.IsAbs() || u.Host == "":
			add(true, "give "+name+" as an absolute https:// URL", "%s %q is not an absolute URL", name, v)
		case u.Scheme != "https":
			add(true, "give "+name+" as an https:// URL", "%s %q is not https: devices only use https", name, v)
		}
	}
	method, ok := params["method"]
	switch {
	case !ok || method == "":
		add(true, `add method="apple-as-web" (web sign-in) or method="apple-oauth2" (OAuth 2)`, "the challenge has no method")
	case method == device.MethodWeb:
		requireURL(method, "url")
		if u, err := url.Parse(params["url"]); err == nil && u.RawQuery != "" {
			add(false, "carry state in the path of url, not in its query",
				"url %q has a query, which the device replaces with ?user-identifier=…", params["url"])
		}
	case method == device.MethodOAuth2:
		requireURL(method, "authorization-url")
		requireURL(method, "token-url")
		if params["client-id"] == "" {
			add(true, `add client-id="…" (the public client registered at the authorization server)`, "apple-oauth2 challenge without client-id")
		}
		switch r, ok := params["redirect-url"]; {
		case !ok || r == "":
			if _, uri := params["redirect-uri"]; !uri {
				add(true, `add redirect-url="apple-remotemanagement-user-login:/oauth2/redirection"`, "apple-oauth2 challenge without redirect-url")
			}
		case !strings.HasPrefix(r, device.CallbackScheme+":"):
			add(true, `set redirect-url to apple-remotemanagement-user-login:/oauth2/redirection (and register it at the authorization server)`,
				"redirect-url %q does not use the %s: scheme, so the device cannot receive the authorization response", r, device.CallbackScheme)
		}
	case method == "apple-maid":
		add(true, "use apple-as-web or apple-oauth2", "method %q is undocumented and not supported", method)
	default:
		add(true, `use method="apple-as-web" or method="apple-oauth2"`,
			"unknown method %q: devices know only %q and %q", method, device.MethodWeb, device.MethodOAuth2)
	}
	return out
}
