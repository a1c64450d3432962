package device

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// newUUID returns an upper-case random (version 4) UUID.
func newUUID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("device: reading randomness: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := strings.ToUpper(hex.EncodeToString(b[:]))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// newUDID returns a UDID shaped like the family's: a UUID for a Mac, and
// the 8-16 hex form of current iPhones and iPads otherwise.
func newUDID(r io.Reader, family string) (string, error) {
	if family == "Mac" {
		return newUUID(r)
	}
	var b [10]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("device: reading randomness: %w", err)
	}
	h := strings.ToUpper(hex.EncodeToString(b[:]))
	return "00008" + h[:3] + "-" + h[4:20], nil
}

// newSerial returns a random 10-character serial number.
func newSerial(r io.Reader) (string, error) {
	const alphabet = "0123456789CDFGHJKLMNPQRTVWXY"
	var b [10]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("device: reading randomness: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:]), nil
}

func randomBytes(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("device: reading randomness: %w", err)
	}
	return b, nil
}
