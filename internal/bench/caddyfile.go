package bench

import (
	"strings"
	"text/template"
)

// Config is a measured Caddy configuration.
type Config string

// The configurations every comparison alternates.
const (
	// ConfigA is Caddy with reverse_proxy alone.
	ConfigA Config = "A"
	// ConfigB is the same site with mdm_auth in front of reverse_proxy,
	// with the Badger store (the default).
	ConfigB Config = "B"
	// ConfigC is B with the PostgreSQL store (storage postgres), on a
	// PostgreSQL server of its own on loopback.
	ConfigC Config = "C"
)

// PostgresDSNEnv is the environment variable that hands configuration C's
// Caddy the database's DSN, as an operator's Caddyfile would.
const PostgresDSNEnv = "MDMAUTH_PG_DSN"

// Upstream names what Caddy proxies to.
type Upstream string

// Upstreams.
const (
	// UpstreamFast answers 200 with a small plist and does nothing else:
	// it isolates the cost of Caddy and the gateway.
	UpstreamFast Upstream = "fast"
	// UpstreamNanoMDM is NanoMDM v0.9.0 with in-memory storage.
	UpstreamNanoMDM Upstream = "nanomdm"
)

// MDMPath is the protected path the devices talk to (as in
// Caddyfile.example, rewritten to /mdm before the proxy).
const MDMPath = "/mdm/ad"

// caddyfileData fills caddyfileTemplate.
type caddyfileData struct {
	Gateway                 bool
	Postgres                bool // the store is PostgreSQL, DSN from PostgresDSNEnv
	Admin, HTTP, HTTPS      int
	Storage, Cert, Key      string
	Issuer, ClientID        string
	Template, Upstream, TTL string
}

// caddyfileTemplate has the shape of Caddyfile.example. Configuration A is
// the same file without the two mdm_auth blocks; C differs from B only in
// the store (the pool has its default size). No access log: every
// configuration would pay for it alike and it would hide the gateway's
// share.
var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin 127.0.0.1:{{.Admin}}
	http_port {{.HTTP}}
	https_port {{.HTTPS}}
{{- if .Gateway}}
	mdm_auth {
{{- if .Postgres}}
		storage postgres {
			dsn {env.MDMAUTH_PG_DSN}
		}
{{- else}}
		storage_dir {{.Storage}}
{{- end}}
	}
{{- end}}
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

https://127.0.0.1:{{.HTTPS}} {
	tls {{.Cert}} {{.Key}}
{{- if .Gateway}}
	mdm_auth {
		oidc {
			issuer {{.Issuer}}
			client_id {{.ClientID}}
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
		# Every emulated device and browser comes from 127.0.0.1: the
		# per-address limits would throttle the enrollment phase.
		limits off
	}
{{- end}}
	@accountDriven path /mdm/ad
	rewrite @accountDriven /mdm
	@mdm path /mdm /mdm/ad
	handle @mdm {
		reverse_proxy {{.Upstream}}
	}
	handle {
		respond 404
	}
}
`))

// renderCaddyfile returns the Caddyfile for d.
func renderCaddyfile(d caddyfileData) (string, error) {
	var b strings.Builder
	if err := caddyfileTemplate.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}
