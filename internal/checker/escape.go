package checker

import (
	"net/url"
	"strings"

	"github.com/mdmauth/mdmauth/internal/device"
)

// keepIdentifier and escapeQueryValue encode the query exactly as the
// device emulator (and so a device) does.
const keepIdentifier = device.KeepIdentifier

func escapeQueryValue(s, keep string) string { return device.EscapeQueryValue(s, keep) }

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
