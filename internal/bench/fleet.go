package bench

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/micromdm/plist"
)

// Fleet is the set of devices a load run speaks for. Request returns the
// HTTP/1.1 bytes of one request of device i: its Status Idle report, or a
// command result when result is set. The returned bytes may live in buf
// (which the caller reuses) or in the fleet; callers must not modify
// them.
type Fleet interface {
	Len() int
	Request(buf []byte, i int, result bool) []byte
}

// PreparedFleet holds each device's requests in wire form, built and
// signed once (device.Prepared.AppendWire): every byte a real device would
// send, a valid Mdm-Signature included, so they pass NanoMDM's checks.
type PreparedFleet struct {
	Idle    [][]byte
	Results [][]byte
}

// Len implements Fleet.
func (f *PreparedFleet) Len() int { return len(f.Idle) }

// Request implements Fleet.
func (f *PreparedFleet) Request(_ []byte, i int, result bool) []byte {
	if result && len(f.Results) > i && f.Results[i] != nil {
		return f.Results[i]
	}
	return f.Idle[i]
}

// SyntheticFleet speaks for devices that exist only in the token store
// (see SyntheticBinding): request i carries SyntheticID(i) and token i,
// assembled on the fly into the caller's buffer, so a million devices
// cost no memory. Its Mdm-Signature is a real signature, but of another
// body: use it only where nothing verifies signatures (mdm_auth does not;
// NanoMDM does).
type SyntheticFleet struct {
	n      int
	tokens Tokens
	// head is the request line and the fixed headers up to "Bearer ";
	// the bodies are the templates' parts around the enrollment id.
	head                     []byte
	idleHead, idleTail       []byte
	resultHead, resultTail   []byte
	idleLength, resultLength []byte
}

// NewSyntheticFleet returns a fleet of n synthetic devices sending to
// host (host:port) and path, with the given Mdm-Signature value.
func NewSyntheticFleet(n int, tokens Tokens, host, path, signature string) (*SyntheticFleet, error) {
	if n <= 0 {
		return nil, errors.New("bench: synthetic fleet needs at least one device")
	}
	const mark = "@@ID@@"
	idle, err := plist.MarshalIndent(map[string]any{"EnrollmentID": mark, "Status": "Idle"}, "\t")
	if err != nil {
		return nil, err
	}
	result, err := plist.MarshalIndent(map[string]any{
		"EnrollmentID": mark, "Status": "Acknowledged", "CommandUUID": "0C1D2E3F-4A5B-4C6D-8E7F-8091A2B3C4D5",
	}, "\t")
	if err != nil {
		return nil, err
	}
	f := &SyntheticFleet{n: n, tokens: tokens}
	var ok bool
	if f.idleHead, f.idleTail, ok = bytes.Cut(idle, []byte(mark)); !ok {
		return nil, errors.New("bench: idle template")
	}
	if f.resultHead, f.resultTail, ok = bytes.Cut(result, []byte(mark)); !ok {
		return nil, errors.New("bench: result template")
	}
	idLen := len(SyntheticID(0))
	f.idleLength = strconv.AppendInt(nil, int64(len(f.idleHead)+idLen+len(f.idleTail)), 10)
	f.resultLength = strconv.AppendInt(nil, int64(len(f.resultHead)+idLen+len(f.resultTail)), 10)
	f.head = fmt.Appendf(nil, "PUT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: MDM/1.0\r\nContent-Type: application/x-apple-aspen-mdm\r\nMdm-Signature: %s\r\nAuthorization: Bearer ",
		path, host, signature)
	return f, nil
}

// Len implements Fleet.
func (f *SyntheticFleet) Len() int { return f.n }

// Request implements Fleet.
func (f *SyntheticFleet) Request(buf []byte, i int, result bool) []byte {
	bodyHead, bodyTail, length := f.idleHead, f.idleTail, f.idleLength
	if result {
		bodyHead, bodyTail, length = f.resultHead, f.resultTail, f.resultLength
	}
	b := append(buf[:0], f.head...)
	b = append(b, f.tokens.Token(i)...)
	b = append(b, "\r\nContent-Length: "...)
	b = append(b, length...)
	b = append(b, "\r\n\r\n"...)
	b = append(b, bodyHead...)
	b = append(b, SyntheticID(i)...)
	return append(b, bodyTail...)
}
