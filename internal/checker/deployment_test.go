package checker_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/mdmauth/mdmauth/internal/device/devicetest"
)

// Stages a deployment's hook may take over.
const (
	stageDiscovery = "discovery"
	stageEnroll    = "enroll"
	stageESSO      = "esso"
)

const enrollPath = "/mdmauth/enroll/byod"

// deployment is a conforming account-driven enrollment deployment (the
// parts a device meets before signing in), which hooks can break.
type deployment struct {
	*httptest.Server
	// OAuth2 makes the challenge apple-oauth2.
	OAuth2 bool
	// ESSO, when set, is the Enrollment SSO document named on the 401.
	ESSO []byte
	// Hook runs before the default handling of a stage; true means it
	// answered.
	Hook func(stage string, w http.ResponseWriter, r *http.Request) bool

	mu       sync.Mutex
	requests []seen
}

// seen is a request as the deployment received it.
type seen struct {
	Method, Path, RawQuery      string
	UserAgent, ContentType      string
	HasAuthorization, HasCookie bool
	SignedContent               map[string]string // the enrollment POST's plist
	SignatureErr                string
}

func newDeployment(t *testing.T, d *deployment) *deployment {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/com.apple.remotemanagement", d.stage(stageDiscovery, d.discovery))
	mux.HandleFunc(enrollPath, d.stage(stageEnroll, d.enroll))
	mux.HandleFunc("GET /mdmauth/esso", d.stage(stageESSO, d.esso))
	d.Server = httptest.NewUnstartedServer(mux)
	d.Config.ErrorLog = quietLog
	d.StartTLS()
	t.Cleanup(d.Close)
	return d
}

func (d *deployment) stage(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := seen{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, UserAgent: r.UserAgent(),
			ContentType: r.Header.Get("Content-Type"), HasAuthorization: r.Header.Get("Authorization") != "",
			HasCookie: r.Header.Get("Cookie") != ""}
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
			if p7, err := pkcs7.Parse(body); err != nil {
				s.SignatureErr = err.Error()
			} else if err := p7.Verify(); err != nil {
				s.SignatureErr = err.Error()
			} else if err := plist.NewXMLDecoder(bytes.NewReader(p7.Content)).Decode(&s.SignedContent); err != nil {
				s.SignatureErr = err.Error()
			}
		}
		d.mu.Lock()
		d.requests = append(d.requests, s)
		d.mu.Unlock()
		if d.Hook != nil && d.Hook(name, w, r) {
			return
		}
		h(w, r)
	}
}

// Requests returns what the deployment received.
func (d *deployment) Requests() []seen {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]seen(nil), d.requests...)
}

// BaseURL is the enrollment URL discovery advertises.
func (d *deployment) BaseURL() string { return d.URL + enrollPath }

// Challenge is the WWW-Authenticate value of the enrollment 401.
func (d *deployment) Challenge() string {
	if d.OAuth2 {
		return `Bearer method="apple-oauth2", authorization-url="` + d.URL + `/oauth/authorize", token-url="` + d.URL +
			`/oauth/token", redirect-url="apple-remotemanagement-user-login:/oauth2/redirection", client-id="mdm", scope="mdm"`
	}
	return `Bearer method="apple-as-web", url="` + d.URL + `/mdmauth/sign-in/FLOW"`
}

// DiscoveryAnswer is the conforming discovery body.
func (d *deployment) DiscoveryAnswer() []byte {
	b, _ := json.Marshal(map[string]any{"Servers": []map[string]string{{"Version": "mdm-byod", "BaseURL": d.BaseURL()}}})
	return b
}

func (d *deployment) discovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.UserAgent() != "DeviceManagementClient/1.0" || r.Header.Get("Cookie") != "" || r.Header.Get("Authorization") != "" {
		http.Error(w, "not a device", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	if q.Get("user-identifier") == "" || q.Get("model-family") == "" {
		writeJSON(w, http.StatusForbidden, map[string]string{"code": "com.apple.well-known.failed",
			"description": "user-identifier or model-family missing", "message": "This account cannot enroll."})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(d.DiscoveryAnswer())
}

func (d *deployment) enroll(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if _, err := pkcs7.Parse(body); err != nil || r.Header.Get("Authorization") != "" {
		http.Error(w, "bad enrollment request", http.StatusBadRequest)
		return
	}
	w.Header().Set("WWW-Authenticate", d.Challenge())
	if d.ESSO != nil {
		w.Header().Set("X-Apple-MDM-ESSO", d.URL+"/mdmauth/esso")
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "sign in required", http.StatusUnauthorized)
}

func (d *deployment) esso(w http.ResponseWriter, r *http.Request) {
	if d.ESSO == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(d.ESSO)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// quietLog drops the test servers' TLS handshake errors, which the TLS
// tests cause on purpose.
var quietLog = log.New(io.Discard, "", 0)

// validESSO is a conforming Enrollment SSO document.
func validESSO() []byte { return devicetest.ESSODocument(devicetest.ESSOFields(false)) }
