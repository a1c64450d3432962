package soak

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/mdmauth/mdmauth/internal/device"
	"github.com/mdmauth/mdmauth/internal/lab"
	"github.com/mdmauth/mdmauth/internal/signin"
	"github.com/mdmauth/mdmauth/internal/testenv"
)

// The access-token lifetimes of the two sites, as written in the
// Caddyfile: the shortest each sign-in method accepts (its floor), so that
// tokens issued during the run expire during a long run. mdm_auth spreads
// expiries by ±10 % and never goes below the floor.
const (
	webTTL    = time.Hour
	oauth2TTL = 5 * time.Minute
	ttlJitter = 0.1
)

// The OAuth 2 client the oauth2 site's challenge names (mdm_auth's
// defaults), and the store secret its refresh tokens are tagged with.
const (
	oauth2ClientID  = "mdmauth"
	oauth2RotateKey = "oauth2-rotation-hmac"
)

// mdmPath is the protected path (rewritten to /mdm before the proxy), as
// in Caddyfile.example.
const mdmPath = "/mdm/ad"

// site is one of the two mdm_auth sites of the soak's Caddy; both share
// the store, NanoMDM and the provider.
type site struct {
	name     string // "web" or "oauth2"
	oauth2   bool
	port     int
	base     string // https://127.0.0.1:<port>
	template string // its enrollment profile template
	ttl      time.Duration
}

// window is what the soak knows of the expiry of a token this site issued
// between start and end: not before start + the shortest lifetime, not
// after end + the longest.
func (s *site) window(start, end time.Time) tokenState {
	// Both TTLs are their method's floor, which the jitter never goes
	// below: the shortest lifetime is the TTL itself.
	hi := time.Duration(float64(s.ttl) * (1 + ttlJitter))
	return tokenState{expLo: start.Add(s.ttl), expHi: end.Add(hi)}
}

// tokenURL is the site's OAuth 2 token endpoint.
func (s *site) tokenURL() string { return s.base + "/mdmauth/oauth2/token" }

// env is the running deployment: PKI, NanoMDM, the provider, Caddy.
type env struct {
	o        Options
	dir      string
	ca       *testenv.CA
	caPath   string
	cert     string
	key      string
	nano     *testenv.NanoMDM
	idp      *testenv.OIDC
	caddy    *testenv.Caddy
	caddyBin string
	admin    int
	http     int
	storage  string
	sites    []*site // web, oauth2
	users    []testenv.User
	builtIn  *device.Identity
	// client carries every request of the devices and their browsers
	// (through obs); adminClient the admin API and the sampler's.
	client      *http.Client
	obs         *observer
	adminClient *http.Client
	adminURL    string
}

// soakPassword is the password of the provider's soak users.
const soakPassword = "correct horse"

// soakUsers are the provider's accounts.
func soakUsers(n int) []testenv.User {
	return testenv.NumberedUsers("soak", "Soak", 3, n, soakPassword)
}

// startEnv builds Caddy and starts NanoMDM and the provider; Caddy is
// started later, once the store is preloaded.
func startEnv(o Options) (*env, error) {
	e := &env{o: o, dir: o.TB.TempDir(), users: soakUsers(o.Users)}
	var err error
	if e.caddyBin = o.CaddyBinary; e.caddyBin == "" {
		o.Logf("building Caddy with mdm_auth (./cmd/caddy; quick when nothing changed)")
		if e.caddyBin, err = testenv.BuildCaddy(); err != nil {
			return nil, err
		}
	}
	tlsFiles, err := testenv.NewLoopbackTLS(e.dir, "mdmsoak CA")
	if err != nil {
		return nil, err
	}
	e.ca, e.caPath, e.cert, e.key = tlsFiles.CA, tlsFiles.CAPath, tlsFiles.CertPath, tlsFiles.KeyPath
	if e.builtIn, err = device.NewSelfSigned("Device Built-In iPhone17,2"); err != nil {
		return nil, err
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			return nil, err
		}
	}
	e.admin, e.http = ports[0], ports[1]
	e.adminURL = "http://127.0.0.1:" + strconv.Itoa(e.admin)
	e.storage = filepath.Join(e.dir, "store")
	for i, name := range []string{"web", "oauth2"} {
		s := &site{name: name, oauth2: name == "oauth2", port: ports[2+i], ttl: webTTL}
		if s.oauth2 {
			s.ttl = oauth2TTL
		}
		s.base = "https://127.0.0.1:" + strconv.Itoa(s.port)
		s.template = filepath.Join(e.dir, "enroll-"+name+".mobileconfig")
		if err := lab.WriteProfileTemplate(s.template, s.base); err != nil {
			return nil, err
		}
		e.sites = append(e.sites, s)
	}
	transport := func(idle int) *http.Transport {
		return &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	workers := make([]http.RoundTripper, o.Workers)
	for i := range workers {
		workers[i] = transport(2)
	}
	e.obs = newObserver(transport(o.Workers+4), workers...)
	e.client = &http.Client{Timeout: 2 * time.Minute, Transport: e.obs}
	e.adminClient = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

	o.Logf("starting NanoMDM %s and the OpenID provider (%d users)", testenv.NanoMDMVersion, len(e.users))
	// NanoMDM's debug log would write a line per request for the whole run.
	if e.nano, err = testenv.StartNanoMDM(o.TB, testenv.NanoMDMOptions{CAPath: e.caPath, Args: []string{"-debug=false"}}); err != nil {
		return nil, err
	}
	var callbacks []string
	for _, s := range e.sites {
		callbacks = append(callbacks, s.base+"/mdmauth/oidc/callback")
	}
	if e.idp, err = testenv.StartOIDC(o.TB, e.users, callbacks); err != nil {
		return nil, err
	}
	return e, nil
}

// startCaddy starts Caddy on the (preloaded) store.
func (e *env) startCaddy() error {
	cf, err := e.caddyfile()
	if err != nil {
		return err
	}
	e.caddy, err = testenv.StartCaddy(e.o.TB, testenv.CaddyOptions{
		Caddyfile: cf,
		Env:       map[string]string{"MDMAUTH_OIDC_SECRET": e.idp.ClientSecret},
		AdminAddr: "127.0.0.1:" + strconv.Itoa(e.admin),
		ReadyURL:  e.sites[0].base + "/mdmauth/",
		Binary:    e.caddyBin,
	})
	return err
}

// caddyfile renders the soak's configuration.
func (e *env) caddyfile() (string, error) {
	type siteData struct {
		Port     int
		OAuth2   bool
		Template string
		TTL      string
		ClientID string
		Redirect string
	}
	var sites []siteData
	for _, s := range e.sites {
		sites = append(sites, siteData{Port: s.port, OAuth2: s.oauth2, Template: s.template, TTL: s.ttl.String(),
			ClientID: oauth2ClientID, Redirect: signin.DefaultRedirectURL})
	}
	var b strings.Builder
	err := caddyfileTemplate.Execute(&b, map[string]any{
		"Admin": e.admin, "HTTP": e.http, "HTTPS": e.sites[0].port, "Storage": e.storage,
		"Cert": e.cert, "Key": e.key, "Issuer": e.idp.Issuer, "IdPClient": e.idp.ClientID,
		"NanoMDM": e.nano.Addr, "Sites": sites,
	})
	return b.String(), err
}

// caddyfileTemplate has the shape of Caddyfile.example, with two sites on
// one store: web sign-in and OAuth 2 sign-in. The per-address limits are
// raised (every emulated device and browser comes from 127.0.0.1, where a
// real fleet comes from many addresses) but left on, so their bounded
// state is part of what is soaked. No access log.
var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin 127.0.0.1:{{.Admin}}
	http_port {{.HTTP}}
	https_port {{.HTTPS}}
	mdm_auth {
		storage_dir {{.Storage}}
	}
	servers {
		timeouts {
			read_header 10s
			read_body 30s
			write 60s
			idle 2m
		}
		max_header_size 64KiB
	}
}

(mdm_upstream) {
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
{{range .Sites}}
https://127.0.0.1:{{.Port}} {
	tls {{$.Cert}} {{$.Key}}
	mdm_auth {
{{- if .OAuth2}}
		sign_in oauth2
		oauth2 {
			client_id {{.ClientID}}
			redirect_url {{.Redirect}}
		}
{{- end}}
		oidc {
			issuer {{$.Issuer}}
			client_id {{$.IdPClient}}
			client_secret {env.MDMAUTH_OIDC_SECRET}
		}
		discovery {
			domains example.com
			mode byod
		}
		enrollment_profile {{.Template}}
		access_token_ttl {{.TTL}}
		protect /mdm/ad
		refuse_account_driven /mdm
		limits {
			discovery 100000/m burst 10000
			discovery_user 10000/m burst 1000
			sign_in 100000/m burst 10000
			sign_in_user 10000/m burst 1000
			callback 100000/m burst 10000
		}
	}
	import mdm_upstream
}
{{end}}`))
