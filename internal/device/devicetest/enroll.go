package devicetest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

// EnrollRequest is an enrollment POST as the server saw it.
type EnrollRequest struct {
	ContentType string
	UserAgent   string
	HasBearer   bool
	Signer      *x509.Certificate // the CMS signer of the body
	Content     map[string]string // LANGUAGE, PRODUCT, VERSION, …
	Err         string            // why the body could not be read, if it could not
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.discoveries = append(s.discoveries, r.URL.RawQuery)
	s.mu.Unlock()
	if r.Header.Get("User-Agent") != "DeviceManagementClient/1.0" || r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
		http.Error(w, "not a device discovery request", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	body, _ := json.Marshal(map[string]any{"Servers": []map[string]string{{"Version": s.opts.Version, "BaseURL": s.BaseURL()}}})
	w.Write(body)
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	er := EnrollRequest{ContentType: r.Header.Get("Content-Type"), UserAgent: r.Header.Get("User-Agent")}
	tok, hasBearer := bearer(r)
	er.HasBearer = hasBearer
	if p7, err := pkcs7.Parse(raw); err != nil {
		er.Err = "parse: " + err.Error()
	} else if err := p7.Verify(); err != nil {
		er.Err = "verify: " + err.Error()
	} else {
		er.Signer = p7.GetOnlySigner()
		if err := plist.NewXMLDecoder(bytes.NewReader(p7.Content)).Decode(&er.Content); err != nil {
			er.Err = "content: " + err.Error()
		}
	}
	s.mu.Lock()
	s.enrolls = append(s.enrolls, er)
	s.mu.Unlock()
	if er.Err != "" {
		http.Error(w, "bad enrollment request", http.StatusBadRequest)
		return
	}
	if !hasBearer {
		w.Header().Set("WWW-Authenticate", s.Challenge())
		s.setESSOHeader(w)
		http.Error(w, "sign in required", http.StatusUnauthorized)
		return
	}
	if !s.validToken(tok) {
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	user := s.tokens[tok]
	s.mu.Unlock()
	body, err := s.Profile(user + "@example.com")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Write(body)
}

// Profile renders the enrollment profile for a Managed Apple Account.
func (s *Server) Profile(managedAppleID string) ([]byte, error) {
	const scepUUID = "7A3E6C2D-1B4F-4E8A-9C5D-2F1E0A9B8C7D"
	scep := map[string]any{
		"PayloadType":        "com.apple.security.scep",
		"PayloadIdentifier":  "com.example.mdm.scep",
		"PayloadUUID":        scepUUID,
		"PayloadVersion":     1,
		"PayloadDisplayName": "MDM identity",
		"PayloadContent": map[string]any{
			"URL":       s.URL + "/scep",
			"Challenge": "devicetest",
			"Key Type":  "RSA",
			"Keysize":   2048,
			"Subject":   [][][]string{{{"CN", "MDM identity"}}},
		},
	}
	mode := "BYOD"
	if s.opts.Version == "mdm-adde" {
		mode = "ADDE"
	}
	mdm := map[string]any{
		"PayloadType":             "com.apple.mdm",
		"PayloadIdentifier":       "com.example.mdm.mdm",
		"PayloadUUID":             "0C1D2E3F-4A5B-4C6D-8E7F-901A2B3C4D5E",
		"PayloadVersion":          1,
		"IdentityCertificateUUID": scepUUID,
		"ServerURL":               s.MDMURL(),
		"CheckInURL":              s.MDMURL(),
		"Topic":                   s.opts.Topic,
		"SignMessage":             true,
		"CheckOutWhenRemoved":     true,
		"ServerCapabilities":      []string{"com.apple.mdm.per-user-connections", "com.apple.mdm.bootstraptoken"},
		"EnrollmentMode":          mode,
		"AssignedManagedAppleID":  managedAppleID,
	}
	if mode == "ADDE" {
		mdm["AccessRights"] = 8191
	}
	top := map[string]any{
		"PayloadType":        "Configuration",
		"PayloadIdentifier":  "com.example.mdm",
		"PayloadUUID":        "5B6C7D8E-9FA0-4B1C-8D2E-3F4A5B6C7D8E",
		"PayloadVersion":     1,
		"PayloadDisplayName": "MDM enrollment",
	}
	if s.opts.EditProfile != nil {
		s.opts.EditProfile(top, mdm)
	}
	top["PayloadContent"] = []any{scep, mdm}
	body, err := plist.MarshalIndent(top, "\t")
	if err != nil {
		return nil, err
	}
	if !s.opts.SignProfile {
		return body, nil
	}
	return signProfile(body)
}

func signProfile(content []byte) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "devicetest profile signer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("signing profile: %w", err)
	}
	return sd.Finish()
}

// rawQueryValue returns the first value of key in a raw query, decoded
// without turning '+' into a space.
func rawQueryValue(raw, key string) string {
	for item := range strings.SplitSeq(raw, "&") {
		k, v, _ := strings.Cut(item, "=")
		if k == key {
			if d, err := url.PathUnescape(v); err == nil {
				return d
			}
			return v
		}
	}
	return ""
}
