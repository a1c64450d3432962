// Command caddy is Caddy with its standard modules and the mdm_auth plugin.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The mdm_auth handler, app and subcommands.
	_ "github.com/mdmauth/mdmauth/caddymodule"
)

func main() {
	caddycmd.Main()
}
