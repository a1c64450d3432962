package signin

import (
	"errors"
	"strings"
)

// Params are decoded query or form parameters, each present once.
type Params map[string]string

// ErrParams is returned for malformed or repeated parameters.
var ErrParams = errors.New("malformed parameters")

// ParseParams decodes "a=b&c=d" with RFC 3986 percent-decoding only: the
// device sends ':' '/' and '+' unescaped, and a '+' is a plus, never a
// space (an identifier like a+b@example.com must survive). A repeated name,
// an empty name, a bad escape or more than maxParams parameters is an
// error. Parameters are taken one at a time, so that a raw string of many
// separators costs no memory.
func ParseParams(raw string, maxParams int) (Params, error) {
	p := Params{}
	for rest := raw; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		if part == "" {
			continue
		}
		if len(p) >= maxParams {
			return nil, ErrParams
		}
		k, v, _ := strings.Cut(part, "=")
		name, err := unescape(k)
		if err != nil || name == "" {
			return nil, ErrParams
		}
		val, err := unescape(v)
		if err != nil {
			return nil, ErrParams
		}
		if _, dup := p[name]; dup {
			return nil, ErrParams
		}
		p[name] = val
	}
	return p, nil
}

func unescape(s string) (string, error) {
	if !strings.ContainsRune(s, '%') {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == 0x7f {
				return "", ErrParams
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", ErrParams
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", ErrParams
			}
			c = hi<<4 | lo
			i += 2
		case c < 0x20 || c == 0x7f:
			return "", ErrParams
		}
		b = append(b, c)
	}
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return "", ErrParams
		}
	}
	return string(b), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
