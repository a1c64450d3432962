// Package lab runs a complete mdmauth deployment on loopback from real
// parts: NanoMDM v0.9.0, an OpenID provider with a real login form (the
// zitadel example server), and Caddy built from this repository with
// mdm_auth in front of NanoMDM. The end-to-end tests and the demo use it
// with the device emulator.
package lab

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/store"
	"github.com/mdmauth/mdmauth/internal/store/badger"
	"github.com/mdmauth/mdmauth/internal/store/postgres"
	"github.com/mdmauth/mdmauth/internal/testenv"
	"github.com/mdmauth/mdmauth/internal/token"
)

// Options configures a lab.
type Options struct {
	// Users of the OpenID provider. Default: alice and bob (example.com),
	// password "correct horse".
	Users []testenv.User
	// AccessTokenTTL as written in the Caddyfile. Default: the handler's.
	AccessTokenTTL string
	// Handler holds extra lines for the mdm_auth block, e.g. "sign_in oauth2".
	Handler string
	// OIDC holds extra lines for the oidc block.
	OIDC string
	// Discovery replaces the discovery block's lines. Default: domains
	// example.com, mode byod, mode Mac adde.
	Discovery string
	// ExtraRedirectURIs are registered at the provider too (for another
	// gateway a test starts).
	ExtraRedirectURIs []string
	// ProfileSignCert and ProfileSignKey, when set, sign served profiles.
	ProfileSignCert, ProfileSignKey string
	// Website, when set, is the body of a second site, the organization's
	// website, at https://localhost:<port> (Lab.WebsiteURL); {{.Gateway}}
	// in it is the gateway's URL.
	Website string
	// CaddyBinary, when set, is the Caddy executable to run; otherwise
	// Caddy is built from the repository once per process.
	CaddyBinary string
	// PostgresDSN, when set, keeps the token store in PostgreSQL (schema
	// PostgresSchema, default mdmauth) instead of Badger.
	PostgresDSN, PostgresSchema string
	// Instances, when more than 1, runs that many gateways sharing the
	// PostgreSQL store (PostgresDSN is required), each its own Caddy on
	// its own ports with public_url set to BaseURL, behind a front Caddy
	// at BaseURL that balances them round robin (Lab.Caddy).
	Instances int
}

// Gateway is one gateway instance of a multi-instance lab.
type Gateway struct {
	Caddy *testenv.Caddy
	// URL is https://127.0.0.1:<port>, the instance itself (bypassing the
	// front); AdminURL its admin endpoint.
	URL, AdminURL string
}

// caddyBinary builds Caddy from the repository once per process
// (testenv.BuildCaddy links a new binary at every call).
var caddyBinary = sync.OnceValues(testenv.BuildCaddy)

// Password of the default users.
const Password = "correct horse"

// DefaultUsers are alice and bob.
var DefaultUsers = []testenv.User{
	{ID: "u-alice", Username: "alice", Password: Password, FirstName: "Alice", LastName: "Liddell", Email: "alice@example.com", EmailVerified: true, PreferredLanguage: "en"},
	{ID: "u-bob", Username: "bob", Password: Password, FirstName: "Bob", LastName: "Builder", Email: "bob@example.com", EmailVerified: true, PreferredLanguage: "en"},
}

// Lab is a running deployment.
type Lab struct {
	CA      *testenv.CA
	NanoMDM *testenv.NanoMDM
	OIDC    *testenv.OIDC
	Caddy   *testenv.Caddy

	// BaseURL is https://127.0.0.1:<port>, the gateway.
	BaseURL string
	// AdminURL is http://127.0.0.1:<port>, Caddy's admin endpoint (its
	// /metrics, /config and the mdm_auth admin API).
	AdminURL string
	// HTTPClient trusts the lab's CA.
	HTTPClient *http.Client
	// StorageDir is the token store.
	StorageDir string
	// AccessLog is the path of Caddy's access log.
	AccessLog string
	// TemplatePath is the enrollment profile template.
	TemplatePath string
	// WebsiteURL is https://localhost:<port> when Options.Website is set.
	WebsiteURL string
	// Dir holds the lab's files (certificates, templates).
	Dir string
	// CertPath and KeyPath are the TLS server certificate (127.0.0.1,
	// localhost) issued by CA.
	CertPath, KeyPath string
	// Gateways are the instances behind the front when Options.Instances
	// is more than 1; nil otherwise (Caddy is then the gateway).
	Gateways []*Gateway

	postgresDSN, postgresSchema string
	vars                        map[string]any // the single gateway's Caddyfile
}

// Start builds what is missing and starts every part.
func Start(tb testenv.TB, o Options) (*Lab, error) {
	tb.Helper()
	if len(o.Users) == 0 {
		o.Users = DefaultUsers
	}
	dir := tb.TempDir()
	tlsFiles, err := testenv.NewLoopbackTLS(dir, "mdmauth lab CA")
	if err != nil {
		return nil, err
	}
	ca, caPath, certPath, keyPath := tlsFiles.CA, tlsFiles.CAPath, tlsFiles.CertPath, tlsFiles.KeyPath
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			return nil, err
		}
	}
	httpsPort, httpPort, adminPort := ports[0], ports[1], ports[2]
	l := &Lab{
		CertPath:   certPath,
		KeyPath:    keyPath,
		Dir:        dir,
		CA:         ca,
		BaseURL:    fmt.Sprintf("https://127.0.0.1:%d", httpsPort),
		AdminURL:   fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		StorageDir: filepath.Join(dir, "mdmauth-store"),
		AccessLog:  filepath.Join(dir, "access.log"),
	}
	l.HTTPClient = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}},
	}

	if l.NanoMDM, err = testenv.StartNanoMDM(tb, testenv.NanoMDMOptions{CAPath: caPath}); err != nil {
		return nil, err
	}
	if l.OIDC, err = testenv.StartOIDC(tb, o.Users, append([]string{l.BaseURL + "/mdmauth/oidc/callback"}, o.ExtraRedirectURIs...)); err != nil {
		return nil, err
	}
	l.TemplatePath = filepath.Join(dir, "enroll.mobileconfig")
	if err := WriteProfileTemplate(l.TemplatePath, l.BaseURL); err != nil {
		return nil, err
	}
	disc := o.Discovery
	if disc == "" {
		disc = "\t\t\tdomains example.com\n\t\t\tmode byod\n\t\t\tmode Mac adde\n"
	}
	website := ""
	if o.Website != "" {
		l.WebsiteURL = fmt.Sprintf("https://localhost:%d", ports[3])
		website = fmt.Sprintf("\n%s {\n\ttls %s %s\n%s\n}\n", l.WebsiteURL, certPath, keyPath,
			strings.ReplaceAll(o.Website, "{{.Gateway}}", l.BaseURL))
	}
	bin := o.CaddyBinary
	if bin == "" {
		if bin, err = caddyBinary(); err != nil {
			return nil, err
		}
	}
	if o.Instances > 1 && o.PostgresDSN == "" {
		return nil, fmt.Errorf("lab: %d instances need Options.PostgresDSN", o.Instances)
	}
	l.postgresDSN, l.postgresSchema = o.PostgresDSN, o.PostgresSchema
	env := map[string]string{"MDMAUTH_OIDC_SECRET": l.OIDC.ClientSecret, "MDMAUTH_PG_DSN": o.PostgresDSN}
	vars := map[string]any{
		"Discovery": disc, "Website": website, "SignCert": o.ProfileSignCert, "SignKey": o.ProfileSignKey,
		"Admin": adminPort, "HTTP": httpPort, "HTTPS": httpsPort,
		"Storage": l.StorageDir, "Cert": certPath, "Key": keyPath, "AccessLog": l.AccessLog,
		"Issuer": l.OIDC.Issuer, "ClientID": l.OIDC.ClientID, "Template": l.TemplatePath,
		"NanoMDM": l.NanoMDM.Addr, "TTL": o.AccessTokenTTL, "Extra": o.Handler, "OIDCExtra": o.OIDC,
		"Postgres": o.PostgresDSN != "", "Schema": o.PostgresSchema, "DSN": "{env.MDMAUTH_PG_DSN}",
	}
	l.vars = vars
	if o.Instances > 1 {
		var upstreams []string
		for i := 0; i < o.Instances; i++ {
			p := make([]int, 3)
			for j := range p {
				if p[j], err = testenv.FreePort(); err != nil {
					return nil, err
				}
			}
			gw := &Gateway{URL: fmt.Sprintf("https://127.0.0.1:%d", p[0]), AdminURL: fmt.Sprintf("http://127.0.0.1:%d", p[2])}
			vars["HTTPS"], vars["HTTP"], vars["Admin"] = p[0], p[1], p[2]
			vars["PublicURL"] = l.BaseURL
			vars["AccessLog"] = filepath.Join(dir, fmt.Sprintf("access-%d.log", i+1))
			var cf strings.Builder
			if err := caddyfile.Execute(&cf, vars); err != nil {
				return nil, err
			}
			if gw.Caddy, err = testenv.StartCaddy(tb, testenv.CaddyOptions{
				Caddyfile: cf.String(), Env: env, AdminAddr: fmt.Sprintf("127.0.0.1:%d", p[2]),
				ReadyURL: gw.URL + "/mdmauth/", Binary: bin,
			}); err != nil {
				return nil, err
			}
			l.Gateways = append(l.Gateways, gw)
			upstreams = append(upstreams, strings.TrimPrefix(gw.URL, "https://"))
		}
		var cf strings.Builder
		if err := frontCaddyfile.Execute(&cf, map[string]any{
			"Admin": adminPort, "HTTP": httpPort, "HTTPS": httpsPort, "Cert": certPath, "Key": keyPath,
			"CA": caPath, "Upstreams": strings.Join(upstreams, " "),
		}); err != nil {
			return nil, err
		}
		l.Caddy, err = testenv.StartCaddy(tb, testenv.CaddyOptions{
			Caddyfile: cf.String(), AdminAddr: fmt.Sprintf("127.0.0.1:%d", adminPort),
			ReadyURL: l.BaseURL + "/mdmauth/", Binary: bin,
		})
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	var cf strings.Builder
	if err := caddyfile.Execute(&cf, vars); err != nil {
		return nil, err
	}
	l.Caddy, err = testenv.StartCaddy(tb, testenv.CaddyOptions{
		Caddyfile: cf.String(),
		Env:       env,
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", adminPort),
		ReadyURL:  l.BaseURL + "/mdmauth/",
		Binary:    bin,
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// frontCaddyfile is the load balancer of a multi-instance lab: TLS to the
// devices and browsers, TLS to each gateway, round robin, and a dial
// failure (an instance gone) retried on the next one.
var frontCaddyfile = template.Must(template.New("front").Parse(`{
	admin 127.0.0.1:{{.Admin}}
	http_port {{.HTTP}}
	https_port {{.HTTPS}}
}

https://127.0.0.1:{{.HTTPS}} {
	tls {{.Cert}} {{.Key}}
	reverse_proxy {{.Upstreams}} {
		lb_policy round_robin
		lb_try_duration 10s
		lb_try_interval 100ms
		fail_duration 5s
		transport http {
			tls
			tls_trust_pool file {{.CA}}
		}
	}
}
`))

var caddyfile = template.Must(template.New("Caddyfile").Parse(`{
	admin 127.0.0.1:{{.Admin}}
	http_port {{.HTTP}}
	https_port {{.HTTPS}}
	mdm_auth {
{{- if .Postgres}}
		storage postgres {
			dsn {{.DSN}}
{{- if .Schema}}
			schema {{.Schema}}
{{- end}}
		}
{{- else}}
		storage_dir {{.Storage}}
{{- end}}
	}
{{- if .PublicURL}}
	servers {
		trusted_proxies static 127.0.0.1/32
	}
{{- end}}
}

https://127.0.0.1:{{.HTTPS}} {
	tls {{.Cert}} {{.Key}}
	log {
		output file {{.AccessLog}}
		format json
	}
	mdm_auth {
{{- if .PublicURL}}
		public_url {{.PublicURL}}
{{- end}}
		oidc {
			issuer {{.Issuer}}
			client_id {{.ClientID}}
			client_secret {env.MDMAUTH_OIDC_SECRET}
{{.OIDCExtra}}
		}
		discovery {
{{.Discovery}}
		}
		enrollment_profile {{.Template}}{{if .SignCert}} {
			sign_cert {{.SignCert}}
			sign_key {{.SignKey}}
		}{{end}}
		{{if .TTL}}access_token_ttl {{.TTL}}{{end}}
		protect /mdm/ad
		refuse_account_driven /mdm
{{.Extra}}
	}
	@accountDriven path /mdm/ad
	rewrite @accountDriven /mdm
	@mdm path /mdm /mdm/ad
	handle @mdm {
		reverse_proxy {{.NanoMDM}}
	}
	handle {
		respond 404
	}
}
{{.Website}}`))

// NewDevice returns an emulated device of family (iPhone, iPad, Mac) whose
// user types identifier and signs in at the provider as username. Its MDM
// identity is issued by the lab's CA, standing in for SCEP.
func (l *Lab) NewDevice(family, product, identifier, username string, logf func(step, msg string)) (*device.Device, error) {
	cfg, err := l.DeviceConfig(family, product, identifier, username)
	if err != nil {
		return nil, err
	}
	cfg.Log = logf
	return device.New(cfg)
}

// DeviceConfig is NewDevice's configuration, for a test to adjust (another
// discovery base, expected profile signers, another browser) before
// device.New.
func (l *Lab) DeviceConfig(family, product, identifier, username string) (device.Config, error) {
	leaf, err := l.CA.IssueClient(identifier + " " + family)
	if err != nil {
		return device.Config{}, err
	}
	return device.Config{
		Family: family, Product: product, OSVersion: "23A300", Language: "en-US",
		UserIdentifier: identifier,
		DiscoveryBase:  l.BaseURL,
		HTTPClient:     l.HTTPClient,
		Identity:       &device.Identity{Cert: leaf.Cert, Key: leaf.Key},
		Browser:        &device.FormBrowser{Client: l.HTTPClient, Username: username, Password: Password},
	}, nil
}

// WithStore stops Caddy, opens the token store (Badger allows one process
// per directory), runs fn with a token manager on it, closes it and starts
// Caddy again: what an operator does through the store API.
func (l *Lab) WithStore(fn func(m *token.Manager, s store.Store) error) error {
	if l.postgresDSN != "" {
		// PostgreSQL is shared: no need to stop anything.
		s, err := postgres.Open(context.Background(), postgres.Options{DSN: l.postgresDSN, Schema: l.postgresSchema, PurgeInterval: -1})
		if err != nil {
			return err
		}
		ferr := fn(&token.Manager{Store: s, Lifetime: token.Lifetime{TTL: 24 * time.Hour, Floor: time.Hour}}, s)
		if err := s.Close(); err != nil && ferr == nil {
			ferr = err
		}
		return ferr
	}
	if err := l.Caddy.Stop(); err != nil {
		return fmt.Errorf("stopping caddy: %w", err)
	}
	s, err := badger.Open(badger.Options{Dir: l.StorageDir, GCInterval: -1})
	if err != nil {
		return err
	}
	ferr := fn(&token.Manager{Store: s, Lifetime: token.Lifetime{TTL: 24 * time.Hour, Floor: time.Hour}}, s)
	if err := s.Close(); err != nil && ferr == nil {
		ferr = err
	}
	if err := l.Caddy.Start(); err != nil && ferr == nil {
		ferr = fmt.Errorf("starting caddy: %w", err)
	}
	return ferr
}

// SwitchToPostgres stops the (single) gateway, rewrites its Caddyfile to
// keep the store in PostgreSQL at dsn (schema, default mdmauth) instead of
// Badger, and starts it again: the last step of a migration.
func (l *Lab) SwitchToPostgres(dsn, schema string) error {
	if l.Gateways != nil {
		return fmt.Errorf("lab: SwitchToPostgres is for a single gateway")
	}
	if err := l.Caddy.Stop(); err != nil && !errors.Is(err, testenv.ErrNotRunning) {
		return err
	}
	l.vars["Postgres"], l.vars["Schema"], l.vars["DSN"] = true, schema, dsn
	var cf strings.Builder
	if err := caddyfile.Execute(&cf, l.vars); err != nil {
		return err
	}
	if err := os.WriteFile(l.Caddy.CaddyfilePath, []byte(cf.String()), 0o600); err != nil {
		return err
	}
	l.postgresDSN, l.postgresSchema = dsn, schema
	return l.Caddy.Start()
}

// WriteProfileTemplate writes the lab's enrollment profile template to
// path with base, the gateway's URL, in place of {{BASE}}.
func WriteProfileTemplate(path, base string) error {
	t := strings.ReplaceAll(profileTemplate, "{{BASE}}", base)
	return os.WriteFile(path, []byte(t), 0o600)
}
