package apple

import "strings"

// Escape percent-encodes s for a query component, RFC 3986 style: every
// byte but the unreserved characters and those in keep is %XX-encoded, so a
// space is %20, never '+'. Devices send '@' and '+' unescaped in discovery
// queries; redirects that carry those queries keep them the same way.
func Escape(s, keep string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			strings.IndexByte("-._~", c) >= 0 || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
