package devicetest

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// MDMRequest is an MDM request as the server saw it.
type MDMRequest struct {
	ContentType string
	UserAgent   string
	HasBearer   bool
	TokenValid  bool
	Signer      *x509.Certificate // from Mdm-Signature; nil if absent or invalid
	Message     map[string]any    // the decoded body
	Kind        string            // MessageType of a check-in, "Status " + Status of a command request
	ChannelID   string            // EnrollmentID or UDID, then ":" + user id on a user channel
	Status      int               // the answer's status
}

// Enqueue queues a command with the given RequestType for a channel id
// (see MDMRequest.ChannelID) and returns its CommandUUID.
func (s *Server) Enqueue(channelID, requestType string) string {
	uuid := randomID()
	raw, err := plist.MarshalIndent(map[string]any{
		"CommandUUID": uuid,
		"Command":     map[string]any{"RequestType": requestType},
	}, "\t")
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.queues[channelID] = append(s.queues[channelID], queued{uuid: uuid, raw: raw})
	s.mu.Unlock()
	return uuid
}

func (s *Server) mdmHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	req := MDMRequest{ContentType: r.Header.Get("Content-Type"), UserAgent: r.Header.Get("User-Agent")}
	tok, hasBearer := bearer(r)
	req.HasBearer = hasBearer
	req.TokenValid = hasBearer && s.validToken(tok)
	status, answer := s.mdmAnswer(&req, r, body)
	if status == http.StatusOK && s.opts.MDMUpstream != "" {
		status, answer = s.forward(r, body)
	}
	req.Status = status
	s.mu.Lock()
	s.mdm = append(s.mdm, req)
	s.mu.Unlock()
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", s.Challenge())
		if s.opts.ESSOOnMDM {
			s.setESSOHeader(w)
		}
	}
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Write(answer)
}

func (s *Server) mdmAnswer(req *MDMRequest, r *http.Request, body []byte) (int, []byte) {
	if sig := r.Header.Get("Mdm-Signature"); sig != "" {
		req.Signer, _ = verifyDetached(sig, body)
	}
	if req.Signer == nil || req.UserAgent != "MDM/1.0" {
		return http.StatusBadRequest, nil
	}
	if err := plist.NewXMLDecoder(bytes.NewReader(body)).Decode(&req.Message); err != nil {
		return http.StatusBadRequest, nil
	}
	dev, _ := req.Message["UDID"].(string)
	if dev == "" {
		dev, _ = req.Message["EnrollmentID"].(string)
	}
	user, _ := req.Message["UserID"].(string)
	if user == "" {
		user, _ = req.Message["EnrollmentUserID"].(string)
	}
	req.ChannelID = dev
	if user != "" {
		req.ChannelID += ":" + user
	}
	mt, _, _ := mime.ParseMediaType(req.ContentType)
	checkin := mt == "application/x-apple-aspen-mdm-checkin"
	if checkin {
		req.Kind, _ = req.Message["MessageType"].(string)
	} else {
		st, _ := req.Message["Status"].(string)
		req.Kind = "Status " + st
	}
	if dev == "" || req.Kind == "" || req.Kind == "Status " {
		return http.StatusBadRequest, nil
	}
	macDevice := s.opts.MacDevice && user == ""
	switch {
	case macDevice && req.HasBearer:
		return http.StatusBadRequest, nil // a Mac never sends it there
	case macDevice:
	case req.Kind == "CheckOut":
		// CheckOut cannot handle a 401: accept it whatever the token.
	case !req.TokenValid:
		return http.StatusUnauthorized, nil
	}
	if checkin {
		return http.StatusOK, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[req.ChannelID]
	if uuid, _ := req.Message["CommandUUID"].(string); uuid != "" && len(q) > 0 && q[0].uuid == uuid {
		q = q[1:]
		s.queues[req.ChannelID] = q
	}
	if len(q) == 0 {
		return http.StatusOK, nil
	}
	return http.StatusOK, q[0].raw
}

// forward relays an MDM request to Options.MDMUpstream without its
// Authorization header.
func (s *Server) forward(r *http.Request, body []byte) (int, []byte) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, s.opts.MDMUpstream, bytes.NewReader(body))
	if err != nil {
		return http.StatusBadGateway, nil
	}
	for _, h := range []string{"Content-Type", "User-Agent", "Mdm-Signature"} {
		if v := r.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		return http.StatusBadGateway, nil
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return http.StatusBadGateway, nil
	}
	return resp.StatusCode, answer
}

func verifyDetached(header string, body []byte) (*x509.Certificate, error) {
	der, err := base64.StdEncoding.DecodeString(header)
	if err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, err
	}
	p7.Content = body
	if err := p7.Verify(); err != nil {
		return nil, err
	}
	cert := p7.GetOnlySigner()
	if cert == nil {
		return nil, fmt.Errorf("no single signer")
	}
	return cert, nil
}
