// Package devicetest provides a fake account-driven enrollment server for
// testing the device emulator: a gateway answering discovery and the
// enrollment POSTs, a web sign-in with a login form shaped like the zitadel
// example OpenID provider's, an optional OAuth 2 authorization server, an
// optional Enrollment SSO document, and an MDM endpoint that verifies
// Mdm-Signature and bearer tokens and queues commands. It follows the Apple
// protocol by default; Options.Hook and Options.EditProfile make it deviate.
//
// It is a test double, not a reference implementation of the gateway.
package devicetest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Stages passed to Options.Hook.
const (
	StageDiscovery = "discovery"  // GET /.well-known/com.apple.remotemanagement
	StageEnroll    = "enroll"     // POST EnrollPath
	StageESSO      = "esso"       // GET ESSOPath
	StageSignIn    = "sign-in"    // GET /mdmauth/sign-in/{flow}
	StageLoginPage = "login-page" // GET /login/username
	StageLogin     = "login"      // POST /login/username
	StageCallback  = "callback"   // GET /mdmauth/oidc/callback
	StageAuthorize = "authorize"  // GET /oauth/authorize
	StageToken     = "token"      // POST /oauth/token
	StageMDM       = "mdm"        // PUT MDMPath
)

// Paths served.
const (
	EnrollPath = "/mdmauth/enroll/byod"
	MDMPath    = "/mdm/ad"
	ESSOPath   = "/mdmauth/esso"
)

// Options configure a Server. The zero value serves a BYOD web sign-in
// enrollment for user alice with password "secret".
type Options struct {
	// Version is the discovery Version: "mdm-byod" (default) or "mdm-adde".
	Version string
	// OAuth2 makes the challenge apple-oauth2 instead of apple-as-web.
	OAuth2 bool
	// NoRefreshOnRefresh leaves refresh_token out of refresh answers.
	NoRefreshOnRefresh bool
	// Users maps usernames to passwords; default {"alice": "secret"}.
	Users map[string]string
	// Topic is the profile Topic; default "com.apple.mgmt.External.devicetest".
	Topic string
	// MacDevice makes the MDM endpoint expect a Mac: no Authorization on
	// device-channel requests (one there is answered 400).
	MacDevice bool
	// SignProfile sends the profile as CMS SignedData.
	SignProfile bool
	// LoginCSP, if set, is sent as Content-Security-Policy with the login page.
	LoginCSP string
	// EditProfile may change the profile's top-level and com.apple.mdm
	// dictionaries before they are encoded.
	EditProfile func(top, mdm map[string]any)
	// ESSO, if set, is the Enrollment SSO document served at ESSOPath; the
	// enrollment 401 then names it in X-Apple-MDM-ESSO. ESSOFields and
	// ESSODocument build a conforming one.
	ESSO []byte
	// ESSODeveloper names the document in X-Apple-MDM-ESSO-Developer
	// instead (test mode).
	ESSODeveloper bool
	// ESSOOnMDM also puts the Enrollment SSO header on MDM 401s, where it
	// does not belong and a device ignores it.
	ESSOOnMDM bool
	// MDMUpstream, if set, is where MDM requests that pass the signature
	// and bearer checks are forwarded (without Authorization), as the
	// gateway forwards them to NanoMDM; its answer is relayed.
	MDMUpstream string
	// Hook runs before the default handling of each stage; returning true
	// means it answered the request itself.
	Hook func(stage string, w http.ResponseWriter, r *http.Request) bool
}

// Server is a running fake server (TLS).
type Server struct {
	*httptest.Server
	opts Options

	mu            sync.Mutex
	flows         map[string]*flow  // sign-in flow id → flow
	codes         map[string]*flow  // login/authorization code → flow
	tokens        map[string]string // valid access token → user
	refreshTokens map[string]string // valid refresh token → user
	queues        map[string][]queued
	mdm           []MDMRequest
	enrolls       []EnrollRequest
	discoveries   []string // raw queries
	signInQueries []string // raw queries of sign-in page opens
	tokenBodies   []string // raw token request bodies
	authorizeRaw  []string // raw authorization request queries
	essoRequests  []ESSORequest
	minted        int
}

type flow struct {
	id    string
	oauth bool
	user  string
	// OAuth 2
	redirectURI, state string
}

type queued struct {
	uuid string
	raw  []byte
}

// New starts a Server.
func New(opts Options) *Server {
	if opts.Version == "" {
		opts.Version = "mdm-byod"
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"alice": "secret"}
	}
	if opts.Topic == "" {
		opts.Topic = "com.apple.mgmt.External.devicetest"
	}
	s := &Server{
		opts:          opts,
		flows:         map[string]*flow{},
		codes:         map[string]*flow{},
		tokens:        map[string]string{},
		refreshTokens: map[string]string{},
		queues:        map[string][]queued{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/com.apple.remotemanagement", s.stage(StageDiscovery, s.discovery))
	mux.HandleFunc("POST "+EnrollPath, s.stage(StageEnroll, s.enroll))
	mux.HandleFunc("GET "+ESSOPath, s.stage(StageESSO, s.essoHandler))
	mux.HandleFunc("GET /mdmauth/sign-in/{flow}", s.stage(StageSignIn, s.signIn))
	mux.HandleFunc("GET /login/username", s.stage(StageLoginPage, s.loginPage))
	mux.HandleFunc("POST /login/username", s.stage(StageLogin, s.login))
	mux.HandleFunc("GET /mdmauth/oidc/callback", s.stage(StageCallback, s.callback))
	mux.HandleFunc("GET /oauth/authorize", s.stage(StageAuthorize, s.authorize))
	mux.HandleFunc("POST /oauth/token", s.stage(StageToken, s.token))
	mux.HandleFunc("PUT "+MDMPath, s.stage(StageMDM, s.mdmHandler))
	s.Server = httptest.NewTLSServer(mux)
	return s
}

func (s *Server) stage(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Hook != nil && s.opts.Hook(name, w, r) {
			return
		}
		h(w, r)
	}
}

// BaseURL is the enrollment URL discovery hands out.
func (s *Server) BaseURL() string { return s.URL + EnrollPath }

// MDMURL is the profile's ServerURL and CheckInURL.
func (s *Server) MDMURL() string { return s.URL + MDMPath }

// Challenge returns the WWW-Authenticate value the server sends with a 401.
func (s *Server) Challenge() string {
	if s.opts.OAuth2 {
		return `Bearer method="apple-oauth2", authorization-url="` + s.URL + `/oauth/authorize", token-url="` + s.URL +
			`/oauth/token", redirect-url="apple-remotemanagement-user-login:/oauth2/redirection", client-id="mdm-device", scope="mdm"`
	}
	id := randomID()
	s.mu.Lock()
	s.flows[id] = &flow{id: id}
	s.mu.Unlock()
	return `Bearer method="apple-as-web", url="` + s.URL + `/mdmauth/sign-in/` + id + `"`
}

// RevokeAll invalidates every access and refresh token, so that the next
// MDM request is answered 401 with a challenge.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
	clear(s.refreshTokens)
}

// RevokeAccess invalidates every access token but keeps refresh tokens.
func (s *Server) RevokeAccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Minted is how many access tokens the server issued.
func (s *Server) Minted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.minted
}

// Discoveries returns the raw queries of discovery requests.
func (s *Server) Discoveries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.discoveries...)
}

// SignInQueries returns the raw queries the sign-in page was opened with.
func (s *Server) SignInQueries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.signInQueries...)
}

// TokenBodies returns the raw OAuth 2 token request bodies.
func (s *Server) TokenBodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokenBodies...)
}

// AuthorizeQueries returns the raw OAuth 2 authorization request queries.
func (s *Server) AuthorizeQueries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.authorizeRaw...)
}

// Enrollments returns the enrollment POSTs received.
func (s *Server) Enrollments() []EnrollRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]EnrollRequest(nil), s.enrolls...)
}

// MDMRequests returns the MDM requests received.
func (s *Server) MDMRequests() []MDMRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]MDMRequest(nil), s.mdm...)
}

func (s *Server) mintToken(user string) (access, refresh string) {
	access, refresh = randomID(), randomID()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[access] = user
	s.refreshTokens[refresh] = user
	s.minted++
	return access, refresh
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(v, "Bearer ")
	return tok, ok && tok != ""
}

func (s *Server) validToken(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.tokens[tok]
	return ok
}

func randomID() string {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}
