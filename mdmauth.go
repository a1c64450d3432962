// Package mdmauth is account-driven Apple enrollment for any MDM, as a Caddy
// plugin. Importing it (as xcaddy does with --with github.com/mdmauth/mdmauth)
// registers the mdm_auth app, handler and Caddyfile directive; the code lives
// in caddymodule and internal/.
package mdmauth

import _ "github.com/mdmauth/mdmauth/caddymodule" // registers the Caddy modules
