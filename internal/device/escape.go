package device

import (
	"net/url"
	"strings"
)

// escapeQueryValue percent-encodes s the way the device's URL code does:
// RFC 3986 unreserved characters and the bytes in keep are left alone,
// everything else becomes %XX. The device does not encode '@' or '+' in
// the user identifier (so "a+b@example.com" arrives as typed) nor ':', '/'
// and '+' in the OAuth token request body.
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

// Characters the device leaves unencoded.
const (
	keepIdentifier = "@+"
	keepTokenBody  = ":/+"
)

// rawQueryFirst returns the percent-decoded value of the first item named
// key in a raw query, splitting on '&' only and never turning '+' into a
// space (RFC 3986, as the device's URL code does).
func rawQueryFirst(rawQuery, key string) (string, bool, error) {
	for item := range strings.SplitSeq(rawQuery, "&") {
		name, value, _ := strings.Cut(item, "=")
		n, err := url.PathUnescape(name)
		if err != nil {
			return "", false, err
		}
		if n != key {
			continue
		}
		v, err := url.PathUnescape(value)
		return v, true, err
	}
	return "", false, nil
}

// EscapeQueryValue percent-encodes s as the device does (see
// escapeQueryValue); KeepIdentifier is what it leaves alone in
// user-identifier. Tools that must send exactly what a device sends (the
// deployment checker) use it.
func EscapeQueryValue(s, keep string) string { return escapeQueryValue(s, keep) }

// KeepIdentifier are the characters a device leaves unencoded in
// user-identifier besides the RFC 3986 unreserved ones.
const KeepIdentifier = keepIdentifier
