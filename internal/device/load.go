package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// Load mode: a load generator sends the same few requests of each device
// many times. Encoding the plist and computing Mdm-Signature (a CMS
// signature) on every send would make the generator, not the server, the
// bottleneck, so a device prepares each request once.

// Prepared is an MDM request built and signed ahead of time: exactly what
// the device would send (body, Mdm-Signature, bearer per channel), ready to
// be sent many times. Sending it bypasses the device's answer checks and
// 401 handling; a prepared request carries the token the device held when
// it was prepared.
type Prepared struct {
	Method string
	URL    *url.URL
	Header http.Header
	Body   []byte
}

// PrepareIdle prepares the Status Idle request of ch, as Poll sends it.
func (d *Device) PrepareIdle(ch Channel) (*Prepared, error) {
	return d.prepareReport(ch, "", "Idle")
}

// PrepareReport prepares a command result (Status Acknowledged, Error,
// CommandFormatError or NotNow for commandUUID) on ch, as Report sends it.
func (d *Device) PrepareReport(ch Channel, commandUUID, status string) (*Prepared, error) {
	if commandUUID == "" {
		return nil, fmt.Errorf("%s: PrepareReport: empty CommandUUID", StepCommand)
	}
	return d.prepareReport(ch, commandUUID, status)
}

func (d *Device) prepareReport(ch Channel, commandUUID, status string) (*Prepared, error) {
	p := d.Profile()
	if p == nil {
		return nil, fmt.Errorf("%s: device is not enrolled", StepCommand)
	}
	m, err := d.enrollmentKeys(ch)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", StepCommand, err)
	}
	m["Status"] = status
	if commandUUID != "" {
		m["CommandUUID"] = commandUUID
	}
	body, err := encodeMessage(m)
	if err != nil {
		return nil, err
	}
	u, err := d.checkURL(StepCommand, "ServerURL", p.ServerURL)
	if err != nil {
		return nil, err
	}
	if d.cfg.Identity == nil {
		return nil, errors.New("no MDM identity configured (Config.Identity)")
	}
	sig, err := mdmSignature(d.cfg.Identity, body)
	if err != nil {
		return nil, fmt.Errorf("Mdm-Signature: %w", err)
	}
	h := http.Header{}
	h.Set("Content-Type", CommandContentType)
	h.Set("User-Agent", userAgentMDM)
	h.Set("Mdm-Signature", sig)
	if tok := d.Token(); tok != "" && d.sendsBearer(ch) {
		h.Set("Authorization", "Bearer "+tok)
	}
	return &Prepared{Method: http.MethodPut, URL: u, Header: h, Body: body}, nil
}

// Request returns p as a new *http.Request for a net/http client.
func (p *Prepared) Request(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, p.Method, p.URL.String(), bytes.NewReader(p.Body))
	if err != nil {
		return nil, err
	}
	req.Header = p.Header.Clone()
	return req, nil
}

// AppendWire appends p in HTTP/1.1 wire form to dst and returns the
// extended slice: the request line with the URL's path and query, Host,
// the headers in name order, Content-Length, a blank line and the body.
// The connection stays open (HTTP/1.1 keep-alive), so a load generator
// can write the bytes as they are, request after request.
func (p *Prepared) AppendWire(dst []byte) []byte {
	dst = append(dst, p.Method...)
	dst = append(dst, ' ')
	dst = append(dst, p.URL.RequestURI()...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, p.URL.Host...)
	dst = append(dst, "\r\n"...)
	names := make([]string, 0, len(p.Header))
	for k := range p.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if k == "Host" || k == "Content-Length" {
			continue
		}
		for _, v := range p.Header[k] {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(p.Body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, p.Body...)
}
