package profile

import (
	"fmt"
	"io"
)

const upperHex = "0123456789ABCDEF"

// newUUID reads 16 bytes from r and formats them as an upper-case version 4 UUID.
func newUUID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("%w: %v", ErrRandom, err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j] = upperHex[c>>4]
		out[j+1] = upperHex[c&0x0f]
		j += 2
	}
	return string(out[:]), nil
}

// isUUID reports whether s has the canonical 8-4-4-4-12 hexadecimal UUID form (any case).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
