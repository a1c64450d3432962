package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Clients registered by the example OpenID provider.
const (
	// OIDCWebClientID is a confidential client (client_secret_basic or _post, code flow, refresh
	// tokens; http redirect URIs allowed).
	OIDCWebClientID = "web"
	// OIDCWebClientSecret is the web client's secret.
	OIDCWebClientSecret = "secret"
	// OIDCNativeClientID is a public client (no secret, PKCE required, custom-scheme redirects).
	OIDCNativeClientID = "native"
)

// User is one account of the example OpenID provider. The JSON names are those its
// USERS_FILE expects.
type User struct {
	ID                string `json:"ID"`       // the subject ("sub")
	Username          string `json:"Username"` // what is typed into the login form
	Password          string `json:"Password"`
	FirstName         string `json:"FirstName"`
	LastName          string `json:"LastName"`
	Email             string `json:"Email"`
	EmailVerified     bool   `json:"EmailVerified"`
	PreferredLanguage string `json:"PreferredLanguage,omitempty"` // BCP 47, e.g. "en"
}

// OIDC is a running zitadel example OpenID provider. It keeps everything in memory: a restart
// forgets sessions, codes and tokens and makes a new signing key.
type OIDC struct {
	// Issuer is http://localhost:<port>/ (with the trailing slash, as in its discovery document).
	Issuer string
	// Port is the TCP port. The example listens on all interfaces.
	Port int
	// ClientID and ClientSecret are those of the confidential "web" client.
	ClientID     string
	ClientSecret string
	// NativeClientID is the public "native" client.
	NativeClientID string

	proc         *process
	usersPath    string
	redirectURIs []string
}

// StartOIDC starts the example provider with users and the redirect URIs registered for its
// clients, and waits until its discovery document answers. tb's cleanup kills it.
func StartOIDC(tb TB, users []User, redirectURIs []string) (*OIDC, error) {
	tb.Helper()
	if len(users) == 0 {
		return nil, fmt.Errorf("testenv: StartOIDC: at least one user is required")
	}
	bin, err := OIDCServerBinary()
	if err != nil {
		return nil, err
	}
	dir := tb.TempDir()
	o := &OIDC{
		ClientID:       OIDCWebClientID,
		ClientSecret:   OIDCWebClientSecret,
		NativeClientID: OIDCNativeClientID,
		usersPath:      filepath.Join(dir, "users.json"),
		redirectURIs:   append([]string(nil), redirectURIs...),
	}
	if err := o.writeUsers(users); err != nil {
		return nil, err
	}
	o.proc = newProcess("oidc", logFile(dir, "oidc"), bin, nil, nil, dir)
	registerCleanup(tb, o.proc)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // another process may take the free port first
		if o.Port, err = FreePort(); err != nil {
			return nil, err
		}
		o.Issuer = "http://localhost:" + strconv.Itoa(o.Port) + "/"
		if lastErr = o.start(); lastErr == nil {
			return o, nil
		}
		_ = o.proc.kill()
		if !strings.Contains(o.proc.tail(tailLines), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// start (re)starts the process on o.Port and waits for discovery.
func (o *OIDC) start() error {
	env := map[string]string{
		"PORT":       strconv.Itoa(o.Port),
		"USERS_FILE": o.usersPath,
	}
	if len(o.redirectURIs) > 0 {
		env["REDIRECT_URI"] = strings.Join(o.redirectURIs, ",")
	}
	o.proc.env = childEnv([]string{"PORT", "USERS_FILE", "REDIRECT_URI"}, env)
	if err := o.proc.start(); err != nil {
		return err
	}
	return o.proc.waitReady(StartTimeout, probeOK(o.DiscoveryURL()))
}

// DiscoveryURL returns the URL of the discovery document.
func (o *OIDC) DiscoveryURL() string { return o.Issuer + ".well-known/openid-configuration" }

// SetUsers replaces the accounts. The example reads its users only at start, so this restarts
// the provider on the same port: the issuer stays, but sessions, codes, tokens and the signing
// key are new. Leaving a user out is how a user is "disabled".
func (o *OIDC) SetUsers(users []User) error {
	if err := o.writeUsers(users); err != nil {
		return err
	}
	return o.Restart()
}

// Restart stops and starts the provider on the same port.
func (o *OIDC) Restart() error {
	if err := o.proc.stop(); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return o.start()
}

// Stop terminates the provider.
func (o *OIDC) Stop() error { return o.proc.stop() }

// Logs returns the provider's output so far.
func (o *OIDC) Logs() string { return o.proc.logs() }

// LogPath returns the path of the provider's log file.
func (o *OIDC) LogPath() string { return o.proc.logPath }

// writeUsers writes the USERS_FILE: a JSON object from user ID to user.
func (o *OIDC) writeUsers(users []User) error {
	m := make(map[string]User, len(users))
	for _, u := range users {
		if u.ID == "" || u.Username == "" {
			return fmt.Errorf("testenv: OIDC user %q needs ID and Username", u.ID+u.Username)
		}
		if _, dup := m[u.ID]; dup {
			return fmt.Errorf("testenv: OIDC user ID %q twice", u.ID)
		}
		m[u.ID] = u
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("testenv: users: %w", err)
	}
	if err := os.WriteFile(o.usersPath, b, 0o600); err != nil {
		return fmt.Errorf("testenv: users: %w", err)
	}
	return nil
}

// NumberedUsers returns n provider accounts <prefix><i> (i zero-padded to
// width digits), with addresses at example.com and password: the users of
// an emulated fleet.
func NumberedUsers(prefix, firstName string, width, n int, password string) []User {
	users := make([]User, n)
	for i := range users {
		name := fmt.Sprintf("%s%0*d", prefix, width, i)
		users[i] = User{ID: "u-" + name, Username: name, Password: password, FirstName: firstName,
			LastName: strconv.Itoa(i), Email: name + "@example.com", EmailVerified: true, PreferredLanguage: "en"}
	}
	return users
}
