package bench

import (
	"strings"
	"text/template"
)

// Config is a measured Caddy configuration.
type Config string

// The two configurations every comparison alternates.
const (
	// ConfigA is Caddy with reverse_proxy alone.
	ConfigA Config = "A"
	// ConfigB is the same site with mdm_auth in front of reverse_proxy.
	ConfigB Config = "B"
)

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
	Admin, HTTP, HTTPS      int
	Storage, Cert, Key      string
	Issuer, ClientID        string
	Template, Upstream, TTL string
}

// caddyfileTemplate has the shape of Caddyfile.example. Configuration A is
// the same file without the two mdm_auth blocks. No access log: both
// configurations would pay for it alike and it would hide the gateway's
// share.
var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin 127.0.0.1:{{.Admin}}
	http_port {{.HTTP}}
	https_port {{.HTTPS}}
{{- if .Gateway}}
	mdm_auth {
		storage_dir {{.Storage}}
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

// profileTemplate is the enrollment profile template; {{BASE}} is the
// gateway's URL.
const profileTemplate = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>PayloadContent</key>
			<dict>
				<key>Key Type</key>
				<string>RSA</string>
				<key>Key Usage</key>
				<integer>5</integer>
				<key>Keysize</key>
				<integer>2048</integer>
				<key>Subject</key>
				<array>
					<array>
						<array>
							<string>CN</string>
							<string>MDM Identity</string>
						</array>
					</array>
				</array>
				<key>URL</key>
				<string>{{BASE}}/scep</string>
			</dict>
			<key>PayloadIdentifier</key>
			<string>com.example.mdm.scep</string>
			<key>PayloadType</key>
			<string>com.apple.security.scep</string>
			<key>PayloadUUID</key>
			<string>7F6B6A1E-2B65-4C4A-9F8E-2A3E4F5A6B7C</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
		</dict>
		<dict>
			<key>CheckInURL</key>
			<string>{{BASE}}/mdm/ad</string>
			<key>CheckOutWhenRemoved</key>
			<true/>
			<key>IdentityCertificateUUID</key>
			<string>7F6B6A1E-2B65-4C4A-9F8E-2A3E4F5A6B7C</string>
			<key>PayloadIdentifier</key>
			<string>com.example.mdm.mdm</string>
			<key>PayloadType</key>
			<string>com.apple.mdm</string>
			<key>PayloadUUID</key>
			<string>0C9A1C2D-3E4F-4A5B-8C6D-7E8F9A0B1C2D</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
			<key>ServerCapabilities</key>
			<array>
				<string>com.apple.mdm.per-user-connections</string>
				<string>com.apple.mdm.bootstraptoken</string>
			</array>
			<key>ServerURL</key>
			<string>{{BASE}}/mdm/ad</string>
			<key>SignMessage</key>
			<true/>
			<key>Topic</key>
			<string>com.apple.mgmt.External.00000000-0000-0000-0000-000000000000</string>
		</dict>
	</array>
	<key>PayloadDisplayName</key>
	<string>Enrollment</string>
	<key>PayloadIdentifier</key>
	<string>com.example.mdm.enroll</string>
	<key>PayloadType</key>
	<string>Configuration</string>
	<key>PayloadUUID</key>
	<string>5A4B3C2D-1E0F-4A9B-8C7D-6E5F4A3B2C1D</string>
	<key>PayloadVersion</key>
	<integer>1</integer>
</dict>
</plist>
`
