package checker

import (
	"net/url"
	"strings"
)

// keepIdentifier are the characters a device leaves unencoded in
// user-identifier besides the RFC 3986 unreserved ones.
const keepIdentifier = "@+"

// escapeQueryValue percent-encodes s the way a device does: RFC 3986
// unreserved characters and the bytes in keep stay, everything else
// becomes %XX ("a+b@example.com" is sent as typed).
func escapeQueryValue(s, keep string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// rawQueryFirst returns the value of the first item named key in a raw
// query, splitting on '&' only and percent-decoding without turning '+'
// into a space (RFC 3986), as the receiving server should. A value that
// does not decode is returned as it is.
func rawQueryFirst(rawQuery, key string) (string, bool) {
	if rawQuery == "" {
		return "", false
	}
	for item := range strings.SplitSeq(rawQuery, "&") {
		name, value, _ := strings.Cut(item, "=")
		if n, err := url.PathUnescape(name); err != nil || n != key {
			continue
		}
		if v, err := url.PathUnescape(value); err == nil {
			return v, true
		}
		return value, true
	}
	return "", false
}
