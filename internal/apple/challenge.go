package apple

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

const (
	// challengeScheme is the auth scheme devices compare case-sensitively.
	challengeScheme = "Bearer"
	// methodWeb is the simple web sign-in method: the device opens url.
	methodWeb = "apple-as-web"
)

// Param is one parameter of a WWW-Authenticate challenge.
type Param struct {
	Name  string
	Value string
}

// RenderChallenge renders a WWW-Authenticate value holding exactly one
// challenge: `Bearer method="<method>", name="value", ...`. Every value is
// quoted and parameters are separated by ", ", which is what devices parse.
// Names must match [a-z][a-z0-9-]* and may not repeat or be "method"; values
// must be non-empty printable ASCII without '"' or '\'.
func RenderChallenge(method string, params ...Param) (string, error) {
	if err := checkChallengeValue("method", method); err != nil {
		return "", err
	}
	n := len(challengeScheme) + len(` method=""`) + len(method)
	for i, p := range params {
		if !validParamName(p.Name) {
			return "", fmt.Errorf("apple: challenge parameter name %q is not [a-z][a-z0-9-]*", p.Name)
		}
		if p.Name == "method" {
			return "", errors.New("apple: challenge parameter \"method\" is set by the method argument")
		}
		for _, q := range params[:i] {
			if q.Name == p.Name {
				return "", fmt.Errorf("apple: challenge parameter %q repeated", p.Name)
			}
		}
		if err := checkChallengeValue(p.Name, p.Value); err != nil {
			return "", err
		}
		n += len(`, =""`) + len(p.Name) + len(p.Value)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(challengeScheme)
	b.WriteString(` method="`)
	b.WriteString(method)
	b.WriteByte('"')
	for _, p := range params {
		b.WriteString(", ")
		b.WriteString(p.Name)
		b.WriteString(`="`)
		b.WriteString(p.Value)
		b.WriteByte('"')
	}
	return b.String(), nil
}

// WebChallenge renders the simple sign-in challenge
// `Bearer method="apple-as-web", url="<signInURL>"`. signInURL must be an
// absolute http or https URL. Devices replace its query, so state must be
// carried in the path.
func WebChallenge(signInURL string) (string, error) {
	u, err := url.Parse(signInURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", errors.New("apple: sign-in URL must be an absolute http(s) URL")
	}
	return RenderChallenge(methodWeb, Param{Name: "url", Value: signInURL})
}

// ParseChallenge is a strict parser of what RenderChallenge produces: scheme
// "Bearer" (case-sensitive), a single space, method="..." first, then
// `, name="value"` pairs with the same name and value rules. It returns the
// method and the remaining parameters in order.
func ParseChallenge(header string) (method string, params []Param, err error) {
	rest, ok := strings.CutPrefix(header, challengeScheme+" ")
	if !ok {
		return "", nil, errors.New("apple: challenge does not start with \"Bearer \"")
	}
	first := true
	for {
		var name, value string
		name, value, rest, err = cutChallengeParam(rest)
		if err != nil {
			return "", nil, err
		}
		if first {
			if name != "method" {
				return "", nil, errors.New("apple: challenge does not start with method")
			}
			method = value
			first = false
		} else {
			if name == "method" {
				return "", nil, errors.New("apple: challenge repeats method")
			}
			for _, q := range params {
				if q.Name == name {
					return "", nil, fmt.Errorf("apple: challenge parameter %q repeated", name)
				}
			}
			params = append(params, Param{Name: name, Value: value})
		}
		if rest == "" {
			return method, params, nil
		}
		rest, ok = strings.CutPrefix(rest, ", ")
		if !ok {
			return "", nil, errors.New("apple: challenge parameters not separated by \", \"")
		}
	}
}

// cutChallengeParam reads `name="value"` from the start of s.
func cutChallengeParam(s string) (name, value, rest string, err error) {
	name, rest, ok := strings.Cut(s, `="`)
	if !ok || !validParamName(name) {
		return "", "", "", errors.New("apple: bad challenge parameter name")
	}
	value, rest, ok = strings.Cut(rest, `"`)
	if !ok {
		return "", "", "", errors.New("apple: unterminated challenge value")
	}
	if err := checkChallengeValue(name, value); err != nil {
		return "", "", "", err
	}
	return name, value, rest, nil
}

// validParamName reports whether s matches [a-z][a-z0-9-]*.
func validParamName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkChallengeValue checks that v can be sent as a quoted value: non-empty
// printable ASCII without '"' or '\'.
func checkChallengeValue(name, v string) error {
	if v == "" {
		return fmt.Errorf("apple: challenge parameter %q is empty", name)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("apple: challenge parameter %q has a character that cannot be quoted", name)
		}
	}
	return nil
}
