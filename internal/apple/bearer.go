package apple

// maxAuthorizationHeader bounds the Authorization header ParseBearer accepts.
const maxAuthorizationHeader = 4096

// ParseBearer extracts the token from an Authorization header value of the
// form "Bearer <token>" (RFC 6750 section 2.1). The scheme is matched
// case-insensitively and must be followed by exactly one space; the token
// must be a non-empty b64token (ALPHA DIGIT - . _ ~ + / followed by optional
// '=' padding) and the whole value at most 4096 bytes. ok is false otherwise.
func ParseBearer(header string) (token string, ok bool) {
	const prefix = "bearer "
	if len(header) > maxAuthorizationHeader || len(header) <= len(prefix) {
		return "", false
	}
	for i := 0; i < len(prefix); i++ {
		c := header[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return "", false
		}
	}
	token = header[len(prefix):]
	i := 0
	for ; i < len(token) && isB64TokenChar(token[i]); i++ {
	}
	if i == 0 {
		return "", false
	}
	for ; i < len(token); i++ {
		if token[i] != '=' {
			return "", false
		}
	}
	return token, true
}

// isB64TokenChar reports whether c is in the RFC 6750 b64token alphabet,
// padding excluded.
func isB64TokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}
